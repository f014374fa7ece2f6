"""Tests of pnccface.evaluation.report: Table-1 metrics and their output."""

import json
import math

import numpy as np
import pytest
import scipy.io

from pnccface import geometry
from pnccface.evaluation import metrics
from pnccface.evaluation import report

ROWS = [
    report.Table1Row('ours_mofa', 0.04567, 0.0612, 0.07891, 5.125),
    report.Table1Row('ours_pncc_few', 0.041, 0.055, 0.0777, 4.5),
]


def _table_cells(markdown):
  lines = markdown.strip().split('\n')
  return [[cell.strip() for cell in line.strip('|').split('|')]
          for line in lines]


def test_markdown_has_all_rows_and_columns():
  cells = _table_cells(report.format_markdown(ROWS, paper=True))
  assert cells[0] == ['Method', 'Dense 2D (%)', 'Dense 3D (%)',
                      'Face Rec. (%)', 'Yaw (deg)']
  assert cells[1] == ['---'] * 5
  body = {row[0]: row[1:] for row in cells[2:]}
  assert len(body) == 5
  # Measured rows: NMEs x 100, yaw in degrees, 2 decimals.
  assert body['ours_mofa'] == ['4.57', '6.12', '7.89', '5.12']
  assert body['ours_pncc_few'] == ['4.10', '5.50', '7.77', '4.50']
  # The paper's Table 1, as printed there.
  assert body['MoFa (paper)'] == ['4.31', '5.85', '7.49', '4.97']
  assert body['MoFaPNCC_few (paper)'] == ['4.20', '5.66', '7.61', '4.95']
  assert body['MoFaPNCC_full (paper)'] == ['4.12', '5.48', '7.55', '4.66']


def test_markdown_without_paper_and_from_dict():
  markdown = report.format_markdown(
      {'m': {'Dense 2D': 0.01, 'Dense 3D': 0.02, 'Face Rec.': 0.03,
             'Yaw': 1.0}}, paper=False)
  cells = _table_cells(markdown)
  assert len(cells) == 3
  assert cells[2] == ['m', '1.00', '2.00', '3.00', '1.00']
  assert 'paper' not in markdown


def test_missing_metric_names_the_key():
  with pytest.raises(KeyError, match='Yaw'):
    report.Table1Row.from_metrics('m', {'Dense 2D': 0., 'Dense 3D': 0.,
                                        'Face Rec.': 0.})


def test_write_report_json_round_trips(tmp_path):
  markdown_path, json_path = report.write_report(ROWS, tmp_path / 'out')
  assert markdown_path.name == 'table1.md'
  assert json_path.name == 'table1.json'
  assert markdown_path.read_text() == report.format_markdown(ROWS)
  assert report.read_report(tmp_path / 'out') == ROWS
  payload = json.loads(json_path.read_text())
  assert [row['method'] for row in payload['paper']] == [
      'MoFa', 'MoFaPNCC_few', 'MoFaPNCC_full']
  assert payload['rows'][0]['Dense 2D'] == 0.04567
  with pytest.raises(FileNotFoundError, match='table1.json'):
    report.read_report(tmp_path / 'absent')


def test_nan_is_printed_as_dash_and_survives_json():
  rows = [report.Table1Row('partial', 0.01, math.nan, 0.02, 3.0)]
  cells = _table_cells(report.format_markdown(rows, paper=False))
  assert cells[2] == ['partial', '1.00', '-', '2.00', '3.00']
  back = report.rows_from_json(report.to_json(rows))
  assert math.isnan(back[0].dense_3d) and back[0].yaw_degrees == 3.0


def _square_faces(num_samples):
  """Samples of the 4-point set of box 6 (4 x 9), z = 0, with yaw 0."""
  xy = np.array([[0., 0.], [4., 0.], [4., 9.], [1., 2.]])
  vertices = np.concatenate([xy, np.zeros((4, 1))], -1)
  return np.repeat(vertices[None], num_samples, axis=0)


def test_evaluate_method_hand_computed():
  gt_vertices = _square_faces(3)
  # Shift every vertex by (3, 4) px: dense 2D = dense 3D = 5 / 6, and the
  # translation is removed by the alignment: face rec. = 0.
  pred_vertices = gt_vertices + [3., 4., 0.]
  gt = report.FaceGeometry(gt_vertices, np.array([0., 170., -40.]))
  pred = report.FaceGeometry(pred_vertices, np.array([2., -170., -30.]))
  values = report.evaluate_method(pred, gt)
  assert values[report.DENSE_2D] == pytest.approx(5 / 6)
  assert values[report.DENSE_3D] == pytest.approx(5 / 6)
  assert values[report.FACE_REC] == pytest.approx(0, abs=1e-12)
  assert values[report.YAW] == pytest.approx((2 + 20 + 10) / 3)
  assert report.Table1Row.from_metrics('x', values).metrics() == values


