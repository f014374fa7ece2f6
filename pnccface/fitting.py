"""Fitting a morphable model to 2D 68-point landmarks (as 300W-LP was made).

The camera is 300W-LP's weak perspective (`pnccface.geometry`): image points
`flip_y(s R v + t)`, with the pose returned in `Pose_Para` form [pitch, yaw,
roll (rad), tx, ty, tz, s], so a fitted record reads like a 300W-LP one.

The fit minimises, per face, the MAP energy

  sum_k w_k ||proj_k - y_k||^2 / (d sigma)^2 + ||alpha / std_s||^2
      + ||beta / std_e||^2

over pose, identity `alpha` and expression `beta`, with `y` the target
landmarks, `d` = sqrt(w * h) of their box and `sigma` (`landmark_sigma`) the
landmark error expected as a fraction of `d`. Expressions that the model lists
as `nonnegative_expressions` stay >= 0 (projected steps).

1. Closed-form initialisation: the affine camera that best maps the mean
   face's 68 landmarks to the targets (linear least squares), projected to
   the nearest scaled rotation (SVD). No angle is assumed, so it holds from
   frontal to +-90 deg yaw.
2. Levenberg-Marquardt over all parameters: the rotation is updated as
   `exp([omega]_x) R` (no Euler angles inside, so no gimbal lock at 90 deg
   yaw), the scale as `s exp(log_s)`; steps that do not lower the energy are
   rejected and the damping raised.

Everything is batched, vmapped over faces and jitted.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pnccface import geometry
from pnccface.facemodel import MorphableModel

Array = jnp.ndarray


class LandmarkFit(NamedTuple):
  """Result of `fit_landmarks` for a batch of B faces.

  pose_para: [B, 7] [pitch, yaw, roll (rad), tx, ty, tz, s] in 300W-LP's
    convention (`geometry.pose_para_to_weak_perspective`); tz puts the
    landmarks' centroid at depth 0.
  shape: [B, Ks] raw identity coefficients.
  expression: [B, Ke] raw expression coefficients.
  landmarks_2d: [B, 68, 2] the fitted face's landmarks, image-frame pixels.
  residual: [B] weighted mean distance between fitted and target landmarks
    over sqrt(w * h) of the targets' box (the 68-point NME of AFLW2000-3D's
    protocol when all weights are equal), a fraction: 0.02 is 2%.
  """
  pose_para: Array
  shape: Array
  expression: Array
  landmarks_2d: Array
  residual: Array


def fit_landmarks(model: MorphableModel, landmarks_2d, image_size,
                  weights=None, *, fit_shape: bool = True,
                  fit_expression: bool = True, landmark_sigma: float = 0.01,
                  num_iterations: int = 30) -> LandmarkFit:
  """Fits `model` to 68 2D landmarks per face.

  Args:
    model: a `MorphableModel` (its `landmark_indices` are the fitted points).
    landmarks_2d: [B, 68, 2] targets, image-frame pixels (x right, y down;
      `pnccface.geometry`).
    image_size: the image height H (int) or (H, W): the weak perspective
      flips y about H.
    weights: [B, 68] or [68] non-negative per-landmark weights (e.g. 0 for
      invisible contour points); default all ones.
    fit_shape, fit_expression: whether identity / expression coefficients
      are estimated (else kept at 0).
    landmark_sigma: the expected landmark error as a fraction of the
      targets' box size sqrt(w * h): the balance between the landmarks and
      the coefficient priors (smaller trusts the landmarks more).
    num_iterations: Levenberg-Marquardt iterations.

  Returns:
    `LandmarkFit`.

  Raises:
    ValueError: landmarks or weights of the wrong shape.
  """
  landmarks_2d = jnp.asarray(landmarks_2d, jnp.float32)
  if landmarks_2d.ndim != 3 or landmarks_2d.shape[1:] != (68, 2):
    raise ValueError('fit_landmarks: landmarks_2d must have shape [B, 68, 2],'
                     f' got {landmarks_2d.shape}')
  batch = landmarks_2d.shape[0]
  if weights is None:
    weights = jnp.ones((batch, 68), jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  if weights.shape == (68,):
    weights = jnp.broadcast_to(weights, (batch, 68))
  if weights.shape != (batch, 68):
    raise ValueError(f'fit_landmarks: weights must have shape [{batch}, 68] '
                     f'or [68], got {weights.shape}')
  height = image_size[0] if isinstance(image_size, (tuple, list)) else (
      image_size)
  # Sigma and height are traced: one compilation per batch shape.
  return _fit(model, landmarks_2d, weights, jnp.float32(landmark_sigma),
              jnp.float32(height), fit_shape, fit_expression,
              int(num_iterations))


class _Bases(NamedTuple):
  """The model restricted to its 68 landmarks: [68, 3], [68, 3, K], [K]."""
  mean: Array
  shape: Array
  shape_std: Array
  expression: Array
  expression_std: Array
  nonnegative: Array  # [Ke] bool


def _landmark_bases(model: MorphableModel, fit_shape, fit_expression):
  idx = model.landmark_indices
  shape = model.shape_basis[idx] if fit_shape else jnp.zeros((68, 3, 0))
  expression = (model.expression_basis[idx] if fit_expression else
                jnp.zeros((68, 3, 0)))
  nonnegative = jnp.zeros(model.num_expression, bool).at[
      jnp.asarray(model.nonnegative_expressions, jnp.int32)].set(True)
  return _Bases(
      mean=model.mean_shape[idx], shape=shape,
      shape_std=model.shape_std if fit_shape else jnp.ones((0,)),
      expression=expression,
      expression_std=(model.expression_std if fit_expression else
                      jnp.ones((0,))),
      nonnegative=nonnegative if fit_expression else jnp.zeros((0,), bool))


def _to_upward(xy_image, height):
  """Image frame -> the release's pre-flip frame (1-based, y up)."""
  p = geometry.image_to_matlab_xy(xy_image)
  return jnp.stack([p[..., 0], height + 1.0 - p[..., 1]], axis=-1)


