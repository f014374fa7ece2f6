"""The README's commands, the tiny pipeline, the API and the notebook (slow).

The quick start runs as the README writes it, in a copy of the repository,
from a relative workdir; the tests below use what it trained.
"""

import json
import os
import re
import shutil

import numpy as np
import pytest

from pnccface import api
from pnccface import stages
from pnccface import workdirs
from pnccface.evaluation import paper
from pnccface.evaluation import report
from configs import pipeline as pipeline_config
from tests.conftest import REPO, run_readme_command

pytestmark = pytest.mark.slow
# Lines that open a stage in the default-verbosity log.
STAGE_START = re.compile(r': training in |annotate: |report: ')


def readme_commands(section: str) -> list[str]:
  """The `python ...` commands of a README section, continuations joined."""
  text = (REPO / 'README.md').read_text()
  body = text.split(f'## {section}', 1)[1].split('\n## ', 1)[0]
  code = re.sub(r'\\\n\s*', ' ', body)
  return [line.strip().split('  #')[0].strip() for line in code.splitlines()
          if line.startswith('    python ')]


@pytest.fixture(scope='module')
def clone(tmp_path_factory):
  """A copy of the working tree (no workdirs, caches or venvs)."""
  copy = tmp_path_factory.mktemp('clone') / 'pnccface'
  shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
      '.git', 'workdirs', '.venv', '__pycache__', '*.egg-info'))
  return copy