def test_evaluate_method_chunking_and_subset_agree_with_metrics():
  rng = np.random.default_rng(0)
  gt_vertices = rng.normal(size=(7, 40, 3)) * 50
  pred_vertices = gt_vertices + rng.normal(size=gt_vertices.shape) * 2
  yaw = rng.uniform(-90, 90, 7)
  gt = report.FaceGeometry(gt_vertices, yaw)
  pred = report.FaceGeometry(pred_vertices, yaw + 1.5)
  subset = np.arange(0, 40, 2)
  values = report.evaluate_method(pred, gt, subset=subset, chunk_size=3)
  assert values == pytest.approx(
      report.evaluate_method(pred, gt, subset=subset, chunk_size=100))
  assert values[report.DENSE_2D] == pytest.approx(
      metrics.dense_nme_2d(pred_vertices, gt_vertices, subset).mean())
  assert values[report.FACE_REC] == pytest.approx(
      metrics.reconstruction_nme(pred_vertices, gt_vertices, subset).mean())
  assert values[report.YAW] == pytest.approx(1.5)
  with pytest.raises(ValueError, match='pred.vertices'):
    report.evaluate_method(report.FaceGeometry(pred_vertices[:, :5], yaw), gt)


def test_evaluate_method_on_real_poses(shared_data):
  """The 3DDFA mean face posed by real AFLW2000-3D `Pose_Para`s.

  Posing the same shape with another sample's pose moves every vertex in the
  image (large dense NMEs) but is a similarity of the gt shape, so the
  reconstruction NME stays zero.
  """
  files = sorted((shared_data / 'aflw2000_3d_sample').glob('*.mat'))[:6]
  pose = np.stack([scipy.io.loadmat(f)['Pose_Para'][0] for f in files])
  mean_face = (np.load(shared_data / '3ddfa' / 'u_shp.npy') +
               np.load(shared_data / '3ddfa' / 'u_exp.npy')).reshape(-1, 3)
  mean_face = mean_face[::8]  # every 8th vertex keeps the test fast.

  def posed(pose_para):
    camera = geometry.pose_para_to_weak_perspective(pose_para)
    screen = geometry.weak_perspective_to_screen(
        np.broadcast_to(mean_face, (len(pose_para),) + mean_face.shape),
        camera, 450)
    return np.asarray(screen, np.float64)

  gt_vertices = posed(pose)
  box = metrics.bbox_size(gt_vertices)
  assert np.all((box > 80) & (box < 400))  # faces in 450 x 450 images.
  yaw = np.degrees(pose[:, 1])
  gt = report.FaceGeometry(gt_vertices, yaw)

  perfect = report.evaluate_method(report.FaceGeometry(gt_vertices, yaw), gt)
  assert perfect == pytest.approx(
      {'Dense 2D': 0, 'Dense 3D': 0, 'Face Rec.': 0, 'Yaw': 0}, abs=1e-9)

  shifted = report.evaluate_method(
      report.FaceGeometry(gt_vertices + [2., 0., 0.], yaw), gt)
  assert shifted[report.DENSE_2D] == pytest.approx(np.mean(2 / box))

  other_pose = np.roll(pose, 1, axis=0)
  swapped = report.evaluate_method(
      report.FaceGeometry(posed(other_pose), np.degrees(other_pose[:, 1])),
      gt)
  assert swapped[report.DENSE_2D] > 0.05
  # float32 projection: the aligned shapes agree to ~1e-6 of the box.
  assert swapped[report.FACE_REC] < 1e-5
  assert swapped[report.YAW] == pytest.approx(
      metrics.yaw_mae(np.degrees(other_pose[:, 1]), yaw))


