"""Tests of pnccface.evaluation.metrics against hand-computed values and
brute-force references."""

import numpy as np
import pytest
import scipy.io
import scipy.optimize
from scipy.spatial.transform import Rotation

from pnccface import geometry
from pnccface.evaluation import metrics

# Four gt points whose 2D box is 4 wide and 9 high: sqrt(w h) = 6.
GT_XY = np.array([[0., 0.], [4., 0.], [4., 9.], [1., 2.]])


def _random_faces(rng, num_samples=3, num_vertices=50):
  return rng.normal(size=(num_samples, num_vertices, 3)) * [40., 50., 30.]


def test_bbox_size_hand_computed():
  assert metrics.bbox_size(GT_XY[None]) == pytest.approx([6.0])
  # Only x, y count; the third channel is ignored.
  points = np.concatenate([GT_XY, [[5.], [-7.], [0.], [1.]]], -1)[None]
  assert metrics.bbox_size(points) == pytest.approx([6.0])


def test_bbox_size_rejects_bad_shape():
  with pytest.raises(ValueError, match=r'\[N, P'):
    metrics.bbox_size(np.zeros((4, 2)))


def test_dense_nme_2d_hand_computed():
  pred = GT_XY + [[3., 4.], [0., 0.], [0., 0.], [0., 0.]]
  # Distances 5, 0, 0, 0 -> mean 1.25, box 6.
  nme = metrics.dense_nme_2d(pred[None], GT_XY[None])
  assert nme == pytest.approx([1.25 / 6])


def test_dense_nme_2d_shift_by_d_gives_d_over_box():
  rng = np.random.default_rng(0)
  gt = _random_faces(rng)
  shift = np.array([3., -4., 11.])  # |(3, -4)| = 5 px in the image plane.
  nme = metrics.dense_nme_2d(gt + shift, gt)
  np.testing.assert_allclose(nme, 5.0 / metrics.bbox_size(gt), rtol=1e-12)
  assert np.all(metrics.dense_nme_2d(gt, gt) == 0)


def test_dense_nme_2d_subset_uses_box_of_evaluated_gt():
  gt = np.concatenate([GT_XY, [[100., 100.]]])[None]
  pred = gt + [[3., 4.], [0., 0.], [0., 0.], [0., 0.], [50., 0.]]
  mask = np.array([True, True, True, True, False])
  expected = 1.25 / 6
  assert metrics.dense_nme_2d(pred, gt, mask) == pytest.approx([expected])
  assert metrics.dense_nme_2d(pred, gt, [0, 1, 2, 3]) == pytest.approx(
      [expected])
  # All five: distances 5, 0, 0, 0, 50, box sqrt(100 * 100).
  assert metrics.dense_nme_2d(pred, gt) == pytest.approx([55 / 5 / 100])


def test_dense_nme_3d_hand_computed():
  gt = np.concatenate([GT_XY, np.zeros((4, 1))], -1)
  # z offsets sum to zero, so centring the depth changes nothing here.
  pred = gt + [[3., 4., 12.], [0., 0., -4.], [0., 0., -4.], [0., 0., -4.]]
  # Distances 13, 4, 4, 4 -> 25 / 4, normalised by the 2D box 6.
  expected = 25 / 4 / 6
  assert metrics.dense_nme_3d(pred[None], gt[None]) == pytest.approx(
      [expected])
  assert metrics.dense_nme_3d(pred[None], gt[None],
                              center_depth=False) == pytest.approx([expected])


def test_dense_nme_3d_depth_offset():
  rng = np.random.default_rng(1)
  gt = _random_faces(rng)
  pred = gt + [0., 0., 7.]
  np.testing.assert_allclose(metrics.dense_nme_3d(pred, gt), 0, atol=1e-12)
  np.testing.assert_allclose(
      metrics.dense_nme_3d(pred, gt, center_depth=False),
      7.0 / metrics.bbox_size(gt), rtol=1e-12)


def test_dense_nme_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match='differ'):
    metrics.dense_nme_3d(np.zeros((2, 5, 3)), np.zeros((2, 6, 3)))
  with pytest.raises(ValueError, match='>=3'):
    metrics.dense_nme_3d(np.zeros((2, 5, 2)), np.zeros((2, 5, 2)))
  with pytest.raises(ValueError, match='mask'):
    metrics.dense_nme_2d(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)),
                         np.ones(4, bool))


def _random_similarity(rng, num_samples):
  rotation = Rotation.random(num_samples, random_state=rng).as_matrix()
  scale = rng.uniform(0.2, 5.0, num_samples)
  translation = rng.normal(size=(num_samples, 3)) * 100
  return metrics.Similarity(rotation, scale, translation)


