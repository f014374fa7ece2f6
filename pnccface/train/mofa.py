"""Stage 2: train MoFa / MoFaPNCC (self-supervised model-based autoencoder).

Loss (`mofa_loss`, after MoFa's, Tewari et al. 2017, Sec. 4; weights in
`config.loss`):

  loss = w_photo * E_photo + w_landmark * E_land
         + w_shape * E_shape + w_expression * E_exp + w_albedo * E_albedo

  E_photo: the RGB distance (`photo_norm` 'l21': ||r||_2, 'l2': its square;
    images in [0, 1]) averaged over the global batch's visible face pixels
    (`photo_domain='pixel'`) or visible vertices ('vertex').
  E_land: sum w ||p - g||^2 / S^2 / sum w over the landmarks (p projected,
    g `landmarks_2d`, w `landmark_weights`, S the image size).
  E_shape, E_exp, E_albedo: batch means of the summed squared standardised
    coefficients.

MoFa decodes with the face model truncated to `config.face_model_components`
(`face_model_for`).

Batches: {'image': [D, B, S, S, 3] float32 in [0, 1], 'landmarks_2d':
[D, B, 68, 2] image pixels, 'landmark_weights': [D, B, 68] float32, and
with `config.use_pncc` 'pncc': [D, B, S, S, 3] float32 in [0, 1]}. The
encoder input is the image, or concat(image, pncc) (6 channels).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from pnccface import distributed
from pnccface import render
from pnccface.data import real_faces
from pnccface.evaluation import report
from pnccface.facemodel import MorphableModel
from pnccface.models import mofa as mofa_model
from pnccface.train import common

Array = jnp.ndarray
REQUIRED = {'image': 5, 'landmarks_2d': 4, 'landmark_weights': 3}
REQUIRED_PNCC = {**REQUIRED, 'pncc': 5}


def required_keys(config) -> dict[str, int]:
  """Batch keys (and their dims) the config's train step reads."""
  return REQUIRED_PNCC if config.use_pncc else REQUIRED


# ----------------------------------------------------------------------------
# Losses (sums and counts, so the global-batch normalisation is explicit).


def photometric_distance(residual, norm: str = 'l2') -> Array:
  """Per-sample distance of RGB residuals [..., 3] -> [...].

  'l21': ||r||_2 (MoFa's l2,1 norm); 'l2': ||r||_2^2.
  """
  sq = jnp.sum(residual**2, axis=-1)
  if norm == 'l2':
    return sq
  if norm == 'l21':
    # MoFa's E_photo (Sec. 4, "Loss layer") is an l2,1 norm: each residual's
    # Euclidean norm, not squared. The tiny offset keeps the gradient
    # finite where the residual is 0.
    return jnp.sqrt(sq + 1e-8)
  raise ValueError(f'unknown photo_norm {norm!r} (l2, l21)')


def photometric_terms(rendered, image, mask, norm: str = 'l2'
                      ) -> tuple[Array, Array]:
  """(sum over face pixels of the per-pixel distance, number of face pixels).

  Args:
    rendered, image: [B, H, W, 3]; mask: [B, H, W, 1].
    norm: see `photometric_distance`.
  """
  m = mask[..., 0]
  return jnp.sum(m * photometric_distance(rendered - image, norm)), jnp.sum(m)


def visible_vertices(triangle_id, triangles, num_vertices: int) -> Array:
  """[B, V] float 0/1: corners of the triangles visible at some pixel.

  Args:
    triangle_id: [B, H, W] int, -1 on background (`render.Raster`).
    triangles: [T, 3] int.
  """
  batch = triangle_id.shape[0]
  ids = triangle_id.reshape(batch, -1)
  covered = (ids >= 0).astype(jnp.float32)
  corners = jnp.asarray(triangles)[jnp.maximum(ids, 0)]  # [B, P, 3]
  rows = jnp.arange(batch)[:, None, None]
  return jnp.zeros((batch, num_vertices), jnp.float32).at[rows, corners].max(
      jnp.broadcast_to(covered[..., None], corners.shape))


