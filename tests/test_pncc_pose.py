"""Pose from a PNCC image: a rendered PNCC of a known pose gives that pose
back; the closed-form camera fit against a brute-force projection."""

import numpy as np
import pytest

from pnccface import fitting
from pnccface import geometry
from pnccface import render
from pnccface.data import synthesis
from pnccface.evaluation import pncc_pose
from tests import conftest

SIZE = 64
# (pitch, yaw, roll) degrees.
POSES = ((0.0, 0.0, 0.0), (10.0, 40.0, 5.0), (-8.0, -65.0, -4.0),
         (5.0, 25.0, -12.0))


def _pose_para(angles_degrees, scale):
  return np.array([[*np.radians(a), SIZE / 2, SIZE / 2, 0.0, scale]
                   for a in angles_degrees], np.float32)


def test_camera_from_correspondences_recovers_a_known_camera():
  rng = np.random.default_rng(0)
  points = rng.normal(size=(2, 50, 3)).astype(np.float32) * 40
  truth = geometry.pose_para_to_weak_perspective(np.array(
      [[0.2, -1.2, 0.1, 30.0, 70.0, 5.0, 0.7],
       [-0.3, 0.5, -0.4, 10.0, 20.0, 0.0, 1.3]], np.float32))
  pixels = np.array(geometry.weak_perspective_to_screen(
      points, truth, 100))[..., :2]
  weights = np.ones((2, 50), np.float32)
  pixels[:, :5] += 500  # outliers with weight 0 must not count
  weights[:, :5] = 0
  camera = fitting.camera_from_correspondences(points, pixels, 100, weights)
  np.testing.assert_allclose(camera.rotation, truth.rotation, atol=1e-4)
  np.testing.assert_allclose(camera.scale, truth.scale, rtol=1e-4)
  reprojected = np.asarray(geometry.weak_perspective_to_screen(
      points, camera, 100))[..., :2]
  np.testing.assert_allclose(reprojected[:, 5:], pixels[:, 5:], atol=2e-3)
  with pytest.raises(ValueError, match='points_image'):
    fitting.camera_from_correspondences(points, pixels[..., :1], 100)


def test_rendered_pncc_of_a_known_pose_gives_that_pose(monkeypatch):
  model = conftest.tiny_face_model()
  pose_para = _pose_para(POSES, 0.35)  # the 140 mm cap spans ~50 px
  screen = synthesis.face_vertices_screen(model, None, None, pose_para, SIZE)
  pncc, mask = render.render_pncc(screen, model.triangles, model.ncc, SIZE,
                                  SIZE)
  assert 0.2 < float(np.asarray(mask).mean()) < 0.9  # the face fits inside
  # Background colours must not count: only the mask's pixels are read.
  noisy = np.where(np.asarray(mask) > 0, np.asarray(pncc),
                   np.random.default_rng(1).uniform(size=pncc.shape))
  angles = pncc_pose.pncc_pose_degrees(noisy, mask, model)
  np.testing.assert_allclose(angles, np.array(POSES), atol=0.5)
  with pytest.raises(ValueError, match='mask'):
    pncc_pose.pncc_pose_degrees(pncc, np.asarray(mask)[:, :8], model)
  # A decoder fitted once gives the same poses and is not refitted.
  decoder = pncc_pose.ncc_decoder(model)

  def refit(_):
    raise AssertionError('ncc_decoder refitted although a decoder was given')

  monkeypatch.setattr(pncc_pose, 'ncc_decoder', refit)
  np.testing.assert_array_equal(
      pncc_pose.pncc_pose_degrees(noisy, mask, decoder=decoder), angles)
  for model_and_decoder in ({}, {'model': model, 'decoder': decoder}):
    with pytest.raises(ValueError, match='exactly one'):
      pncc_pose.pncc_pose_degrees(noisy, mask, **model_and_decoder)


def test_ncc_decoder_inverts_the_normalised_coordinate_code():
  model = conftest.tiny_face_model()
  offset, scale = pncc_pose.ncc_decoder(model)
  np.testing.assert_allclose(offset + scale * np.asarray(model.ncc),
                             model.mean_shape, atol=1e-3)
  mean = np.asarray(model.mean_shape)
  np.testing.assert_allclose(offset, mean.min(0), atol=1e-3)
  np.testing.assert_allclose(scale, np.ptp(mean, 0), atol=1e-3)


def test_predicted_face_mask_drops_background_and_the_silhouette():
  pncc = np.zeros((2, 6, 7, 3), np.float32)
  pncc[0, 1:5, 1:6] = (0.3, 0.01, 0.02)  # a 4 x 5 face: its 2 x 3 inside
  pncc[1, 2:5, 2:5, 2] = 0.9  # a 3 x 3 face: only its centre
  pncc[1, 0, 0] = 0.04  # below the threshold: background
  mask = pncc_pose.predicted_face_mask(pncc)
  expected = np.zeros((2, 6, 7), bool)
  expected[0, 2:4, 2:5] = True
  expected[1, 3, 3] = True
  np.testing.assert_array_equal(mask, expected)
  # A face reaching the border keeps no border pixel (outside is background).
  np.testing.assert_array_equal(
      pncc_pose.predicted_face_mask(np.full((1, 3, 3, 3), 0.5)),
      [[[False] * 3, [False, True, False], [False] * 3]])
  with pytest.raises(ValueError, match=r'\[B, H, W, 3\]'):
    pncc_pose.predicted_face_mask(pncc[0])