def _face_with_eyes():
  """70 points: 68 'landmarks' + 2; gt box 100 x 64 (sqrt = 80), eyes 60.83.

  The outer eye corners (36, 45) are (-30, 0, 0) and (30, 0, 10): the 3D
  outer-interocular distance is sqrt(60^2 + 10^2).
  """
  rng = np.random.default_rng(3)
  points = np.zeros((70, 3))
  points[:, 0] = rng.uniform(-50, 50, 70)
  points[:, 1] = rng.uniform(-32, 32, 70)
  points[:, 2] = rng.uniform(-5, 5, 70)
  points[0, :2], points[1, :2] = (-50, -32), (50, 32)  # the box corners
  points[36], points[45] = (-30, 0, 0), (30, 0, 10)
  return points


def test_interocular_normaliser_hand_computed():
  gt_vertices = _face_with_eyes()[None]
  noise = np.random.default_rng(4).normal(size=gt_vertices.shape)
  gt = report.FaceGeometry(gt_vertices, np.zeros(1))
  pred = report.FaceGeometry(gt_vertices + noise, np.zeros(1))
  box = report.evaluate_method(pred, gt)
  interocular = report.evaluate_method(
      pred, gt, face_rec_normalizer='interocular',
      landmark_indices=np.arange(68))
  # Same aligned error, divided by 60.83 instead of 80.
  assert interocular[report.FACE_REC] == pytest.approx(
      box[report.FACE_REC] * 80 / np.sqrt(60**2 + 10**2))
  assert interocular[report.DENSE_3D] == box[report.DENSE_3D]
  with pytest.raises(ValueError, match='landmark_indices'):
    report.evaluate_method(pred, gt, face_rec_normalizer='interocular')
  with pytest.raises(ValueError, match='face_rec_normalizer'):
    report.evaluate_method(pred, gt, face_rec_normalizer='iod')


# ICT-FaceKit's narrow face area reaches 27 mm under the chin landmark (the
# jaw's underside); the procedural mask stops 12 mm under it.
@pytest.mark.parametrize('which,neck_mm', [('default', 30.0),
                                           ('procedural', 10.0)])
def test_prnet_protocol_evaluates_the_face_region_only(which, neck_mm):
  """Moving only the neck changes every metric but PRNet's."""
  from pnccface import facemodel  # pylint: disable=g-import-not-at-top
  model = (facemodel.default_model() if which == 'default' else
           facemodel.procedural_model())
  region = report.face_region(model)
  mean = np.asarray(model.mean_shape, np.float64)
  assert region.dtype == bool and 0.2 < region.mean() < 0.9
  lowest = mean[:, 1] < mean[model.landmark_indices[8], 1] - neck_mm
  assert lowest.any() and not region[lowest].any()
  gt = report.FaceGeometry(mean[None], np.zeros(1))
  neck_moved = mean + np.where(lowest[:, None], [0., -40., 15.], 0.)
  values = report.evaluate_protocols(
      report.FaceGeometry(neck_moved[None], np.zeros(1)), gt, model)
  assert set(values) == {report.PRNET, report.ALL_VERTICES}
  assert values[report.PRNET] == pytest.approx(
      {'Dense 2D': 0, 'Dense 3D': 0, 'Face Rec.': 0, 'Yaw': 0}, abs=1e-9)
  assert values[report.ALL_VERTICES][report.DENSE_2D] > 1e-3
  assert values[report.ALL_VERTICES][report.FACE_REC] > 1e-4


def test_protocol_report_prints_both_and_reads_back_the_default(tmp_path):
  other = [report.Table1Row('ours_mofa', 0.05, 0.07, 0.03, 5.0)]
  by_protocol = {report.ALL_VERTICES: other, report.PRNET: ROWS}
  markdown_path, json_path = report.write_protocol_report(by_protocol,
                                                          tmp_path)
  text = markdown_path.read_text()
  # The default (PRNet) comes first, with the paper's rows beside it.
  first, second = text.split('### ')[1:]
  assert first.startswith(report.PROTOCOL_TITLES[report.PRNET])
  assert '| ours_mofa | 4.57 | 6.12 | 7.89 | 5.12 |' in first
  assert '| MoFa (paper) | 4.31 |' in first and '(paper)' not in second
  assert '| ours_mofa | 5.00 | 7.00 | 3.00 | 5.00 |' in second
  assert report.read_report(tmp_path) == ROWS
  payload = json.loads(json_path.read_text())
  assert payload['protocol'] == report.PRNET
  assert payload['protocols'][report.ALL_VERTICES][0]['Face Rec.'] == 0.03
  with pytest.raises(KeyError, match='default protocol'):
    report.write_protocol_report({report.ALL_VERTICES: other}, tmp_path)
