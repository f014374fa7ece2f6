"""configs/real.py: the paper on real photos, scored on AFLW2000-3D.

The slow test runs the tiny variant's command as written (issue 14), in a
copy of the repository whose `../shared/data` is the shared data.
"""

import json
import math
import pathlib
import shutil

import pytest
import tensorflow as tf

from configs import real
from pnccface.evaluation import paper
from tests.conftest import REPO, run_readme_command

COMMAND = ('python launch/pipeline.py --config=configs/real.py:tiny '
           '--workdir=workdirs/real_tiny')
METHODS = ('MoFa', 'MoFaPNCC_few', 'MoFaPNCC_full')
EVALUATE = 'python launch/evaluate.py --workdir=workdirs/real_tiny'
ABLATION = ('python launch/pncc_ablation.py --config=configs/real.py:tiny '
            '--workdir=workdirs/real_tiny')


def check_ablation_table(workdir) -> None:
  """pncc_ablation.json of a real workdir: every variant scored, the
  pipeline's own stage-1 workdirs reused for the paper's variant."""
  table = json.loads((workdir / 'ablation' / 'pncc_ablation.json').read_text())
  rows = table['rows']
  assert set(rows) == set(paper.ABLATION_VARIANTS)
  for name, row in rows.items():
    for label in ('PNCC_few', 'PNCC_full'):
      cell = row[label]
      assert 0 < cell['face_l1'] < 1 and 0 <= cell['yaw_mae'] <= 180, cell
      reused = pathlib.Path(cell['workdir']) == workdir / label.lower()
      assert reused == (name == 'ITL+SCAF, frozen decoder'), (name, cell)
      assert (cell['train_s'] == 0) == reused, cell
  # Read from the true PNCCs, the yaw is off by the fitted identity only.
  for value in table['ground_truth_pncc_yaw_mae'].values():
    assert 0 < value < 6, table
  assert 'yaw MAE' in (workdir / 'ablation' / 'pncc_ablation.md').read_text()


def run_real_photo_cell(monkeypatch, real_workdir, aflw_dir) -> dict:
  """Runs the notebook's real-photo cell (its last) in a fresh namespace."""
  notebook = json.loads(
      (REPO / 'notebooks' / 'quickstart.ipynb').read_text())
  cell = [c for c in notebook['cells'] if c['cell_type'] == 'code'][-1]
  monkeypatch.setenv('PNCCFACE_REAL_WORKDIR', str(real_workdir))
  monkeypatch.setenv('PNCCFACE_AFLW2000_DIR', str(aflw_dir))
  namespace = {}
  exec(compile(''.join(cell['source']), 'quickstart.ipynb', 'exec'),  # pylint: disable=exec-used
       namespace)
  return namespace


def test_notebook_real_photo_cell_skips_without_a_workdir(tmp_path, capsys,
                                                          monkeypatch):
  namespace = run_real_photo_cell(monkeypatch, tmp_path / 'no_run',
                                  tmp_path / 'no_aflw')
  out = capsys.readouterr().out
  assert out.startswith('real-photo cell skipped') and str(
      tmp_path / 'no_run' / 'mofa_pncc_few') in out, out
  assert str(tmp_path / 'no_aflw') in out
  assert 'real' not in namespace  # nothing was reconstructed


def test_evaluating_a_real_workdir_without_aflw_folder_names_it(tmp_path):
  config = real.get_config('tiny')
  config.aflw2000_dir = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='config.aflw2000_dir'):
    paper.evaluate_run(config, tmp_path)
  with pytest.raises(FileNotFoundError, match='--aflw2000_dir'):
    paper.evaluate_run(config, tmp_path, aflw2000_dir=str(tmp_path / 'x'))


def _png_size(path) -> tuple[int, int]:
  """(height, width) of a PNG file."""
  return tuple(tf.io.decode_png(pathlib.Path(path).read_bytes()).shape[:2])


def test_without_shared_data_the_pipeline_skips_in_one_line(tmp_path,
                                                            capsys):
  config = real.get_config('tiny')
  config.data_root = str(tmp_path / 'missing')
  assert paper.run_paper(config, tmp_path / 'workdir') is None
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 1 and 'skipped' in lines[0], lines
  assert str(tmp_path / 'missing') in lines[0]
  assert not (tmp_path / 'workdir').exists()


