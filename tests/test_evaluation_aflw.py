"""Sparse 68-landmark NME on the 60 shared AFLW2000-3D samples; the
model-landmark rows split over (faked) processes."""

import dataclasses
import pathlib
import types

import jax
import numpy as np
import pytest
import tensorflow as tf

from pnccface import facemodel
from pnccface import geometry
from pnccface import render
from pnccface.data import crop
from pnccface.data import synthesis
from pnccface.evaluation import aflw
from pnccface.evaluation import metrics
from pnccface.evaluation import paper
from tests import conftest
from tests.conftest import as_processes


@pytest.fixture(scope='module')
def release():
  from tests.conftest import SHARED_DATA  # pylint: disable=g-import-not-at-top
  if not (SHARED_DATA / 'aflw2000_3d_sample').is_dir():
    pytest.skip('shared data absent')
  params = aflw.read_release(SHARED_DATA / 'aflw2000_3d_sample')
  sparse = facemodel.load_3ddfa_sparse_model(SHARED_DATA / '3ddfa')
  return params, sparse


def test_landmarks_rebuilt_from_parameters_score_near_zero(release):
  params, sparse = release
  result = aflw.evaluate_landmarks(aflw.posed_landmarks(params, sparse),
                                   params)
  # Only the truncated 40/10 basis separates them from pt3d_68 (measured
  # 0.857% overall).
  assert result['overall'] < 0.012, result
  assert result['count [0,30]'] + result['count (30,60]'] + result[
      'count (60,90]'] == 60


def test_mean_face_with_true_pose_is_a_sensible_nonzero_baseline(release):
  params, sparse = release
  rebuilt = aflw.evaluate_landmarks(aflw.posed_landmarks(params, sparse),
                                    params)
  mean_face = aflw.evaluate_landmarks(
      aflw.posed_landmarks(params, sparse, use_coefficients=False), params)
  # Identity and expression matter, but pose explains most of the landmark
  # layout: between the rebuilt faces and a wrong pose (> 10%).
  assert rebuilt['overall'] * 2 < mean_face['overall'] < 0.08, mean_face
  shuffled = aflw.evaluate_landmarks(
      np.roll(aflw.posed_landmarks(params, sparse), 1, axis=0), params)
  assert shuffled['overall'] > 0.1


def test_predict_on_crops_maps_back_to_the_image(release):
  params, _ = release
  gt, _ = aflw.ground_truth(params[:5])
  folder = pathlib.Path(params[0].path).parent

  def oracle(images):  # the true landmarks in crop pixels (one batch of 5)
    assert images.shape == (5, 64, 64, 3) and images.max() <= 1
    return np.stack([
        crop.transform_points(points, crop.box_from_points(points, 0.2), 64)
        for points in gt])

  predicted = aflw.predict_on_crops(folder, params[:5], oracle, crop_size=64)
  np.testing.assert_allclose(predicted, gt, atol=1e-3)


def test_default_binning_is_3ddfas_raw_pose_para_yaw(shared_data):
  """3DDFA's benchmark bins |AFLW2000-3D.pose.npy|: 1312 / 383 / 305."""
  yaws = np.load(shared_data / '3ddfa' / 'AFLW2000-3D.pose.npy')
  counts = metrics.nme_by_yaw_bins(np.zeros(yaws.shape), yaws)
  assert [counts[f'count {name}'] for name in metrics.YAW_BIN_NAMES] == [
      1312, 383, 305]
  # Our sample is every 33rd file of the release (image00002 is entry 0);
  # pose.npy holds exactly the raw Pose_Para yaw in degrees that
  # `evaluate_landmarks` bins by default.
  params = aflw.read_release(shared_data / 'aflw2000_3d_sample')
  np.testing.assert_allclose(aflw.yaw_degrees(params),
                             yaws[::33][:len(params)], atol=1e-4)
  # Where the fitted angles leave the usual range (pose.npy has yaws down to
  # -351), the canonical yaw of the rebuilt rotation bins elsewhere: pitch
  # 180, yaw 170, roll 180 is the rotation of yaw 10.
  flipped = dataclasses.replace(params[0], pose_para=np.concatenate(
      [np.radians([180.0, 170.0, 180.0]), params[0].pose_para[3:]]))
  assert aflw.yaw_degrees([flipped])[0] == pytest.approx(170.0)
  assert abs(aflw.yaw_degrees([flipped], aflw.YAW_ROTATION)[0]) == (
      pytest.approx(10.0))