def _skew(w):
  zero = jnp.zeros_like(w[0])
  return jnp.array([[zero, -w[2], w[1]], [w[2], zero, -w[0]],
                    [-w[1], w[0], zero]])


def _rodrigues(w):
  """exp([w]_x): [3] -> [3, 3], smooth at w = 0."""
  theta2 = jnp.sum(w * w)
  theta = jnp.sqrt(theta2 + 1e-30)
  small = theta2 < 1e-8
  a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
  b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(theta)) / theta2)
  k = _skew(w)
  return jnp.eye(3) + a * k + b * (k @ k)


def _affine_init(mean, target, weights):
  """Closed-form scaled rotation from points [N, 3] to [N, 2] (y up).

  Weighted least squares for the affine camera [2, 4], then the nearest
  scaled rotation (SVD of its 2 x 3 part); the third row completes a
  right-handed rotation.
  """
  x = jnp.concatenate([mean, jnp.ones(mean.shape[:1] + (1,))], axis=-1)
  sw = jnp.sqrt(weights)[:, None]
  affine, *_ = jnp.linalg.lstsq(x * sw, target * sw)  # [4, 2]
  m = affine[:3].T  # [2, 3]
  u, sv, vt = jnp.linalg.svd(m, full_matrices=False)
  rows = u @ vt
  rotation = jnp.concatenate([rows, jnp.cross(rows[0], rows[1])[None]], 0)
  return rotation, jnp.mean(sv), affine[3]