def sample_image(image, points_xy) -> Array:
  """Bilinear samples [B, P, C] of images [B, H, W, C] at image-frame points
  [B, P, 2] (pixel (i, j) centred at (j + 0.5, i + 0.5), `geometry`);
  outside the image the nearest edge pixel. Differentiable in the points."""
  def one(img, xy):
    coords = [xy[:, 1] - 0.5, xy[:, 0] - 0.5]  # rows, cols
    return jnp.stack([jax.scipy.ndimage.map_coordinates(
        img[..., c], coords, order=1, mode='nearest')
                      for c in range(img.shape[-1])], axis=-1)
  return jax.vmap(one)(image, points_xy)


def vertex_photometric_terms(vertices_screen, triangles, colours, image,
                             norm: str = 'l2') -> tuple[Array, Array]:
  """MoFa's E_photo as written: (sum over visible vertices of
  d(I(u_i), c_i), number of visible vertices).

  Args:
    vertices_screen: [B, V, 3] screen vertices (u_i = their x, y).
    triangles: [T, 3]; visibility is that of the z-buffer (a vertex counts
      when one of its triangles is visible at a pixel, `visible_vertices`).
    colours: [B, V, 3] shaded vertex colours c_i (`mofa_model.vertex_colours`).
    image: [B, S, S, 3] the input image I.
    norm: see `photometric_distance`.
  """
  size = image.shape[1]
  raster = render.rasterize(vertices_screen, triangles, size, image.shape[2])
  visible = jax.lax.stop_gradient(visible_vertices(
      raster.triangle_id, triangles, vertices_screen.shape[1]))
  sampled = sample_image(image, vertices_screen[..., :2])
  dist = photometric_distance(sampled - colours, norm)
  return jnp.sum(visible * dist), jnp.sum(visible)


def landmark_terms(pred, target, weights, image_size: int
                   ) -> tuple[Array, Array, Array]:
  """Weighted landmark sums.

  Args:
    pred, target: [B, L, 2] image pixels; weights: [B, L].

  Returns:
    (sum w * ||p - g||^2 / S^2, sum w * ||p - g|| / S, sum w).
  """
  # MoFa's E_land = sum_j w_j ||s_j - u_{k_j}||^2 (Sec. 4), here in units
  # of the image size so that its weight does not depend on the resolution.
  d2 = jnp.sum((pred - target)**2, axis=-1)
  dist = jnp.sqrt(d2 + 1e-12)
  return (jnp.sum(weights * d2) / image_size**2,
          jnp.sum(weights * dist) / image_size, jnp.sum(weights))


def landmark_targets(pred, batch) -> tuple[Array, Array, Array]:
  """(predicted, target, weights) of E_land for one batch.

  The 68 iBUG landmarks, plus CelebA's two eye centres where the batch has
  `eye_centres` [B, 2, 2]: no iBUG point sits at an eye centre, so each is
  matched by the mean of the model's six landmarks of that eye
  (`real_faces.EYE_LANDMARKS`, viewer's left eye first, as the data stores
  them), with weight 1.

  Args:
    pred: [B, 68, 2] projected model landmarks, image pixels.
    batch: with 'landmarks_2d' [B, 68, 2], 'landmark_weights' [B, 68] and
      optionally 'eye_centres' [B, 2, 2] (image pixels).

  Returns:
    pred, target [B, L, 2] and weights [B, L], L = 68 or 70.
  """
  target, weights = batch['landmarks_2d'], batch['landmark_weights']
  if 'eye_centres' not in batch:
    return pred, target, weights
  eyes = jnp.stack([jnp.mean(pred[..., list(eye), :], axis=-2)
                    for eye in real_faces.EYE_LANDMARKS], axis=-2)
  centres = batch['eye_centres']
  return (jnp.concatenate([pred, eyes], axis=-2),
          jnp.concatenate([target, centres], axis=-2),
          jnp.concatenate([weights, jnp.ones(centres.shape[:-1],
                                             weights.dtype)], axis=-1))


