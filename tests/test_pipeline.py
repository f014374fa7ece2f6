"""The one-command tiny pipeline, the API and the quick-start notebook (slow).

One tiny pipeline run (minutes on 2 CPU cores) backs all tests here.
"""

import json
import os
import pathlib

import numpy as np
import pytest

from pnccface import api
from pnccface import configs_lib
from pnccface import stages
from pnccface.evaluation import report

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('pipeline')
  data_dir = tmp_path_factory.mktemp('tfds')
  config = configs_lib.load(str(REPO / 'configs' / 'pipeline.py') + ':tiny')
  rows = stages.run_paper(config, workdir, str(data_dir))
  return config, workdir, data_dir, rows


def test_table1_has_three_methods_by_four_finite_metrics(tiny_run):
  _, workdir, _, rows = tiny_run
  assert list(rows) == ['MoFa', 'MoFaPNCC_few', 'MoFaPNCC_full']
  table = json.loads((workdir / 'report' / 'table1.json').read_text())
  restored = report.read_report(workdir / 'report')
  assert len(restored) == 3
  for method, metrics in rows.items():
    values = [metrics[k] for k in report.METRIC_NAMES]
    assert np.all(np.isfinite(values)), (method, metrics)
    assert all(v > 0 for v in values)
  assert 'MoFaPNCC_few' in (workdir / 'report' / 'table1.md').read_text()
  assert table


def test_figure3_is_a_grid_of_inputs_and_overlays(tiny_run):
  config, workdir, _, _ = tiny_run
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  figure = tf.io.decode_png((workdir / 'report' / 'figure3.png').read_bytes())
  size = max(stages.FIGURE_SIZE, config.mofa.image_size)
  # 4 rows (images) x 4 columns (input, MoFa, MoFaPNCC_few, _full), 2 px pad.
  assert figure.shape == (4 * (size + 2) + 2, 4 * (size + 2) + 2, 3)


def test_rerun_reuses_finished_stages(tiny_run, capsys):
  config, workdir, data_dir, rows = tiny_run
  stamp = {p: p.stat().st_mtime for p in
           (workdir / 'mofa' / 'checkpoints').iterdir()}
  again = stages.run_paper(config, workdir, str(data_dir))
  assert {p: p.stat().st_mtime for p in
          (workdir / 'mofa' / 'checkpoints').iterdir()} == stamp
  for method in rows:
    assert again[method] == pytest.approx(rows[method])
  del capsys


def test_api_predicts_and_reconstructs(tiny_run, tmp_path):
  config, workdir, _, _ = tiny_run
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
  _, workdir, data_dir, _ = tiny_run
  notebook = json.loads((REPO / 'notebooks' / 'quickstart.ipynb').read_text())
  monkeypatch.setenv('PNCCFACE_REPO', str(REPO))
  monkeypatch.setenv('PNCCFACE_WORKDIR', str(workdir))
  monkeypatch.setenv('PNCCFACE_DATA_DIR', str(data_dir))
  namespace = {}
  for cell in notebook['cells']:
    if cell['cell_type'] == 'code':
      exec(compile(''.join(cell['source']), 'quickstart.ipynb', 'exec'),  # pylint: disable=exec-used
           namespace)
  assert (workdir / 'quickstart.png').is_file()
  assert (workdir / 'face0.obj').is_file()
  assert os.path.getsize(workdir / 'face0.obj') > 1000