def camera_from_correspondences(points_model, points_image, image_height,
                                weights=None) -> geometry.WeakPerspective:
  """The weak-perspective camera that best maps 3D points to 2D points.

  Closed form (step 1 of `fit_landmarks`, for any number of points): the
  weighted least-squares affine camera, then its nearest scaled rotation.
  No angle is assumed, so it holds from frontal to +-90 deg yaw.

  Args:
    points_model: [..., N, 3] model-frame points (`pnccface.geometry`).
    points_image: [..., N, 2] their image-frame pixels (x right, y down).
    image_height: H of the image (the weak perspective flips y about it).
    weights: [..., N] non-negative (0 drops a point); default all ones.

  Returns:
    `geometry.WeakPerspective` with batch dims [...]: rotation [..., 3, 3],
    scale [...], translation [..., 3] (tz = 0), such that
    `geometry.weak_perspective_to_screen(points_model, camera, H)[..., :2]`
    approximates `points_image`.
  """
  points_model = jnp.asarray(points_model, jnp.float32)
  points_image = jnp.asarray(points_image, jnp.float32)
  if (points_model.shape[-1] != 3 or points_image.shape[-1] != 2 or
      points_model.shape[:-1] != points_image.shape[:-1]):
    raise ValueError('camera_from_correspondences: need points_model '
                     '[..., N, 3] and points_image [..., N, 2], got '
                     f'{points_model.shape} and {points_image.shape}')
  if weights is None:
    weights = jnp.ones(points_model.shape[:-1], jnp.float32)
  weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32),
                             points_model.shape[:-1])
  batch = points_model.shape[:-2]
  rotation, scale, translation = _camera_from_correspondences(
      points_model.reshape((-1,) + points_model.shape[-2:]),
      points_image.reshape((-1,) + points_image.shape[-2:]),
      weights.reshape((-1, weights.shape[-1])), jnp.float32(image_height))
  return geometry.WeakPerspective(
      rotation.reshape(batch + (3, 3)), scale.reshape(batch),
      translation.reshape(batch + (3,)))


@jax.jit
def _camera_from_correspondences(points, pixels, weights, height):
  def one(points, pixels, weights):
    target = _to_upward(pixels, height)
    total = jnp.maximum(jnp.sum(weights), 1e-12)
    # Centred, for the conditioning of the least squares (pixels vs model
    # units); the rotation does not depend on it.
    centre_3d = jnp.sum(weights[:, None] * points, 0) / total
    centre_2d = jnp.sum(weights[:, None] * target, 0) / total
    rotation, scale, _ = _affine_init(points - centre_3d,
                                      target - centre_2d, weights)
    translation = centre_2d - scale * rotation[:2] @ centre_3d
    return rotation, scale, jnp.concatenate([translation, jnp.zeros(1)])
  return jax.vmap(one)(points, pixels, weights)


@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _fit(model, landmarks_2d, weights, landmark_sigma, height, fit_shape,
         fit_expression, num_iterations):
  bases = _landmark_bases(model, fit_shape, fit_expression)
  fit_one = functools.partial(_fit_one, bases=bases, height=height,
                              landmark_sigma=landmark_sigma,
                              num_iterations=num_iterations)
  rotation, scale, translation, shape, expression = jax.vmap(fit_one)(
      landmarks_2d, weights)
  pitch, yaw, roll = geometry.rotation_to_euler(rotation)
  vertices = jnp.broadcast_to(model.landmarks(model.vertices(
      shape if fit_shape else None, expression if fit_expression else None)),
                              landmarks_2d.shape[:1] + (68, 3))
  # tz: the landmarks' centroid at depth 0, as the synthetic sampler does.
  tz = -scale * jnp.einsum('bj,bj->b', rotation[:, 2],
                           vertices.mean(axis=1))
  pose_para = jnp.concatenate([
      jnp.stack([pitch, yaw, roll], -1), translation,
      tz[:, None], scale[:, None]], axis=-1)
  # Through the package's projection, not the fit's own algebra.
  screen = geometry.weak_perspective_to_screen(
      vertices, geometry.pose_para_to_weak_perspective(pose_para), height)
  fitted = screen[..., :2]
  distance = jnp.linalg.norm(fitted - landmarks_2d, axis=-1)
  residual = jnp.sum(weights * distance, -1) / jnp.maximum(
      jnp.sum(weights, -1), 1e-12) / _box_size(landmarks_2d, weights)
  if not fit_shape:
    shape = jnp.zeros((landmarks_2d.shape[0], model.num_shape))
  if not fit_expression:
    expression = jnp.zeros((landmarks_2d.shape[0], model.num_expression))
  return LandmarkFit(pose_para=pose_para, shape=shape, expression=expression,
                     landmarks_2d=fitted, residual=residual)