def prior_terms(code: mofa_model.FaceCode) -> dict[str, Array]:
  """Batch means of the summed squared standardised coefficients."""
  # MoFa's E_reg = sum_k (alpha_k / s_alpha,k)^2 + w_beta sum_k (beta_k /
  # s_beta,k)^2 + w_delta sum_k (delta_k / s_delta,k)^2 (Sec. 4): on
  # standardised coefficients the Gaussian prior is isotropic; the relative
  # weights are config.loss's w_albedo and w_expression.
  return {name: jnp.mean(jnp.sum(getattr(code, name)**2, axis=-1))
          for name in ('shape', 'expression', 'albedo')}


def mofa_loss(recon: mofa_model.Reconstruction, code: mofa_model.FaceCode,
              batch, loss_config, axis_name: Optional[str] = None,
              face_model: Optional[MorphableModel] = None
              ) -> tuple[Array, dict[str, Array]]:
  """The weighted MoFa loss (module docstring) and its terms.

  `face_model` (the one `recon` was decoded with) is needed for
  `photo_domain='vertex'`.
  """
  size = batch['image'].shape[-2]
  norm = loss_config.get('photo_norm', 'l2')
  domain = loss_config.get('photo_domain', 'pixel')
  if domain == 'pixel':
    photo_sum, n_pix = photometric_terms(recon.image, batch['image'],
                                         recon.mask, norm)
  elif domain == 'vertex':
    if face_model is None:
      raise ValueError("photo_domain='vertex' needs the face_model")
    photo_sum, n_pix = vertex_photometric_terms(
        recon.vertices_screen, face_model.triangles,
        mofa_model.vertex_colours(code, face_model, recon.vertices_screen),
        batch['image'][..., :3], norm)
  else:
    raise ValueError(f"unknown photo_domain {domain!r} ('pixel', 'vertex')")
  land_sq, land_dist, n_land = landmark_terms(
      *landmark_targets(recon.landmarks_2d, batch), size)
  # Normalised by the global batch's face pixels (or visible vertices), as
  # E_photo's 1/N: the pmean of per-device gradients is then the gradient of
  # the global-batch loss.
  photo = common.global_mean(photo_sum, n_pix, axis_name)
  landmark = common.global_mean(land_sq, n_land, axis_name)
  priors = prior_terms(code)
  # MoFa's weights (w_photo = 1.92, w_land = 2.9e-5, shape prior 5.2e-6,
  # expression / reflectance priors 0.8 / 1.7e-3 of it) are for sums over
  # pixels in 0..255 and landmarks in pixels. Our terms are normalised, so
  # the absolute numbers do not transfer: configs/mofa.py keeps MoFa's prior
  # *ratios* and chooses w_photo, w_landmark, w_shape so that the
  # photometric and landmark terms are of similar size at a few-pixel error.
  loss = (loss_config.w_photo * photo + loss_config.w_landmark * landmark +
          loss_config.w_shape * priors['shape'] +
          loss_config.w_expression * priors['expression'] +
          loss_config.w_albedo * priors['albedo'])
  metrics = {
      'photometric': photo,
      'landmark': landmark,
      'landmark_error': jax.lax.stop_gradient(
          common.global_mean(land_dist, n_land, axis_name)),
      'face_fraction': jax.lax.stop_gradient(
          common.global_mean(jnp.sum(recon.mask),
                             float(np.prod(recon.mask.shape)), axis_name)),
      **{f'prior_{k}': v for k, v in priors.items()},
  }
  return loss, metrics


# ----------------------------------------------------------------------------
# State and step.


def face_model_for(config, face_model: MorphableModel) -> MorphableModel:
  """The model MoFa decodes with: `face_model` truncated to
  `config.face_model_components` (`mofa_model.truncate_face_model`); every
  function here applies it."""
  return mofa_model.truncate_face_model(face_model,
                                        **config.face_model_components)