def test_evaluate_landmarks_bins_by_the_chosen_yaw(release):
  params, sparse = release
  predicted = aflw.posed_landmarks(params, sparse)
  gt, _ = aflw.ground_truth(params)
  nme = metrics.landmark_nme_2d(predicted, gt)
  for source in aflw.YAW_SOURCES:
    expected = metrics.nme_by_yaw_bins(nme, aflw.yaw_degrees(params, source))
    assert aflw.evaluate_landmarks(predicted, params, source) == expected
  assert aflw.evaluate_landmarks(predicted, params) == metrics.nme_by_yaw_bins(
      nme, np.degrees([p.pose_para[1] for p in params]))
  with pytest.raises(ValueError, match='yaw_source'):
    aflw.evaluate_landmarks(predicted, params, 'pitch')


def test_release_in_aflw2000_subfolder_and_corrupt_jpg_named(shared_data,
                                                            tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  from pnccface.data import aflw2000_3d  # pylint: disable=g-import-not-at-top
  source = sorted((shared_data / 'aflw2000_3d_sample').glob('image*.jpg'))[:2]
  folder = tmp_path / 'AFLW2000'
  folder.mkdir()
  for jpg in source:
    shutil.copy(jpg, folder)
    shutil.copy(jpg.with_suffix('.mat'), folder)
  params = aflw.read_release(tmp_path)  # the zip's layout: AFLW2000/
  assert len(params) == 2
  bad = folder / source[1].name
  bad.write_bytes(bad.read_bytes()[:100])
  with pytest.raises(aflw2000_3d.CorruptImageError,
                     match=source[1].stem + r'\.jpg'):
    aflw.predict_on_crops(tmp_path, params, lambda x: x, crop_size=32)


def test_yaw_spread_picks_quantiles_of_abs_yaw(release):
  params, _ = release
  yaw = np.abs(aflw.yaw_degrees(params, aflw.YAW_ROTATION))
  picked = aflw.yaw_spread(params, 6)
  assert len(set(picked.tolist())) == 6
  assert yaw[picked[0]] == yaw.min() and yaw[picked[-1]] == yaw.max()
  assert np.all(np.diff(yaw[picked]) >= 0)
  # The middle rows sit at their quantile's rank: 12 of 60 below the 2nd.
  assert (yaw < yaw[picked[1]]).sum() == 12
  np.testing.assert_array_equal(picked, aflw.yaw_spread(params, 6))
  with pytest.raises(ValueError, match='count'):
    aflw.yaw_spread(params[:3], 6)


def test_face_crops_show_the_landmarks_inside(release):
  params, _ = release
  images, boxes = aflw.face_crops(params, [0, 7], 48, margin=0.4)
  assert images.shape == (2, 48, 48, 3) and 0 <= images.min()
  assert images.max() <= 1 and images.std() > 0.05
  gt, _ = aflw.ground_truth([params[0], params[7]])
  for points, box in zip(gt, boxes):
    inside = crop.transform_points(points, box, 48)
    # margin 0.4: the landmarks' extent is 1 / 1.8 of the side, centred.
    assert np.ptp(inside, 0).max() == pytest.approx(48 / 1.8, rel=1e-3)
    assert inside.min() > 48 * 0.2 and inside.max() < 48 * 0.8


class _CountingReconstructor:
  """Stands in for `api.Reconstructor`: landmarks and angles computed from
  each crop's pixels alone (so a face's result does not depend on its
  batch); counts the crops it reconstructs."""
  input_size = 32

  def __init__(self):
    self.count = 0

  def reconstruct(self, images):
    self.count += len(images)
    colour = images.mean(axis=(1, 2)).astype(np.float32)  # [B, 3]
    grid = np.arange(68 * 2, dtype=np.float32).reshape(68, 2) / 8
    return types.SimpleNamespace(
        landmarks_2d=grid + 30 * colour[:, None, :2],
        pitch_degrees=colour[:, 0], yaw_degrees=colour[:, 1],
        roll_degrees=colour[:, 2])


@pytest.mark.parametrize('count', [2, 9])
def test_aflw_rows_split_over_processes_equal_one_process(release,
                                                          monkeypatch, count):
  params = release[0][:7]
  folder = pathlib.Path(params[0].path).parent
  single = _CountingReconstructor()
  landmarks, angles = paper.predict_aflw_rows(single, folder, params, 0.2)
  assert single.count == 7 and landmarks.shape == (7, 68, 2)
  assert angles.shape == (7, 3) and np.ptp(angles[:, 1]) > 0
  # Two processes: 4 + 3 faces; nine: one each, two with none.
  reconstructors = [_CountingReconstructor() for _ in range(count)]
  results = as_processes(monkeypatch, count, lambda: paper.predict_aflw_rows(
      reconstructors[jax.process_index()], folder, params, 0.2))
  for got_landmarks, got_angles in results:
    np.testing.assert_array_equal(got_landmarks, landmarks)
    np.testing.assert_array_equal(got_angles, angles)
  per_pass = [r.count // 2 for r in reconstructors]  # as_processes: 2 passes
  assert per_pass == ([4, 3] if count == 2 else [1] * 7 + [0, 0])


def test_ict_fit_rows_split_over_processes_equal_one_process(release,
                                                             monkeypatch):
  params = release[0][:4]
  landmarks, angles = paper.ict_fit_rows(params)
  assert landmarks.shape == (4, 68, 2) and angles.shape == (4, 3)
  fitted = []  # batch sizes of the fits, process by process
  fit = paper.fitting.fit_landmarks
  monkeypatch.setattr(paper.fitting, 'fit_landmarks', lambda model, targets,
                      *a, **k: fitted.append(len(targets)) or fit(
                          model, targets, *a, **k))
  results = as_processes(monkeypatch, 2, lambda: paper.ict_fit_rows(params))
  assert fitted == [2, 2, 2, 2]  # as_processes: 2 passes x 2 processes
  for got_landmarks, got_angles in results:
    # Each face's fit is its own: another batch shape, the same fit (to
    # float rounding; measured identical on this CPU).
    np.testing.assert_allclose(got_landmarks, landmarks, atol=1e-3)
    np.testing.assert_allclose(got_angles, angles, atol=1e-3)


class _RenderedPNCCPredictor:
  """Stands in for `api.PNCCPredictor`: hands out the given PNCCs in call
  order (one per release crop, as `aflw_pncc_rows` asks for them)."""
  input_size = 64

  def __init__(self, pnccs):
    self.pnccs, self.count = pnccs, 0

  def predict_pncc(self, images):
    assert images.shape[1:] == (64, 64, 3) and images.max() <= 1
    self.count += len(images)
    return self.pnccs[self.count - len(images):self.count]


def test_pncc_rows_read_the_pose_and_landmarks_that_a_pncc_shows(release):
  """Crops whose 'predicted' PNCC is the mean face rendered at the file's
  rotation: the rows give that rotation and the mean face's landmarks under
  it, mapped back from the crop to the image."""
  params = release[0][:5]
  model = conftest.tiny_face_model()
  size = 64
  pose_para = np.array([[*p.pose_para[:3], size / 2 + k, size / 2 - k, 0.0,
                         0.3 + 0.02 * k] for k, p in enumerate(params)],
                       np.float32)
  screen = synthesis.face_vertices_screen(model, None, None, pose_para, size)
  pncc, _ = render.render_pncc(screen, model.triangles, model.ncc, size, size)
  predictor = _RenderedPNCCPredictor(np.asarray(pncc))
  landmarks, angles = paper.aflw_pncc_rows(predictor, params, 0.4, model)
  assert predictor.count == 5
  assert landmarks.shape == (5, 68, 2) and angles.shape == (5, 3)
  truth = np.stack([np.asarray(geometry.rotation_to_euler_degrees(
      geometry.euler_to_rotation(*p[:3]))) for p in pose_para])
  np.testing.assert_allclose(angles, truth, atol=1.0)
  _, boxes = aflw.face_crops(params, range(5), size, 0.4)
  in_crops = np.stack([crop.transform_points(points, box, size)
                       for points, box in zip(landmarks, boxes)])
  expected = np.asarray(screen)[:, np.asarray(model.landmark_indices), :2]
  np.testing.assert_allclose(in_crops, expected, atol=0.3)  # crop pixels


def test_pncc_figure_shows_the_inputs_and_each_predictors_pncc(release,
                                                               tmp_path):
  params = release[0][:8]

  class Constant:  # a 'predictor' whose PNCC is one colour
    input_size = 64

    def __init__(self, colour):
      self.colour = np.asarray(colour, np.float32)

    def predict_pncc(self, images):
      return np.broadcast_to(self.colour, images.shape).copy()

  path = tmp_path / paper.AFLW_PNCC_FIGURE
  picked = paper.aflw_pncc_figure(
      {'PNCC_full': Constant((1, 0, 0)), 'PNCC_few': Constant((0, 0, 1))},
      params, 0.4, path, num_faces=3)
  np.testing.assert_array_equal(picked, aflw.yaw_spread(params, 3))
  grid = tf.io.decode_png(path.read_bytes()).numpy()
  side = paper.FIGURE_SIZE + 2  # the grid's 2-pixel padding
  assert grid.shape == (3 * side + 2, 3 * side + 2, 3)
  centre = 2 + paper.FIGURE_SIZE // 2
  images, _ = aflw.face_crops(params, picked, paper.FIGURE_SIZE, 0.4)
  for row in range(3):
    y = centre + row * side
    # Column 0 is the crop itself; columns 1, 2 each predictor's PNCC.
    np.testing.assert_allclose(grid[y, centre] / 255,
                               images[row, centre - 2, centre - 2], atol=0.01)
    np.testing.assert_array_equal(grid[y, centre + side], (255, 0, 0))
    np.testing.assert_array_equal(grid[y, centre + 2 * side], (0, 0, 255))
