"""Tests of pnccface.geometry: hand-computed values, round trips, real files."""

import glob
import pickle

import numpy as np
import pytest
import scipy.io

from pnccface import geometry

# AFLW2000-3D images are 450 x 450.
AFLW_IMAGE_SIZE = 450
# The 60 samples are every 33rd of the 2000 files in sorted-name order.
AFLW_SAMPLE_STRIDE = 33


def _textbook_rotations(pitch, yaw, roll):
  """Right-handed elementary rotations Rx, Ry, Rz (active, column vectors)."""
  c, s = np.cos, np.sin
  rx = np.array([[1, 0, 0], [0, c(pitch), -s(pitch)], [0, s(pitch), c(pitch)]])
  ry = np.array([[c(yaw), 0, s(yaw)], [0, 1, 0], [-s(yaw), 0, c(yaw)]])
  rz = np.array([[c(roll), -s(roll), 0], [s(roll), c(roll), 0], [0, 0, 1]])
  return rx, ry, rz


def _random_angles(rng, n, max_yaw=np.pi / 2 - 1e-3):
  pitch = rng.uniform(-np.pi, np.pi, n)
  yaw = rng.uniform(-max_yaw, max_yaw, n)
  roll = rng.uniform(-np.pi, np.pi, n)
  return pitch, yaw, roll


# ----------------------------------------------------------------------------
# Image frame.


def test_pixel_centers_values():
  centers = np.asarray(geometry.pixel_centers(2, 3))
  assert centers.shape == (2, 3, 2)
  for i in range(2):
    for j in range(3):
      np.testing.assert_array_equal(centers[i, j], [j + 0.5, i + 0.5])


def test_matlab_image_round_trip():
  xy = np.random.default_rng(0).uniform(0, 450, (10, 2))
  np.testing.assert_allclose(geometry.matlab_to_image_xy(xy), xy - 0.5)
  np.testing.assert_allclose(
      geometry.image_to_matlab_xy(geometry.matlab_to_image_xy(xy)), xy)
  # MATLAB pixel 1 is our pixel 0, whose centre is 0.5.
  np.testing.assert_allclose(geometry.matlab_to_image_xy(np.array([1.0])),
                             [0.5])


# ----------------------------------------------------------------------------
# Rotations.


def test_euler_to_rotation_is_orthonormal_with_unit_determinant():
  pitch, yaw, roll = _random_angles(np.random.default_rng(1), 100, np.pi)
  r = np.asarray(geometry.euler_to_rotation(pitch, yaw, roll), np.float64)
  assert r.shape == (100, 3, 3)
  np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2),
                             np.broadcast_to(np.eye(3), r.shape), atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)


def test_euler_to_rotation_matches_documented_formula():
  pitch, yaw, roll = _random_angles(np.random.default_rng(2), 20, np.pi)
  got = np.asarray(geometry.euler_to_rotation(pitch, yaw, roll))
  for k in range(20):
    rx, ry, rz = _textbook_rotations(pitch[k], yaw[k], roll[k])
    np.testing.assert_allclose(got[k], rx.T @ ry.T @ rz.T, atol=1e-6)


def test_yaw_90_hand_computed():
  r = np.asarray(geometry.euler_to_rotation(0.0, np.pi / 2, 0.0))
  # R = Ry(90)^T: model +x (the face's left) turns towards the viewer (+z) and
  # the nose (+z) to the viewer's left (-x), as the docstring says.
  np.testing.assert_allclose(r @ [1, 0, 0], [0, 0, 1], atol=1e-6)
  np.testing.assert_allclose(r @ [0, 0, 1], [-1, 0, 0], atol=1e-6)
  np.testing.assert_allclose(r @ [0, 1, 0], [0, 1, 0], atol=1e-6)


def test_pitch_and_roll_90_hand_computed():
  rp = np.asarray(geometry.euler_to_rotation(np.pi / 2, 0.0, 0.0))
  np.testing.assert_allclose(rp @ [0, 0, 1], [0, 1, 0], atol=1e-6)
  rr = np.asarray(geometry.euler_to_rotation(0.0, 0.0, np.pi / 2))
  np.testing.assert_allclose(rr @ [1, 0, 0], [0, -1, 0], atol=1e-6)