def make_encoder(config, face_model: MorphableModel,
                 bn_axis_name: Optional[str] = None) -> mofa_model.MoFaEncoder:
  """`config.model`'s encoder, sized for `face_model` as truncated."""
  face_model = face_model_for(config, face_model)
  return mofa_model.MoFaEncoder(
      **config.model, num_shape=face_model.num_shape,
      num_expression=face_model.num_expression,
      num_albedo=face_model.num_albedo, bn_axis_name=bn_axis_name)


def input_channels(config) -> int:
  return 6 if config.use_pncc else 3


def create_train_state(config, face_model: MorphableModel,
                       rng: jax.Array) -> common.TrainState:
  """Unreplicated TrainState of a fresh encoder (`config.init_from`, when
  set, names a MoFa workdir whose latest params initialise it)."""
  init_rng, state_rng = jax.random.split(rng)
  encoder = make_encoder(config, face_model)
  s = config.image_size
  variables = jax.jit(encoder.init, static_argnames='train')(
      init_rng, jnp.zeros((1, s, s, input_channels(config)), jnp.float32),
      train=False)
  params = variables['params']
  batch_stats = variables.get('batch_stats', {})
  init_from = config.get('init_from', '')
  if init_from:
    loaded = common.load_variables(init_from)
    params = jax.tree_util.tree_map(jnp.asarray, loaded['params'])
    batch_stats = jax.tree_util.tree_map(jnp.asarray, loaded['batch_stats'])
  return common.TrainState.create(
      apply_fn=encoder.apply, params=params, batch_stats=batch_stats,
      tx=common.make_optimizer(config.optimizer, config.num_train_steps),
      rng=state_rng)


def _encoder_input(config, batch) -> Array:
  return mofa_model.encoder_input(batch['image'],
                                batch['pncc'] if config.use_pncc else None)


def train_step(state: common.TrainState, batch, face_model: MorphableModel,
               *, config, encoder: mofa_model.MoFaEncoder
               ) -> tuple[common.TrainState, common.Metrics]:
  """Pure per-device step; pmap it with axis common.AXIS, binding `config`
  and `encoder` (built with bn_axis_name=common.AXIS). `face_model` is an
  argument, not a closed-over constant: XLA would constant-fold its bases
  at every compile (seconds, and a slow-operation alarm in the log)."""
  def loss_fn(params):
    variables = {'params': params}
    if state.batch_stats:
      variables['batch_stats'] = state.batch_stats
      code, new_vars = encoder.apply(variables, _encoder_input(config, batch),
                                     train=True, mutable=['batch_stats'])
      batch_stats = new_vars['batch_stats']
    else:
      code = encoder.apply(variables, _encoder_input(config, batch),
                           train=True)
      batch_stats = state.batch_stats
    recon = mofa_model.decode(code, face_model, batch['image'],
                            face_fraction=config.face_fraction)
    loss, metrics = mofa_loss(recon, code, batch, config.loss,
                              axis_name=common.AXIS, face_model=face_model)
    return loss, (metrics, batch_stats)

  return common.apply_loss_gradients(state, loss_fn)


def make_train_step(config, face_model: MorphableModel) -> Callable:
  """`train_step` with its static arguments bound, ready for jax.pmap
  (called as step(state, batch, face_model))."""
  return functools.partial(
      train_step, config=config,
      encoder=make_encoder(config, face_model, bn_axis_name=common.AXIS))


# ----------------------------------------------------------------------------
# Prediction and evaluation.


def make_predict_fn(config, face_model: MorphableModel) -> Callable:
  """jitted (variables, image [N, S, S, 3], pncc [N, S, S, 3] or None) ->
  (`Reconstruction`, `FaceCode`) with the encoder in inference mode."""
  face_model = face_model_for(config, face_model)
  encoder = make_encoder(config, face_model)

  @jax.jit
  def predict(variables, image, pncc=None):
    code = encoder.apply(variables, mofa_model.encoder_input(image, pncc),
                         train=False)
    recon = mofa_model.decode(code, face_model, image,
                            face_fraction=config.face_fraction)
    return recon, code

  return predict