def test_umeyama_recovers_known_similarity():
  rng = np.random.default_rng(2)
  source = _random_faces(rng, num_samples=5)
  truth = _random_similarity(rng, 5)
  fitted = metrics.umeyama_similarity(source, truth.apply(source))
  np.testing.assert_allclose(fitted.rotation, truth.rotation, atol=1e-10)
  np.testing.assert_allclose(fitted.scale, truth.scale, rtol=1e-10)
  np.testing.assert_allclose(fitted.translation, truth.translation,
                             atol=1e-8)


def _brute_force_similarity_error(source, target):
  """Minimises the squared error over (rotation vector, log s, t) directly."""

  def transform(params):
    rotation = Rotation.from_rotvec(params[:3]).as_matrix()
    return np.exp(params[3]) * source @ rotation.T + params[4:]

  def loss(params):
    return np.sum((transform(params) - target)**2)

  best = None
  for start in Rotation.random(8, random_state=0).as_rotvec():
    guess = np.concatenate([start, [0.], target.mean(0) - source.mean(0)])
    result = scipy.optimize.minimize(loss, guess, method='BFGS',
                                     options={'gtol': 1e-10})
    if best is None or result.fun < best.fun:
      best = result
  return np.linalg.norm(transform(best.x) - target, axis=-1).mean()


def test_reconstruction_nme_matches_brute_force_alignment():
  rng = np.random.default_rng(3)
  gt = _random_faces(rng, num_samples=2, num_vertices=30)
  pred = _random_similarity(rng, 2).apply(gt + rng.normal(size=gt.shape) * 5)
  nme = metrics.reconstruction_nme(pred, gt)
  expected = [_brute_force_similarity_error(p, g) for p, g in zip(pred, gt)]
  np.testing.assert_allclose(nme * metrics.bbox_size(gt), expected,
                             rtol=1e-5)


def test_reconstruction_nme_invariant_to_similarity_of_prediction():
  rng = np.random.default_rng(4)
  gt = _random_faces(rng, num_samples=4)
  pred = gt + rng.normal(size=gt.shape) * 3
  base = metrics.reconstruction_nme(pred, gt)
  assert np.all(base > 0.01)
  moved = _random_similarity(rng, 4).apply(pred)
  np.testing.assert_allclose(metrics.reconstruction_nme(moved, gt), base,
                             rtol=1e-9)
  np.testing.assert_allclose(metrics.reconstruction_nme(gt, gt), 0,
                             atol=1e-12)
  # The dense metrics do see the pose change.
  assert np.all(metrics.dense_nme_3d(moved, gt) > 10 * base)


def test_reconstruction_excludes_reflections():
  rng = np.random.default_rng(5)
  gt = _random_faces(rng, num_samples=2)
  mirrored = gt * [-1., 1., 1.]
  fitted = metrics.umeyama_similarity(mirrored, gt)
  np.testing.assert_allclose(np.linalg.det(fitted.rotation), 1.0, atol=1e-10)
  # A mirror image is not a similarity of a non-symmetric face.
  assert np.all(metrics.reconstruction_nme(mirrored, gt) > 0.05)


def test_reconstruction_nme_explicit_normalizer():
  rng = np.random.default_rng(6)
  gt = _random_faces(rng, num_samples=2)
  pred = gt + rng.normal(size=gt.shape)
  default = metrics.reconstruction_nme(pred, gt)
  custom = metrics.reconstruction_nme(pred, gt, normalizer=[2.0, 4.0])
  np.testing.assert_allclose(custom,
                             default * metrics.bbox_size(gt) / [2.0, 4.0])
  with pytest.raises(ValueError, match='normalizer'):
    metrics.reconstruction_nme(pred, gt, normalizer=[1.0])


def test_outer_interocular_distance():
  landmarks = np.zeros((1, 68, 3))
  landmarks[0, 36] = [1., 2., 3.]
  landmarks[0, 45] = [4., 6., 3.]
  assert metrics.outer_interocular_distance(landmarks) == pytest.approx([5.])


def test_landmark_nme_2d_hand_computed():
  gt = np.zeros((1, 68, 2))
  gt[0, :, 0] = np.linspace(0., 16., 68)
  gt[0, :, 1] = np.linspace(0., 4., 68)  # box 16 x 4 -> sqrt = 8.
  pred = gt.copy()
  pred[0, 0] += [6., 8.]  # one point 10 px off.
  assert metrics.landmark_nme_2d(pred, gt) == pytest.approx([10 / 68 / 8])
  with pytest.raises(ValueError, match='68'):
    metrics.landmark_nme_2d(pred[:, :67], gt[:, :67])