def test_rotation_to_euler_round_trip_random():
  pitch, yaw, roll = _random_angles(np.random.default_rng(3), 200,
                                    np.radians(85))
  r = geometry.euler_to_rotation(pitch, yaw, roll)
  got = [np.asarray(a, np.float64) for a in geometry.rotation_to_euler(r)]
  for want, value in zip((pitch, yaw, roll), got):
    # Compare angles modulo 2 pi.
    np.testing.assert_allclose(np.angle(np.exp(1j * (value - want))), 0,
                               atol=2e-4)
  degrees = geometry.rotation_to_euler_degrees(r)
  np.testing.assert_allclose(degrees[1], np.degrees(got[1]), rtol=1e-5,
                             atol=1e-4)


@pytest.mark.parametrize('yaw_degrees',
                         [89.999, 90.0, -90.0, -89.999, 89.9, 89.0])
def test_rotation_to_euler_near_gimbal_lock_rebuilds_rotation(yaw_degrees):
  rng = np.random.default_rng(4)
  pitch = rng.uniform(-np.pi, np.pi, 16)
  roll = rng.uniform(-np.pi, np.pi, 16)
  yaw = np.full_like(pitch, np.radians(yaw_degrees))
  r = geometry.euler_to_rotation(pitch, yaw, roll)
  p, y, q = geometry.rotation_to_euler(r)
  assert np.all(np.abs(np.asarray(y)) <= np.pi / 2 + 1e-6)
  np.testing.assert_allclose(geometry.euler_to_rotation(p, y, q), r,
                             atol=1e-5)


# ----------------------------------------------------------------------------
# Cameras.


def test_weak_perspective_to_screen_hand_computed():
  camera = geometry.WeakPerspective(
      rotation=np.eye(3, dtype=np.float32), scale=np.float32(2.0),
      translation=np.array([10.0, 20.0, 5.0], np.float32))
  got = np.asarray(geometry.weak_perspective_to_screen(
      np.array([[1.0, 2.0, 3.0]], np.float32), camera, image_height=100))
  # p = 2 * (1, 2, 3) + (10, 20, 5) = (12, 24, 11); y_file = 101 - 24 = 77;
  # image frame = file - 0.5; depth = -p_z.
  np.testing.assert_allclose(got, [[11.5, 76.5, -11.0]])


def test_weak_perspective_to_screen_batched_matches_loop():
  rng = np.random.default_rng(5)
  pose = np.concatenate(
      [rng.uniform(-1, 1, (4, 3)), rng.uniform(0, 200, (4, 3)),
       rng.uniform(1e-3, 2e-3, (4, 1))], axis=1)
  vertices = rng.normal(0, 1e4, (4, 7, 3)).astype(np.float32)
  batched = geometry.weak_perspective_to_screen(
      vertices, geometry.pose_para_to_weak_perspective(pose), 300)
  for b in range(4):
    single = geometry.weak_perspective_to_screen(
        vertices[b], geometry.pose_para_to_weak_perspective(pose[b]), 300)
    np.testing.assert_allclose(batched[b], single, rtol=1e-5, atol=1e-3)


def test_camera_3x4_agrees_with_weak_perspective():
  rng = np.random.default_rng(6)
  pose = np.array([0.2, -0.7, 0.1, 120.0, 230.0, 7.0, 1.5e-3], np.float32)
  camera = geometry.pose_para_to_weak_perspective(pose)
  vertices = rng.normal(0, 5e4, (11, 3)).astype(np.float32)
  np.testing.assert_allclose(
      geometry.camera_3x4_to_screen(
          vertices, geometry.weak_perspective_to_3x4(camera), 450),
      geometry.weak_perspective_to_screen(vertices, camera, 450),
      rtol=1e-5, atol=1e-3)