def _draw_points(image: np.ndarray, points: np.ndarray, colour) -> None:
  """Marks pixels under `points` [L, 2] (image frame) in place."""
  h, w = image.shape[:2]
  cols = np.clip(np.floor(points[:, 0]).astype(int), 0, w - 1)
  rows = np.clip(np.floor(points[:, 1]).astype(int), 0, h - 1)
  image[rows, cols] = colour


_render_pncc = jax.jit(render.render_pncc,
                       static_argnames=('height', 'width', 'method'))


def summary_images(image, recon: mofa_model.Reconstruction,
                   face_model: MorphableModel, landmarks_2d=None
                   ) -> np.ndarray:
  """TensorBoard strip per sample: input | rendered | overlay | PNCC.

  overlay: the input with the rendered face blended at 50% and the
  predicted landmarks (red) and target landmarks (green) marked; PNCC: the
  predicted face's PNCC image.

  Returns:
    [N, S, 4 S, 3] float32 in [0, 1].
  """
  image = np.asarray(image, np.float32)
  rendered = np.clip(np.asarray(recon.image), 0, 1)
  mask = np.asarray(recon.mask)
  overlay = image * (1 - 0.5 * mask) + 0.5 * mask * rendered
  pred_lm = np.asarray(recon.landmarks_2d)
  for n in range(image.shape[0]):
    if landmarks_2d is not None:
      _draw_points(overlay[n], np.asarray(landmarks_2d)[n], (0.0, 1.0, 0.0))
    _draw_points(overlay[n], pred_lm[n], (1.0, 0.0, 0.0))
  size = image.shape[1]
  pncc, _ = _render_pncc(recon.vertices_screen, face_model.triangles,
                         face_model.ncc, size, size)
  return np.concatenate([image, rendered, overlay, np.asarray(pncc)],
                        axis=2).astype(np.float32)


def evaluate(config, face_model: MorphableModel, variables,
             batches: Iterable[Mapping[str, Any]],
             predict: Optional[Callable] = None) -> dict[str, Any]:
  """Held-out evaluation.

  Args:
    variables: {'params', ['batch_stats']} of the encoder.
    batches: flat [B, ...] (or [D, B, ...]) batches in the module's format;
      'landmarks_2d' / 'landmark_weights' optional.
    predict: a `make_predict_fn` result to reuse (compiled once).

  Returns:
    'photometric': pixel-weighted mean of the photometric term over all
      samples, over 'photometric_pixels' pixels; 'landmark_error': weighted
      mean landmark distance / image size, of 'landmark_weight' in all
      (absent without landmarks); 'vertices_screen': [N, V, 3] numpy;
      'yaw_degrees', 'pitch_degrees', 'roll_degrees': [N]; 'pose_para':
      [N, 7] -- vertices and yaw feed `evaluation.report.FaceGeometry`.
  """
  predict = predict or make_predict_fn(config, face_model)
  norm = config.loss.get('photo_norm', 'l2')
  photo = n_pix = land = n_land = 0.0
  outputs = {k: [] for k in ('vertices_screen', 'yaw_degrees', 'pitch_degrees',
                             'roll_degrees', 'pose_para')}
  for batch in batches:
    image = jnp.asarray(common.unshard(batch['image'], 4))
    pncc = (jnp.asarray(common.unshard(batch['pncc'], 4)) if config.use_pncc
            else None)
    recon, _ = predict(variables, image, pncc)
    p, n = photometric_terms(recon.image, image, recon.mask, norm)
    photo, n_pix = photo + float(p), n_pix + float(n)
    if 'landmarks_2d' in batch:
      weights = (common.unshard(batch['landmark_weights'], 2)
                 if 'landmark_weights' in batch else
                 np.ones(recon.landmarks_2d.shape[:2], np.float32))
      _, d, w = landmark_terms(recon.landmarks_2d,
                               jnp.asarray(common.unshard(batch['landmarks_2d'],
                                                          3)),
                               jnp.asarray(weights), image.shape[1])
      land, n_land = land + float(d), n_land + float(w)
    for key in outputs:
      outputs[key].append(np.asarray(getattr(recon, key)))
  if not outputs['yaw_degrees']:
    raise ValueError('evaluate: no batches')
  result = {k: np.concatenate(v) for k, v in outputs.items()}
  result['photometric'] = photo / max(n_pix, 1e-6)
  result['photometric_pixels'] = n_pix
  if n_land:
    result['landmark_error'] = land / n_land
    result['landmark_weight'] = n_land
  return result