def test_landmark_nme_2d_on_real_aflw2000_landmarks(shared_data):
  files = sorted((shared_data / 'aflw2000_3d_sample').glob('*.mat'))[:10]
  gt = np.stack([scipy.io.loadmat(f)['pt3d_68'].T.astype(np.float64)
                 for f in files])  # [N, 68, 3]
  rng = np.random.default_rng(7)
  pred = gt[..., :2] + rng.normal(size=gt[..., :2].shape) * 3
  nme = metrics.landmark_nme_2d(pred, gt)
  # 3DDFA's per-sample loop, written out (benchmark_aflw2000.calc_nme).
  for n in range(len(files)):
    xs, ys = gt[n, :, 0], gt[n, :, 1]
    box = np.sqrt((xs.max() - xs.min()) * (ys.max() - ys.min()))
    distance = np.mean([np.hypot(*(pred[n, k] - gt[n, k, :2]))
                        for k in range(68)])
    assert nme[n] == pytest.approx(distance / box, rel=1e-12)
  assert np.all(metrics.landmark_nme_2d(gt, gt) == 0)


def test_yaw_wrap_around():
  assert metrics.yaw_mae([179.], [-179.]) == pytest.approx(2.)
  assert metrics.yaw_mae([-179.], [179.]) == pytest.approx(2.)
  assert metrics.yaw_mae([10.], [350.]) == pytest.approx(20.)
  assert metrics.yaw_mae([0.], [180.]) == pytest.approx(180.)
  # (|1 - 4| + |179 - (-179)| wrapped + |-30 - 30|) / 3 = (3 + 2 + 60) / 3.
  assert metrics.yaw_mae([1., 179., -30.], [4., -179., 30.]) == pytest.approx(
      65 / 3)
  np.testing.assert_allclose(metrics.wrap_degrees([180., -180., 540., 359.]),
                             [-180., -180., -180., -1.])


def test_yaw_mae_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match='yaws'):
    metrics.yaw_mae([1., 2.], [1.])


def test_yaw_of_real_pose_round_trips_through_geometry(shared_data):
  files = sorted((shared_data / 'aflw2000_3d_sample').glob('*.mat'))
  pose = np.stack([scipy.io.loadmat(f)['Pose_Para'][0] for f in files])
  rotation = geometry.euler_to_rotation(pose[:, 0], pose[:, 1], pose[:, 2])
  _, yaw_degrees, _ = geometry.rotation_to_euler_degrees(rotation)
  yaw_degrees = np.asarray(yaw_degrees, np.float64)
  file_degrees = np.degrees(pose[:, :3].astype(np.float64))
  in_range = metrics.euler_within_range(*file_degrees.T)
  # This sample holds one out-of-range annotation (yaw -104.6 deg with pitch
  # -328, roll 334); its canonical yaw is that of the same rotation.
  assert 0 < np.sum(~in_range) < len(files)
  assert metrics.yaw_mae(yaw_degrees[in_range],
                         file_degrees[in_range, 1]) < 1e-3
  assert metrics.yaw_mae(yaw_degrees[~in_range],
                         file_degrees[~in_range, 1]) > 10


def test_euler_within_range():
  np.testing.assert_array_equal(
      metrics.euler_within_range([0., 99., -100., 5.], [0., -99., 0., 120.],
                                 [0., 0., 0., 0.]),
      [True, True, False, False])


def test_nme_by_yaw_bins_hand_made():
  yaw = [10., -20., 30., 45., -60., 75., -89.]
  nme = [1., 2., 3., 4., 5., 6., 7.]
  result = metrics.nme_by_yaw_bins(nme, yaw)
  # Bins closed on the right as 3DDFA's: 30 -> first bin, -60 -> second.
  assert result['[0,30]'] == pytest.approx(2.)
  assert result['(30,60]'] == pytest.approx(4.5)
  assert result['(60,90]'] == pytest.approx(6.5)
  assert result['balanced'] == pytest.approx(13 / 3)
  assert result['overall'] == pytest.approx(4.)
  assert (result['count [0,30]'], result['count (30,60]'],
          result['count (60,90]']) == (3, 2, 2)


def test_yaw_bin_edges_closed_on_the_right():
  np.testing.assert_array_equal(
      metrics.yaw_bin_index([0., -30., 30.001, 60., -60.001, 95., -180.]),
      [0, 0, 1, 1, 2, 2, 2])


def test_nme_by_yaw_bins_empty_bin():
  result = metrics.nme_by_yaw_bins([1., 3., 8.], [5., -10., 70.])
  assert np.isnan(result['(30,60]'])
  assert result['count (30,60]'] == 0
  assert result['balanced'] == pytest.approx((2. + 8.) / 2)
  assert result['overall'] == pytest.approx(4.)
