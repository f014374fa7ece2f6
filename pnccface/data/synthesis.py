"""Synthetic faces: random 3DMM parameters, poses, lights and backgrounds, rendered.

The camera is the weak perspective of 300W-LP / AFLW2000-3D, stored as a
`Pose_Para`-style vector [pitch, yaw, roll (rad), tx, ty, tz, scale] so that
synthetic and real samples go through the same code (`pnccface.geometry`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pnccface import geometry
from pnccface import render
from pnccface.facemodel import MorphableModel

Array = jnp.ndarray


class RandomFaceParams(NamedTuple):
  """Parameters of a batch of synthetic faces (numpy, leading dim B).

  shape: [B, Ks], expression: [B, Ke], albedo: [B, Ka] raw 3DMM coefficients.
  sh: [B, 27] SH lighting, 9 per RGB channel (`pnccface.render.shading`).
  pose_para: [B, 7] [pitch, yaw, roll (rad), tx, ty, tz, scale] as in
    300W-LP; `geometry.pose_para_to_weak_perspective` reads it.
  """
  shape: np.ndarray
  expression: np.ndarray
  albedo: np.ndarray
  sh: np.ndarray
  pose_para: np.ndarray


class SamplingRanges(NamedTuple):
  """Distribution of the random faces.

  yaw_degrees, pitch_degrees, roll_degrees: uniform in [-x, x].
  face_fraction: (lo, hi) of the landmark box height over the image height.
  shift_fraction: uniform jitter of the face centre, fraction of the image.
  coefficient_sigma: identity/expression/albedo drawn from N(0, (sigma*std)^2).
  """
  yaw_degrees: float = 90.0
  pitch_degrees: float = 30.0
  roll_degrees: float = 30.0
  face_fraction: tuple[float, float] = (0.45, 0.6)
  shift_fraction: float = 0.05
  coefficient_sigma: float = 1.0


def _face_height(model: MorphableModel) -> float:
  """Height (model units) of the 68 landmarks of the mean face."""
  y = np.asarray(model.mean_shape)[np.asarray(model.landmark_indices), 1]
  return float(y.max() - y.min())


def random_sh(rng: np.random.Generator, batch: int) -> np.ndarray:
  """Random plausible SH light: [B, 27], 9 per RGB channel.

  Irradiance = ambient (0.7..1.1, slightly tinted) + a directional part
  (0.1..0.5 along a random direction, mostly from the front) + small band-2
  terms (`render.directional_sh_coefficients`).
  """
  ambient = rng.uniform(0.7, 1.1, (batch, 1)) * rng.uniform(0.9, 1.1, (batch, 3))
  direction = rng.normal(size=(batch, 3))
  direction[:, 2] = np.abs(direction[:, 2]) + 0.5  # mostly from the front
  direction /= np.linalg.norm(direction, axis=1, keepdims=True)
  strength = rng.uniform(0.1, 0.5, (batch, 1))
  sh = render.directional_sh_coefficients(ambient, direction, strength)
  sh[:, :, 4:] = rng.normal(0, 0.05, (batch, 1, 5))
  return sh.reshape(batch, 27)


def sample_face_params(rng: np.random.Generator, model: MorphableModel,
                       batch: int, image_size: int,
                       ranges: SamplingRanges = SamplingRanges()) -> RandomFaceParams:
  """Draws `batch` random faces that fit in an `image_size` square image."""
  sigma = ranges.coefficient_sigma

  def coeffs(std):
    std = np.asarray(std)
    return (rng.normal(size=(batch, std.shape[0])) * sigma * std).astype(
        np.float32)

  angles = np.radians(rng.uniform(-1, 1, (batch, 3)) * np.asarray(
      [ranges.pitch_degrees, ranges.yaw_degrees, ranges.roll_degrees]))
  scale = (rng.uniform(*ranges.face_fraction, batch) * image_size /
           _face_height(model))
  centre_image = image_size / 2 + rng.uniform(
      -1, 1, (batch, 2)) * ranges.shift_fraction * image_size
  rotation = np.asarray(geometry.euler_to_rotation(*angles.T))
  landmark_centre = np.asarray(model.mean_shape)[np.asarray(
      model.landmark_indices)].mean(axis=0)
  rotated_centre = np.einsum('bij,j->bi', rotation, landmark_centre)
  # Invert the release's projection for the wanted image-frame centre:
  # x_image = p_x - 0.5, y_image = H + 1 - p_y - 0.5 (see geometry).
  target = np.stack([
      geometry.image_to_matlab_xy(centre_image[:, 0]),
      image_size + 1.0 - geometry.image_to_matlab_xy(centre_image[:, 1]),
      np.zeros(batch)
  ], axis=1)
  translation = target - scale[:, None] * rotated_centre
  pose_para = np.concatenate([angles, translation, scale[:, None]], axis=1)
  expression = coeffs(model.expression_std)
  for k in model.nonnegative_expressions:
    expression[:, k] = np.abs(expression[:, k])
  return RandomFaceParams(
      shape=coeffs(model.shape_std),
      expression=expression,
      albedo=coeffs(model.albedo_std),
      sh=random_sh(rng, batch),
      pose_para=pose_para.astype(np.float32))


def random_backgrounds(rng: np.random.Generator, batch: int, height: int,
                       width: int) -> np.ndarray:
  """Textured random backgrounds: [B, H, W, 3] float32 in [0, 1].

  A random colour gradient plus a few oriented sinusoids and blobs, so a
  network cannot find the face by colour or flatness alone.
  """
  y, x = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width),
                     indexing='ij')
  out = np.empty((batch, height, width, 3), np.float32)
  for b in range(batch):
    c0, c1 = rng.uniform(0, 1, (2, 3))
    angle = rng.uniform(0, np.pi)
    ramp = np.cos(angle) * x + np.sin(angle) * y
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    img = c0 + (c1 - c0) * ramp[..., None]
    for _ in range(3):
      freq = rng.uniform(2, 12)
      theta = rng.uniform(0, np.pi)
      phase = rng.uniform(0, 2 * np.pi)
      wave = np.sin(2 * np.pi * freq *
                    (np.cos(theta) * x + np.sin(theta) * y) + phase)
      img = img + rng.uniform(0.02, 0.12) * wave[..., None] * rng.uniform(
          -1, 1, 3)
    for _ in range(4):
      cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
      blob = np.exp(-((x - cx)**2 + (y - cy)**2) / (2 * r * r))
      img = img + blob[..., None] * rng.uniform(-0.3, 0.3, 3)
    img = img + rng.normal(0, 0.01, img.shape)
    out[b] = np.clip(img, 0, 1)
  return out


class RenderedFaces(NamedTuple):
  """Rendered faces and their ground truth (jnp arrays, leading dim B).

  image: [B, H, W, 3] float32 in [0, 1] (face over background).
  pncc: [B, H, W, 3] float32 in [0, 1], 0 on background.
  mask: [B, H, W, 1] float32, 1 on visible face pixels.
  vertices_screen: [B, V, 3] (x, y image pixels, depth).
  landmarks_2d: [B, 68, 2] image pixels; landmarks_3d: [B, 68, 3] screen.
  """
  image: Array
  pncc: Array
  mask: Array
  vertices_screen: Array
  landmarks_2d: Array
  landmarks_3d: Array


def face_vertices_screen(model: MorphableModel, shape, expression, pose_para,
                         image_size: int) -> Array:
  """Screen-space vertices [B, V, 3] of faces under `pose_para` [B, 7]."""
  vertices = model.vertices(shape, expression)
  camera = geometry.pose_para_to_weak_perspective(pose_para)
  return geometry.weak_perspective_to_screen(vertices, camera, image_size)


@functools.partial(jax.jit, static_argnames=('image_size',))
def render_faces(model: MorphableModel, params: RandomFaceParams, background,
                 image_size: int) -> RenderedFaces:
  """Renders a batch of faces (jitted; `model` is a traced pytree)."""
  screen = face_vertices_screen(model, params.shape, params.expression,
                                params.pose_para, image_size)
  pncc, mask = render.render_pncc(screen, model.triangles, model.ncc,
                                  image_size, image_size)
  image, _ = render.render_shaded(screen, model.triangles,
                                  model.albedo(params.albedo), params.sh,
                                  image_size, image_size,
                                  background=background)
  landmarks_3d = model.landmarks(screen)
  return RenderedFaces(
      image=jnp.clip(image, 0.0, 1.0), pncc=pncc, mask=mask,
      vertices_screen=screen, landmarks_2d=landmarks_3d[..., :2],
      landmarks_3d=landmarks_3d)