def test_every_stage_reads_the_real_photos():
  for arg in (None, 'tiny'):
    config = real.get_config(arg)
    assert 'celeba_10k' in config.autoencoder.dataset
    assert 'utkface_6k' in config.autoencoder.dataset
    assert config.pncc_full.dataset.startswith('fitted_faces/faces68_profiled')
    assert config.pncc_few.num_train_samples == 50
    for stage in (config.mofa, config.mofa_pncc):
      # The landmark term's photos first: the fitted faces68 (main 0e6541c).
      assert stage.dataset.split('+')[0].startswith(real.FITTED)
      assert stage.face_model == 'default'  # ICT-FaceKit
    assert config.mofa_pncc.pncc_source == 'annotated'


@pytest.mark.slow
def test_tiny_real_pipeline_runs_as_written(shared_data, tmp_path_factory,
                                            monkeypatch):
  root = tmp_path_factory.mktemp('real')
  clone = root / 'pnccface'
  shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(
      '.git', 'workdirs', '.venv', '__pycache__', '*.egg-info'))
  (root / 'shared').mkdir()
  (root / 'shared' / 'data').symlink_to(shared_data)  # ../shared/data
  tfds_dir = tmp_path_factory.mktemp('tfds')
  output = run_readme_command(COMMAND, clone, tfds_dir)
  report = clone / 'workdirs' / 'real_tiny' / 'report'
  table = json.loads((report / 'aflw2000_3d_landmarks.json').read_text())
  jpgs = list((shared_data / 'aflw2000_3d_sample').glob('image*.jpg'))
  assert table['num_images'] == len(jpgs) > 0
  rows = table['rows']
  assert set(METHODS) < set(rows)
  # The anchor: the mean face under the true pose scores ~2.5 %.
  reference = rows['mean face, true pose (reference)']
  assert 0.01 < reference['balanced'] < 0.05, reference
  for method in METHODS:
    row = rows[method]
    assert 0 < row['overall'] < 1 and math.isfinite(row['balanced']), row
    for angle in ('yaw', 'pitch', 'roll'):
      assert 0 <= row[f'{angle}_mae'] <= 180, row
    assert f'| {method} |' in output  # the table is printed
  for predictor in ('full', 'few'):  # stage 1 alone on the same photos
    row = rows[paper.PNCC_ALONE_ROW.format(predictor)]
    assert 0 < row['overall'] < 1 and 0 <= row['yaw_mae'] <= 180, row
  assert (report / 'aflw2000_3d_landmarks.md').is_file()
  assert pathlib.Path(clone / 'workdirs' / 'real_tiny' / 'mofa').is_dir()
  # Figure 3 on AFLW2000-3D: 6 faces spread over yaw, input + 3 methods.
  side = paper.FIGURE_SIZE + 2  # 2 px padding (figures.image_grid)
  assert _png_size(report / paper.AFLW_FIGURE) == (6 * side + 2, 4 * side + 2)
  assert (report / paper.AFLW_FIGURE).with_suffix('.md').read_text().count(
      ' deg') == 6
  # Stage 1's PNCCs on the same faces: input | PNCC_full | PNCC_few.
  assert _png_size(report / paper.AFLW_PNCC_FIGURE) == (6 * side + 2,
                                                        3 * side + 2)

  # Re-evaluation of the finished workdir (no training): same table, figure.
  shutil.rmtree(report)
  output = run_readme_command(
      EVALUATE, clone, tmp_path_factory.mktemp('tfds'))
  assert 'training in' not in output
  again = json.loads((report / 'aflw2000_3d_landmarks.json').read_text())
  for method in METHODS:
    assert again['rows'][method] == pytest.approx(rows[method], rel=1e-4)
  assert _png_size(report / paper.AFLW_FIGURE) == (6 * side + 2, 4 * side + 2)

  # The notebook's real-photo cell reconstructs a photo through pnccface.api.
  workdir = clone / 'workdirs' / 'real_tiny'
  namespace = run_real_photo_cell(monkeypatch, workdir,
                                  shared_data / 'aflw2000_3d_sample')
  assert namespace['real'].vertices_screen.shape[0] == 1
  assert _png_size(workdir / 'quickstart_real.png') == (side + 2, 2 * side + 2)

  # The stage-1 ablation on the real config, reusing the pipeline's stages.
  run_readme_command(ABLATION, clone, tfds_dir)
  check_ablation_table(workdir.resolve())