def _box_size(points, weights):
  """sqrt(w * h) of the box of the points with positive weight: [..., 68, 2]."""
  valid = (weights > 0)[..., None]
  big = jnp.finfo(points.dtype).max
  lo = jnp.min(jnp.where(valid, points, big), axis=-2)
  hi = jnp.max(jnp.where(valid, points, -big), axis=-2)
  extent = jnp.maximum(hi - lo, 1e-6)
  return jnp.sqrt(extent[..., 0] * extent[..., 1])


def _fit_one(target_image, weights, *, bases: _Bases, height, landmark_sigma,
             num_iterations):
  """One face: returns rotation [3, 3], scale, translation [2], coeffs."""
  target = _to_upward(target_image, height)
  # Normalise so that the energy is in units of the box size: conditioning
  # of the LM system does not depend on the image resolution.
  centre = jnp.sum(weights[:, None] * target, 0) / jnp.maximum(
      jnp.sum(weights), 1e-12)
  size = _box_size(target, weights)
  target = (target - centre) / size
  sqrt_w = jnp.sqrt(weights) / landmark_sigma
  num_s, num_e = bases.shape.shape[-1], bases.expression.shape[-1]

  def landmarks3d(coeffs):
    alpha, beta = coeffs[:num_s], coeffs[num_s:]
    return (bases.mean + jnp.einsum('vck,k->vc', bases.shape, alpha) +
            jnp.einsum('vck,k->vc', bases.expression, beta))

  prior_std = jnp.concatenate([bases.shape_std, bases.expression_std])

  def residuals(delta, rotation, log_scale, translation, coeffs):
    """delta = [omega (3), d log s, d t (2), d coeffs]."""
    rot = _rodrigues(delta[:3]) @ rotation
    s = jnp.exp(log_scale + delta[3])
    t = translation + delta[4:6]
    c = coeffs + delta[6:]
    proj = s * landmarks3d(c) @ rot[:2].T + t
    data = ((proj - target) * sqrt_w[:, None]).reshape(-1)
    return jnp.concatenate([data, c / prior_std])

  rotation, scale, translation = _affine_init(bases.mean, target, weights)
  coeffs = jnp.zeros(num_s + num_e)
  num_params = 6 + num_s + num_e
  nonneg = jnp.concatenate([jnp.zeros(6 + num_s, bool), bases.nonnegative])

  def energy(state):
    rot, log_s, t, c = state
    r = residuals(jnp.zeros(num_params), rot, log_s, t, c)
    return jnp.sum(r * r)

  def step(carry, _):
    state, damping = carry
    rot, log_s, t, c = state
    zero = jnp.zeros(num_params)
    r = residuals(zero, *state)
    jac = jax.jacfwd(residuals)(zero, *state)
    jtj = jac.T @ jac
    grad = jac.T @ r
    system = jtj + damping * (jnp.diag(jnp.diag(jtj)) + 1e-6 * jnp.eye(
        num_params))
    delta = -jnp.linalg.solve(system, grad)
    # Projected step: nonnegative expressions stay >= 0.
    full = jnp.concatenate([jnp.zeros(6), c]) + delta
    delta = jnp.where(nonneg & (full < 0), -jnp.concatenate(
        [jnp.zeros(6), c]), delta)
    new = (_rodrigues(delta[:3]) @ rot, log_s + delta[3], t + delta[4:6],
           c + delta[6:])
    better = energy(new) < jnp.sum(r * r)
    state = jax.tree_util.tree_map(
        lambda a, b: jnp.where(better, a, b), new, state)
    damping = jnp.where(better, damping * 0.3, damping * 10.0)
    return (state, jnp.clip(damping, 1e-7, 1e7)), None

  state = (rotation, jnp.log(scale), translation, coeffs)
  (state, _), _ = jax.lax.scan(step, (state, jnp.asarray(1e-3)), None,
                               length=num_iterations)
  rot, log_s, t, c = state
  # Back from the normalised frame: proj = s R v + t in units of `size`
  # around `centre`.
  return (rot, jnp.exp(log_s) * size, t * size + centre, c[:num_s],
          c[num_s:])