@pytest.fixture(scope='module')
def tiny_run(clone, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  (command,) = readme_commands('Quick start')
  assert '--workdir=workdirs/tiny' in command
  output = run_readme_command(command, clone, data_dir)
  workdir = clone / 'workdirs' / 'tiny'
  rows = {row.method: row.metrics() for row in report.read_report(
      workdir / 'report')}
  return pipeline_config.get_config('tiny'), workdir, data_dir, rows, output


def test_quick_start_prints_under_40_lines_per_stage(tiny_run):
  output = tiny_run[4]
  lines = output.splitlines()
  starts = [i for i, line in enumerate(lines) if STAGE_START.search(line)]
  # 3 training stages, 4 annotations, 3 MoFa stages and the report.
  assert len(starts) == 11, lines
  sizes = np.diff(starts + [len(lines)])
  assert sizes.max() < 40, (sizes, output)
  assert 'orbax' not in output and 'Reusing dataset' not in output
  assert 'table1.md' in lines[-3] or 'table1.md' in output.split(
      'Outputs:')[1]


def test_readme_stages_one_by_one_run_as_written(tiny_run, clone):
  data_dir = tiny_run[2]
  commands = readme_commands('Stages one by one')
  assert len(commands) == 7
  for command in commands:
    run_readme_command(command, clone, data_dir)
  for folder in ('ae', 'pncc_few', 'mofa'):
    assert (clone / 'workdirs' / folder / 'config.json').is_file()
  more = workdirs.load_config(clone / 'workdirs' / 'mofa_pncc_few_more')
  assert more.init_from == str(clone / 'workdirs' / 'tiny' / 'mofa_pncc_few')
  assert more.num_train_steps == 20 and more.loss.w_landmark == 300
  assert stages.is_finished(clone / 'workdirs' / 'mofa_pncc_few_more', 20)
  assert (clone / 'workdirs' / 'annotated_few' / 'train').is_dir()
  ablation = clone / 'workdirs' / 'tiny' / 'ablation' / 'pncc_ablation.md'
  assert 'ITL+SCAF, decoder from scratch' in ablation.read_text()


def test_table1_has_three_methods_by_four_finite_metrics(tiny_run):
  _, workdir, _, rows, _ = tiny_run
  assert list(rows) == ['MoFa', 'MoFaPNCC_few', 'MoFaPNCC_full']
  table = json.loads((workdir / 'report' / 'table1.json').read_text())
  restored = report.read_report(workdir / 'report')
  assert len(restored) == 3
  for method, metrics in rows.items():
    values = [metrics[k] for k in report.METRIC_NAMES]
    assert np.all(np.isfinite(values)), (method, metrics)
    assert all(v > 0 for v in values)
  markdown = (workdir / 'report' / 'table1.md').read_text()
  assert 'MoFaPNCC_few' in markdown
  # The caption says which data each kind of row is on.
  assert '32 faces of synthetic_faces/tiny' in markdown
  assert 'AFLW2000-3D' in markdown
  assert table


def test_figure3_is_a_grid_of_inputs_and_overlays(tiny_run):
  config, workdir, _, _, _ = tiny_run
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  figure = tf.io.decode_png((workdir / 'report' / 'figure3.png').read_bytes())
  size = max(paper.FIGURE_SIZE, config.mofa.image_size)
  # 4 rows (images) x 4 columns (input, MoFa, MoFaPNCC_few, _full), 2 px pad.
  assert figure.shape == (4 * (size + 2) + 2, 4 * (size + 2) + 2, 3)


def test_rerun_reuses_finished_stages(tiny_run, capsys):
  config, workdir, data_dir, rows, _ = tiny_run
  stamp = {p: p.stat().st_mtime for p in
           (workdir / 'mofa' / 'checkpoints').iterdir()}
  again = paper.run_paper(config, workdir, str(data_dir))
  assert {p: p.stat().st_mtime for p in
          (workdir / 'mofa' / 'checkpoints').iterdir()} == stamp
  for method in rows:
    assert again[method] == pytest.approx(rows[method])
  del capsys


def test_api_predicts_and_reconstructs(tiny_run, tmp_path):
  config, workdir, _, _, _ = tiny_run
  predictor = api.load_pncc_predictor(workdir / 'pncc_few')
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
  pncc = predictor.predict_pncc(images)
  assert pncc.shape == (2, 64, 64, 3) and pncc.min() >= 0 and pncc.max() <= 1
  reconstructor = api.load_reconstructor(workdir / 'mofa_pncc_few',
                                         pncc_predictor=predictor)
  result = reconstructor.reconstruct(images)
  model = reconstructor.face_model
  assert result.vertices_screen.shape == (2, model.num_vertices, 3)
  assert result.yaw_degrees.shape == (2,)
  mesh = api.export_mesh(result, 1, tmp_path / 'face.ply', model)
  assert (tmp_path / 'face.ply').stat().st_size > 0
  assert mesh.faces.shape == (model.num_triangles, 3)
  with pytest.raises(ValueError, match=r'\[N, H, W, 3\]'):
    predictor.predict_pncc(images[..., :2])
  with pytest.raises(ValueError, match='square'):
    predictor.predict_pncc(images[:, :, :32])
  with pytest.raises(ValueError, match='reads a PNCC'):
    api.load_reconstructor(workdir / 'mofa_pncc_few').reconstruct(images)
  del config


def test_quickstart_notebook_runs(tiny_run, monkeypatch):
  _, workdir, data_dir, _, _ = tiny_run
  notebook = json.loads((REPO / 'notebooks' / 'quickstart.ipynb').read_text())
  monkeypatch.setenv('PNCCFACE_WORKDIR', str(workdir))
  monkeypatch.setenv('PNCCFACE_DATA_DIR', str(data_dir))
  # The real-photo cell skips (tests/test_real_pipeline.py runs it).
  monkeypatch.setenv('PNCCFACE_REAL_WORKDIR', str(workdir / 'no_real_run'))
  namespace = {}
  for cell in notebook['cells']:
    if cell['cell_type'] == 'code':
      exec(compile(''.join(cell['source']), 'quickstart.ipynb', 'exec'),  # pylint: disable=exec-used
           namespace)
  assert (workdir / 'quickstart.png').is_file()
  assert (workdir / 'face0.obj').is_file()
  assert os.path.getsize(workdir / 'face0.obj') > 1000