def predicted_geometry(results: Mapping[str, Any]) -> report.FaceGeometry:
  """`evaluate`'s output as the Table-1 `FaceGeometry` of the prediction."""
  return report.FaceGeometry(vertices=np.asarray(results['vertices_screen']),
                             yaw_degrees=np.asarray(results['yaw_degrees']))


def make_eval_fn(config, face_model: MorphableModel,
                 eval_batches: Union[Iterable[Mapping[str, Any]],
                                     Callable[[], Iterable]],
                 num_images: int = 4) -> Callable:
  """state -> {'eval/photometric', 'eval/landmark_error', 'image/mofa'}.

  eval_batches: a re-iterable (e.g. list) of batches or a callable returning
  a fresh iterator. Several processes: each evaluates its share of the
  batches (`distributed.process_share`); the sums are added over processes.
  """
  predict = make_predict_fn(config, face_model)

  def eval_fn(state) -> dict:
    variables = {'params': state.params}
    if state.batch_stats:
      variables['batch_stats'] = state.batch_stats
    source = eval_batches() if callable(eval_batches) else eval_batches
    source = list(source)
    sums = [0.0] * 4  # photometric, pixels, landmark error, landmark weight
    share = list(distributed.process_share(source))
    if share:
      results = evaluate(config, face_model, variables, share, predict)
      sums = [results['photometric'] * results['photometric_pixels'],
              results['photometric_pixels'],
              results.get('landmark_error', 0.0) *
              results.get('landmark_weight', 0.0),
              results.get('landmark_weight', 0.0)]
    photo, n_pix, land, n_land = distributed.sum_across_processes(sums)
    out = {'eval/photometric': float(photo / max(n_pix, 1e-6))}
    if n_land:
      out['eval/landmark_error'] = float(land / n_land)
    if num_images:
      first = source[0]
      image = common.unshard(first['image'], 4)[:num_images]
      pncc = (common.unshard(first['pncc'], 4)[:num_images]
              if config.use_pncc else None)
      recon, _ = predict(variables, jnp.asarray(image),
                         None if pncc is None else jnp.asarray(pncc))
      lms = (common.unshard(first['landmarks_2d'], 3)[:num_images]
             if 'landmarks_2d' in first else None)
      out['image/mofa'] = summary_images(image, recon, face_model, lms)
    return out

  return eval_fn


def train(config, workdir: Union[str, os.PathLike],
          face_model: MorphableModel, batches, eval_batches=None,
          stop_at_step: Optional[int] = None) -> common.TrainState:
  """Runs/resumes stage 2 in `workdir`; returns the final state.

  batches: `start_step -> iterator` of [D, B, ...] batches in the module's
  format (or an iterator; see common.train_loop). eval_batches: see
  `make_eval_fn`.
  """
  face_model = face_model_for(config, face_model)  # MoFa's truncation
  eval_fn = (make_eval_fn(config, face_model, eval_batches)
             if eval_batches else None)
  p_train_step = jax.pmap(make_train_step(config, face_model),
                          axis_name=common.AXIS, donate_argnums=(0,))
  replicated_model = common.replicate(face_model)
  return common.train_loop(
      config, workdir,
      lambda rng: create_train_state(config, face_model, rng),
      lambda state, batch: p_train_step(state, batch, replicated_model),
      common.checked_batches(batches, required_keys(config)),
      eval_fn=eval_fn, stop_at_step=stop_at_step)
