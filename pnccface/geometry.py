"""Coordinate frames, cameras and pose conventions: written once, here.

Every other module imports these conventions instead of restating them.

Model frame (3DMM vertices, `MorphableModel.vertices`):
  right-handed; x to the viewer's right, y up, z towards the viewer, i.e. a
  frontal face looks along +z. Units are those of the model (BFM: micrometres,
  the embedded model: millimetres).

Camera frame (perspective camera): the same axes; the camera sits at the
  origin and looks along -z, so visible points have z < 0.

Image frame (images, landmarks, screen-space vertices):
  x = column coordinate to the right, y = row coordinate downwards, in pixels.
  Pixel (row i, column j) is the unit square [j, j+1) x [i, i+1); its centre is
  (j + 0.5, i + 0.5). `pixel_centers` gives these.

Screen-space vertices (the rasterizer's input): [..., 3] = (x, y, depth) with
  x, y in the image frame and depth increasing away from the viewer (smaller
  depth = nearer; the z-buffer keeps the minimum).

Triangle winding: a triangle is front-facing when its image-frame vertices run
  clockwise on screen (y down), i.e. counter-clockwise in the model frame seen
  from the camera. Rasterization itself is two-sided; winding only matters for
  normals, which point out of the face (towards +z for a frontal face).

Angles: radians inside rotation maths; degrees at the reporting boundary
  (names end in `_degrees`). pitch, yaw, roll rotate about x, y, z.

Index bases: 0-based everywhere in the package. MATLAB's 1-based triangle and
  landmark indices are converted when files are read.

300W-LP / AFLW2000-3D files (`Pose_Para` = [pitch, yaw, roll, tx, ty, tz, s],
  radians): the release projects model vertices as `s * R @ v + t` and flips y
  to image rows as `y_file = H + 1 - y`, in MATLAB's 1-based pixel coordinates
  (pixel k has its centre at k). In our image frame that centre is k - 0.5, so
  `image = file - 0.5` (see `matlab_to_image_xy`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

Array = jnp.ndarray


# ----------------------------------------------------------------------------
# Image frame.


def pixel_centers(height: int, width: int) -> Array:
  """Pixel centres in the image frame.

  Returns:
    [H, W, 2] float32: (x, y) = (j + 0.5, i + 0.5) for pixel (row i, col j).
  """
  ys, xs = jnp.meshgrid(
      jnp.arange(height, dtype=jnp.float32) + 0.5,
      jnp.arange(width, dtype=jnp.float32) + 0.5,
      indexing='ij')
  return jnp.stack([xs, ys], axis=-1)


def matlab_to_image_xy(xy_matlab):
  """MATLAB 1-based pixel coordinates (centre of pixel k at k) -> image frame."""
  return xy_matlab - 0.5


def image_to_matlab_xy(xy_image):
  """Image frame -> MATLAB 1-based pixel coordinates."""
  return xy_image + 0.5


# ----------------------------------------------------------------------------
# Rotations.


def euler_to_rotation(pitch, yaw, roll) -> Array:
  """Rotation matrix of the 300W-LP / 3DDFA convention.

  R = Rx(pitch)^T @ Ry(yaw)^T @ Rz(roll)^T, with Rx, Ry, Rz the usual
  right-handed elementary rotations, as `angle2matrix_3ddfa` in 3DDFA/face3d
  defines it for `Pose_Para`. A positive yaw turns the face towards the
  viewer's left (its own right).

  Args:
    pitch, yaw, roll: [...] radians.

  Returns:
    [..., 3, 3] rotation matrices acting on column vectors (R @ v).
  """
  pitch, yaw, roll = jnp.broadcast_arrays(
      *(jnp.asarray(a, jnp.float32) for a in (pitch, yaw, roll)))
  cx, sx = jnp.cos(pitch), jnp.sin(pitch)
  cy, sy = jnp.cos(yaw), jnp.sin(yaw)
  cz, sz = jnp.cos(roll), jnp.sin(roll)
  one, zero = jnp.ones_like(cx), jnp.zeros_like(cx)
  rx = _mat3(one, zero, zero, zero, cx, sx, zero, -sx, cx)
  ry = _mat3(cy, zero, -sy, zero, one, zero, sy, zero, cy)
  rz = _mat3(cz, sz, zero, -sz, cz, zero, zero, zero, one)
  return rx @ ry @ rz


def _mat3(*entries) -> Array:
  rows = [jnp.stack(entries[3 * r:3 * r + 3], axis=-1) for r in range(3)]
  return jnp.stack(rows, axis=-2)


def rotation_to_euler(rotation) -> tuple[Array, Array, Array]:
  """Inverse of `euler_to_rotation`: (pitch, yaw, roll) in radians.

  With R = Rx^T Ry^T Rz^T, R[0, 2] = -sin(yaw), R[1, 2] = sin(pitch) cos(yaw),
  R[2, 2] = cos(pitch) cos(yaw), R[0, 1] = cos(yaw) sin(roll),
  R[0, 0] = cos(yaw) cos(roll). Near yaw = +-90 deg (gimbal lock) pitch and
  roll are not separable; there the whole in-plane angle is reported as pitch
  with roll = 0, computed from entries that stay well conditioned.

  Args:
    rotation: [..., 3, 3].

  Returns:
    pitch, yaw, roll: [...] radians; yaw in [-pi/2, pi/2].
  """
  r = jnp.asarray(rotation)
  cos_yaw = jnp.sqrt(r[..., 0, 0]**2 + r[..., 0, 1]**2)
  yaw = jnp.arctan2(-r[..., 0, 2], cos_yaw)
  regular = cos_yaw > 1e-6
  pitch = jnp.where(regular, jnp.arctan2(r[..., 1, 2], r[..., 2, 2]),
                    jnp.arctan2(-r[..., 2, 1], r[..., 1, 1]))
  roll = jnp.where(regular, jnp.arctan2(r[..., 0, 1], r[..., 0, 0]), 0.)
  return pitch, yaw, roll


def rotation_to_euler_degrees(rotation) -> tuple[Array, Array, Array]:
  """`rotation_to_euler` in degrees: (pitch, yaw, roll)."""
  return tuple(jnp.degrees(a) for a in rotation_to_euler(rotation))


# ----------------------------------------------------------------------------
# Weak perspective (300W-LP / AFLW2000-3D, 3DDFA).


class WeakPerspective(NamedTuple):
  """`image_xy = flip_y(scale * R @ v + translation)`.

  rotation: [..., 3, 3]; scale: [...]; translation: [..., 3] in the flipped-y
  (upward) image units of the release, before the y flip.
  """
  rotation: Array
  scale: Array
  translation: Array


def pose_para_to_weak_perspective(pose_para) -> WeakPerspective:
  """`Pose_Para` [..., 7] = [pitch, yaw, roll (rad), tx, ty, tz, scale]."""
  pose_para = jnp.asarray(pose_para, jnp.float32)
  rotation = euler_to_rotation(pose_para[..., 0], pose_para[..., 1],
                               pose_para[..., 2])
  return WeakPerspective(rotation, pose_para[..., 6], pose_para[..., 3:6])


def weak_perspective_to_screen(vertices, camera: WeakPerspective,
                               image_height) -> Array:
  """Projects model-frame vertices to screen space (image frame + depth).

  Follows the release: `p = s R v + t` (y up, 1-based MATLAB pixel units),
  `y_file = H + 1 - p_y`, then shifts to our pixel-centre frame
  (`matlab_to_image_xy`). depth = -p_z so that nearer is smaller.

  Args:
    vertices: [..., V, 3] model frame.
    camera: batch dims [...] broadcastable against vertices' leading dims.
    image_height: H of the image the parameters refer to (pixels).

  Returns:
    [..., V, 3] (x, y, depth): x, y image-frame pixels, depth in scaled model
    units.
  """
  p = (camera.scale[..., None, None] * jnp.einsum(
      '...ij,...vj->...vi', camera.rotation, vertices) +
       camera.translation[..., None, :])
  x_file = p[..., 0]
  y_file = image_height + 1.0 - p[..., 1]
  return jnp.stack(
      [matlab_to_image_xy(x_file), matlab_to_image_xy(y_file), -p[..., 2]],
      axis=-1)


# ----------------------------------------------------------------------------
# 3DDFA's 62 parameters: 12 pose (3x4 matrix [sR | t], row-major) + 40 shape
# + 10 expression, whitened by `param_whitening.pkl` (mean, std).


class Params3DDFA(NamedTuple):
  """3DDFA's 62 parameters, un-whitened.

  camera: [..., 3, 4] = [s R | t]; shape: [..., 40]; expression: [..., 10].
  """
  camera: Array
  shape: Array
  expression: Array


def split_3ddfa_params(params62, mean=None, std=None) -> Params3DDFA:
  """[..., 62] -> `Params3DDFA`; un-whitens with (mean, std) when given."""
  p = jnp.asarray(params62, jnp.float32)
  if p.shape[-1] != 62:
    raise ValueError(f'3DDFA parameters must have 62 entries, got {p.shape}')
  if std is not None:
    p = p * std
  if mean is not None:
    p = p + mean
  camera = p[..., :12].reshape(p.shape[:-1] + (3, 4))
  return Params3DDFA(camera, p[..., 12:52], p[..., 52:62])


def camera_3x4_to_screen(vertices, camera, image_height) -> Array:
  """3DDFA projection `P @ [v; 1]` with the y flip of `weak_perspective_to_screen`.

  Args:
    vertices: [..., V, 3]; camera: [..., 3, 4]; image_height: pixels.
  """
  p = (jnp.einsum('...ij,...vj->...vi', camera[..., :3], vertices) +
       camera[..., None, :, 3])
  y_file = image_height + 1.0 - p[..., 1]
  return jnp.stack(
      [matlab_to_image_xy(p[..., 0]), matlab_to_image_xy(y_file), -p[..., 2]],
      axis=-1)


def weak_perspective_to_3x4(camera: WeakPerspective) -> Array:
  """`WeakPerspective` -> [..., 3, 4] = [s R | t]."""
  s_r = camera.scale[..., None, None] * camera.rotation
  return jnp.concatenate([s_r, camera.translation[..., :, None]], axis=-1)


# ----------------------------------------------------------------------------
# Perspective camera (MoFa's decoder).


@dataclasses.dataclass(frozen=True)
class PerspectiveCamera:
  """Pinhole camera at the origin looking along -z (camera frame above).

  focal: focal length in pixels; the principal point is the image centre.
  """
  focal: float
  height: int
  width: int

  @classmethod
  def from_field_of_view(cls, fov_degrees: float, height: int, width: int):
    """Vertical field of view in degrees."""
    focal = 0.5 * height / np.tan(np.radians(fov_degrees) / 2)
    return cls(float(focal), height, width)

  def to_screen(self, points_camera) -> Array:
    """[..., V, 3] camera frame -> [..., V, 3] (x, y, depth), depth = -z > 0."""
    depth = -points_camera[..., 2]
    inv = 1.0 / jnp.maximum(depth, 1e-6)
    x = 0.5 * self.width + self.focal * points_camera[..., 0] * inv
    y = 0.5 * self.height - self.focal * points_camera[..., 1] * inv
    return jnp.stack([x, y, depth], axis=-1)


def rigid_transform(vertices, rotation, translation) -> Array:
  """`R @ v + t`: [..., V, 3], [..., 3, 3], [..., 3] -> [..., V, 3]."""
  return (jnp.einsum('...ij,...vj->...vi', rotation, vertices) +
          translation[..., None, :])