def test_perspective_camera_principal_axis_and_off_axis():
  camera = geometry.PerspectiveCamera(focal=100.0, height=200, width=300)
  on_axis = np.asarray(camera.to_screen(np.array([[0.0, 0.0, -5.0]])))
  np.testing.assert_allclose(on_axis, [[150.0, 100.0, 5.0]])
  # x = 150 + 100 * 1 / 4, y = 100 - 100 * 2 / 4 (image y runs down).
  off_axis = np.asarray(camera.to_screen(np.array([[1.0, 2.0, -4.0]])))
  np.testing.assert_allclose(off_axis, [[175.0, 50.0, 4.0]])


def test_perspective_camera_from_field_of_view():
  camera = geometry.PerspectiveCamera.from_field_of_view(90.0, 200, 100)
  assert camera.focal == pytest.approx(100.0)
  # A point on the 45-degree ray hits the top edge of the image.
  top = np.asarray(camera.to_screen(np.array([[0.0, 3.0, -3.0]])))
  np.testing.assert_allclose(top[0, :2], [50.0, 0.0], atol=1e-4)


def test_rigid_transform_matches_numpy():
  rng = np.random.default_rng(7)
  rotation = np.asarray(geometry.euler_to_rotation(0.3, -0.2, 1.1))
  translation = rng.normal(size=3).astype(np.float32)
  vertices = rng.normal(size=(9, 3)).astype(np.float32)
  np.testing.assert_allclose(
      geometry.rigid_transform(vertices, rotation, translation),
      vertices @ rotation.T + translation, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# 3DDFA's 62 parameters.


def test_split_3ddfa_params_whitening_round_trip():
  rng = np.random.default_rng(8)
  mean = rng.normal(size=62).astype(np.float32)
  std = rng.uniform(0.5, 2.0, 62).astype(np.float32)
  raw = rng.normal(size=(5, 62)).astype(np.float32)
  split = geometry.split_3ddfa_params((raw - mean) / std, mean, std)
  np.testing.assert_allclose(split.camera, raw[:, :12].reshape(5, 3, 4),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(split.shape, raw[:, 12:52], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(split.expression, raw[:, 52:], rtol=1e-5,
                             atol=1e-5)
  # Row-major: camera[r] = (sR[r, :], t[r]).
  np.testing.assert_array_equal(
      geometry.split_3ddfa_params(np.arange(62.0)).camera[1],
      [4.0, 5.0, 6.0, 7.0])
  with pytest.raises(ValueError, match='62'):
    geometry.split_3ddfa_params(np.zeros(61))


def test_split_3ddfa_params_with_real_whitening(shared_data):
  with open(shared_data / '3ddfa' / 'param_whitening.pkl', 'rb') as f:
    whitening = pickle.load(f, encoding='latin1')
  mean, std = whitening['param_mean'], whitening['param_std']
  split = geometry.split_3ddfa_params(np.zeros(62), mean, std)
  # The average training pose is a near-frontal scaled rotation.
  s_r = np.asarray(split.camera)[:, :3]
  assert s_r[0, 0] > 0 and s_r[1, 1] > 0 and s_r[2, 2] > 0
  np.testing.assert_allclose(split.shape, mean[12:52], rtol=1e-6)


# ----------------------------------------------------------------------------
# Real data: 3DDFA's sparse basis, posed with AFLW2000-3D's Pose_Para, lands on
# the release's own landmarks.


def _sparse_basis(shared_data):
  d = shared_data / '3ddfa'
  return (np.loadtxt(d / 'u_base.txt'), np.loadtxt(d / 'w_shp_base.txt'),
          np.loadtxt(d / 'w_exp_base.txt'))


def _landmark_errors(shared_data, transpose_rotation=False):
  """Per-sample mean 2D landmark error / sqrt(box area) of pt3d_68."""
  mean, shape_basis, expression_basis = _sparse_basis(shared_data)
  files = sorted(glob.glob(str(shared_data / 'aflw2000_3d_sample' / '*.mat')))
  errors = []
  for path in files:
    fit = scipy.io.loadmat(path)
    landmarks = (mean + shape_basis @ fit['Shape_Para'][:40, 0] +
                 expression_basis @ fit['Exp_Para'][:10, 0]).reshape(68, 3)
    camera = geometry.pose_para_to_weak_perspective(fit['Pose_Para'][0])
    if transpose_rotation:
      camera = camera._replace(rotation=np.swapaxes(camera.rotation, -1, -2))
    screen = geometry.weak_perspective_to_screen(
        landmarks.astype(np.float32), camera, AFLW_IMAGE_SIZE)
    predicted = np.asarray(geometry.image_to_matlab_xy(screen[:, :2]))
    target = fit['pt3d_68'][:2].T
    box = np.sqrt(np.prod(target.max(0) - target.min(0)))
    errors.append(np.linalg.norm(predicted - target, axis=1).mean() / box)
  return np.array(errors), files


def test_aflw2000_landmarks_from_sparse_basis_and_pose_para(shared_data):
  errors, files = _landmark_errors(shared_data)
  assert len(files) == 60
  print(f'landmark error / sqrt(box): mean {100 * errors.mean():.3f}%, '
        f'max {100 * errors.max():.3f}%')
  assert errors.mean() < 0.012
  assert errors.max() < 0.03


def test_aflw2000_landmarks_negative_control(shared_data):
  # The same pipeline with the transposed rotation must fail clearly, so the
  # test above discriminates conventions.
  errors, _ = _landmark_errors(shared_data, transpose_rotation=True)
  assert errors.mean() > 0.10


# ----------------------------------------------------------------------------
# Real data: yaw from Pose_Para against 3DDFA's benchmark files.


def _sample_fits(shared_data):
  files = sorted(glob.glob(str(shared_data / 'aflw2000_3d_sample' / '*.mat')))
  return [scipy.io.loadmat(f) for f in files]


def test_aflw2000_sample_index_mapping_and_yaw(shared_data):
  """Sample k (sorted names) is entry 33 k of 3DDFA's 2000-entry arrays."""
  d = shared_data / '3ddfa'
  pts68 = np.load(d / 'AFLW2000-3D.pts68.npy')
  yaw_old = np.load(d / 'AFLW2000-3D.pose.npy')
  fits = _sample_fits(shared_data)
  indices = AFLW_SAMPLE_STRIDE * np.arange(len(fits))
  for index, fit in zip(indices, fits):
    # pts68.npy is pt3d_68 verbatim (same 1-based frame).
    np.testing.assert_array_equal(pts68[index], fit['pt3d_68'])
    # AFLW2000-3D.pose.npy is the signed Pose_Para yaw in degrees.
    np.testing.assert_allclose(yaw_old[index],
                               np.degrees(fit['Pose_Para'][0, 1]), atol=1e-4)
  # The wrong mapping does not match.
  assert not np.array_equal(pts68[indices[1] + 1], fits[1]['pt3d_68'])


def test_aflw2000_new_yaw_is_absolute_and_close_to_pose_para(shared_data):
  """AFLW2000-3D-new.pose.npy: |yaw| in degrees "according to AFLW labels".

  It is not Pose_Para's yaw exactly (median gap ~4 degrees over the
  samples), but it tracks |yaw|, and only under the 33 k mapping.
  """
  yaw_new = np.load(shared_data / '3ddfa' / 'AFLW2000-3D-new.pose.npy')
  assert yaw_new.shape == (2000,) and np.all(yaw_new >= 0)
  fits = _sample_fits(shared_data)
  yaw = np.abs(np.degrees([f['Pose_Para'][0, 1] for f in fits]))
  indices = AFLW_SAMPLE_STRIDE * np.arange(len(fits))
  assert np.median(np.abs(yaw_new[indices] - yaw)) < 6.0
  assert np.corrcoef(yaw_new[indices], yaw)[0, 1] > 0.85
  assert np.corrcoef(yaw_new[indices + 1], yaw)[0, 1] < 0.5
