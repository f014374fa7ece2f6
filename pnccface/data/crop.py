"""Square face crops: one similarity transform maps image, points and pose.

A crop is the square `box = (x0, y0, side)` in the source image frame
(`pnccface.geometry`: pixel centres at +0.5), resampled to `size x size`. A
source point p maps to `(p - (x0, y0)) * size / side`; depth is scaled by the
same factor so screen-space vertices stay a consistent weak perspective.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf



class CropBox(NamedTuple):
  """A square box: top-left corner (x0, y0) and side, image-frame pixels."""
  x0: float
  y0: float
  side: float


def box_from_points(points_xy, margin: float = 0.25, rng=None,
                    jitter: float = 0.0) -> CropBox:
  """Square box around 2D points (e.g. 68 landmarks).

  Args:
    points_xy: [P, 2] image-frame pixels.
    margin: the side is (1 + 2 * margin) times the larger extent of the points.
    rng: np.random.Generator for training jitter, or None.
    jitter: with rng, the centre moves up to +-jitter * side and the side
      scales by up to 1 +- jitter.
  """
  points_xy = np.asarray(points_xy, np.float64)
  lo, hi = points_xy.min(axis=0), points_xy.max(axis=0)
  centre = (lo + hi) / 2
  side = float((hi - lo).max() * (1 + 2 * margin))
  if rng is not None and jitter > 0:
    centre = centre + rng.uniform(-jitter, jitter, 2) * side
    side *= float(rng.uniform(1 - jitter, 1 + jitter))
  return CropBox(float(centre[0] - side / 2), float(centre[1] - side / 2), side)


def box_from_roi(roi, margin: float = 0.0) -> CropBox:
  """Square box around an [x_min, y_min, x_max, y_max] roi (image frame)."""
  x_min, y_min, x_max, y_max = (float(v) for v in roi)
  return box_from_points([[x_min, y_min], [x_max, y_max]], margin)


def crop_image(image, box: CropBox, size: int) -> np.ndarray:
  """Bilinear resample of `box` to [size, size, C] float32 (zeros outside).

  Output pixel centre (j + 0.5) samples the source at
  x0 + (j + 0.5) * side / size, consistent with `transform_points`.

  Args:
    image: [H, W, C] uint8 or float.
  """
  image = tf.convert_to_tensor(image)
  height, width = int(image.shape[0]), int(image.shape[1])
  # tf.image.crop_and_resize samples at y1 + i * (y2 - y1) / (size - 1) in
  # pixel-index units (centre of pixel k at k), normalised by (H - 1).
  step = box.side / size
  first_x = box.x0 + 0.5 * step - 0.5
  first_y = box.y0 + 0.5 * step - 0.5
  last_x = first_x + (size - 1) * step
  last_y = first_y + (size - 1) * step
  boxes = [[first_y / max(height - 1, 1), first_x / max(width - 1, 1),
            last_y / max(height - 1, 1), last_x / max(width - 1, 1)]]
  out = tf.image.crop_and_resize(
      tf.cast(image, tf.float32)[None], boxes, [0], [size, size],
      method='bilinear', extrapolation_value=0.0)
  return out[0].numpy()


def transform_points(points, box: CropBox, size: int) -> np.ndarray:
  """Source image frame -> crop frame for [..., 2] or screen-space [..., 3]."""
  points = np.asarray(points, np.float32)
  factor = size / box.side
  out = points.copy()
  out[..., 0] = (points[..., 0] - box.x0) * factor
  out[..., 1] = (points[..., 1] - box.y0) * factor
  if points.shape[-1] == 3:
    out[..., 2] = points[..., 2] * factor
  return out


def inverse_transform_points(points, box: CropBox, size: int) -> np.ndarray:
  """Crop frame -> source image frame (inverse of `transform_points`)."""
  points = np.asarray(points, np.float32)
  factor = box.side / size
  out = points.copy()
  out[..., 0] = points[..., 0] * factor + box.x0
  out[..., 1] = points[..., 1] * factor + box.y0
  if points.shape[-1] == 3:
    out[..., 2] = points[..., 2] * factor
  return out


def transform_pose_para(pose_para, box: CropBox, size: int,
                        image_height: float) -> np.ndarray:
  """Maps a `Pose_Para` of the source image to the crop.

  The weak perspective `s R v + t` with the release's y flip
  (`geometry.weak_perspective_to_screen`) stays a weak perspective under a
  crop: rotation unchanged, scale and translation change. The result
  projects to the crop what `pose_para` projected to the source, through
  `transform_points`.

  Args:
    pose_para: [7] [pitch, yaw, roll (rad), tx, ty, tz, scale].
    image_height: height of the source image in pixels.
  """
  pose_para = np.asarray(pose_para, np.float64)
  factor = size / box.side
  tx, ty, tz, scale = pose_para[3], pose_para[4], pose_para[5], pose_para[6]
  # Source image frame of a projected point p: x = p_x + tx - 0.5,
  # y = H + 0.5 - (p_y + ty). In the crop the same formulas hold with
  # H' = size, scale' = factor * scale and the translations below.
  tx_crop = factor * (tx - 0.5 - box.x0) + 0.5
  ty_crop = size + 0.5 - factor * (image_height + 0.5 - ty - box.y0)
  out = pose_para.copy()
  out[3:7] = [tx_crop, ty_crop, factor * tz, factor * scale]
  return out.astype(np.float32)
