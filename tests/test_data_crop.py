"""Face crops: pixel sampling, point and pose mapping (round trips)."""

import numpy as np
import pytest

from pnccface import geometry
from pnccface.data import crop


def test_crop_image_samples_at_output_pixel_centres():
  # Source pixel (i, j) holds its own centre x = j + 0.5 (image frame), so a
  # bilinear sample at image-frame x returns x.
  height, width = 100, 120
  xs = np.arange(width, dtype=np.float32) + 0.5
  image = np.broadcast_to(xs[None, :, None], (height, width, 3))
  box = crop.CropBox(x0=10.0, y0=20.0, side=64.0)
  out = crop.crop_image(image, box, size=32)
  expected = 10.0 + (np.arange(32) + 0.5) * 2.0  # x0 + (j + 0.5) * side / size
  np.testing.assert_allclose(out[5, :, 0], expected, atol=1e-4)


def test_crop_image_identity_box_returns_the_image():
  rng = np.random.default_rng(0)
  image = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
  out = crop.crop_image(image, crop.CropBox(0.0, 0.0, 40.0), size=40)
  np.testing.assert_allclose(out, image, atol=1e-5)


def test_points_round_trip_and_landmarks_follow_the_pixels():
  rng = np.random.default_rng(1)
  points = rng.uniform(50, 400, (68, 3)).astype(np.float32)
  box = crop.box_from_points(points[:, :2], margin=0.2, rng=rng, jitter=0.05)
  mapped = crop.transform_points(points, box, 128)
  back = crop.inverse_transform_points(mapped, box, 128)
  np.testing.assert_allclose(back, points, rtol=1e-5, atol=1e-3)
  # With margin 0.2 and jitter 0.05 every landmark stays inside the crop.
  assert mapped[:, :2].min() > 0 and mapped[:, :2].max() < 128


def test_box_from_points_is_square_with_margin():
  points = np.array([[10.0, 20.0], [50.0, 40.0]])
  box = crop.box_from_points(points, margin=0.25)
  assert box.side == pytest.approx(40.0 * 1.5)
  assert box.x0 + box.side / 2 == pytest.approx(30.0)
  assert box.y0 + box.side / 2 == pytest.approx(30.0)


def test_cropped_pose_projects_like_cropped_points():
  rng = np.random.default_rng(2)
  vertices = rng.normal(0, 50, (200, 3)).astype(np.float32)
  pose_para = np.array([0.2, -0.7, 0.1, 220.0, 230.0, -5.0, 1.3], np.float32)
  source = np.asarray(geometry.weak_perspective_to_screen(
      vertices, geometry.pose_para_to_weak_perspective(pose_para), 450))
  box = crop.box_from_points(source[:, :2], margin=0.1)
  pose_crop = crop.transform_pose_para(pose_para, box, 128, image_height=450)
  cropped = np.asarray(geometry.weak_perspective_to_screen(
      vertices, geometry.pose_para_to_weak_perspective(pose_crop), 128))
  np.testing.assert_allclose(cropped, crop.transform_points(source, box, 128),
                             atol=2e-3)
  np.testing.assert_allclose(pose_crop[:3], pose_para[:3])
