"""Stage 1: train the PNCC predictor (frozen 3FabRec autoencoder + ITLs/SCAF).

Loss (our choice; the paper does not state it): per-pixel L1 between the
predicted and the ground-truth PNCC image, averaged over the 3 channels, then

  loss = sum(mask * l1) / sum(mask) + background_weight *
         sum((1 - mask) * l1) / sum(1 - mask)

i.e. the mean L1 over face pixels plus a small weight (default 0.1) on the
mean L1 over background pixels, so the predictor also learns to output the
PNCC background value 0 there. Sums run over the GLOBAL batch (psum over
devices), so the pmapped step equals the single-device step.

When the predictor's output is smaller than the input (3FabRec: 128 for 256),
targets and mask are area-downsampled to the output size.

Parameters: only the ITLs, SCAF skips and the output conv train by default;
encoder and decoder are frozen (zero updates, no weight decay, no optimizer
state, batch norm on running averages). `model.freeze_decoder=False` trains
the pre-trained decoder too and `model.from_scratch_decoder=True` (requires
freeze_decoder=False) starts the decoder from random weights (ablations).

Batches: {'image': [D, B, H, W, 3] float32 in [0, 1], 'pncc': [D, B, H, W, 3]
float32 in [0, 1], 'mask': [D, B, H, W, 1] float32 in {0, 1}}.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from pnccface.models import autoencoder as ae_lib
from pnccface.train import common

Array = jnp.ndarray
REQUIRED = {'image': 5, 'pncc': 5, 'mask': 5}


def resize_area(x: Array, size: int) -> Array:
  """Area-downsamples [..., H, W, C] to [..., size, size, C] (H = W = k *
  size); identity when already that size."""
  h, w = x.shape[-3], x.shape[-2]
  if h == size and w == size:
    return x
  if h % size or w % size or h != w:
    raise ValueError(f'cannot area-resize {x.shape} to {size}x{size}')
  f = h // size
  x = x.reshape(x.shape[:-3] + (size, f, size, f, x.shape[-1]))
  return x.mean(axis=(-4, -2))


def masked_l1_terms(pred: Array, target: Array, mask: Array
                    ) -> tuple[Array, Array, Array, Array]:
  """Sums of the per-pixel L1 (channel mean) over face and background.

  Args:
    pred, target: [B, H, W, 3]; mask: [B, H, W, 1] (target/mask at any
      multiple of pred's size; they are area-downsampled).

  Returns:
    (face_l1_sum, face_pixels, background_l1_sum, background_pixels).
  """
  size = pred.shape[-2]
  target = resize_area(target, size)
  mask = resize_area(mask, size)[..., 0]
  l1 = jnp.mean(jnp.abs(pred - target), axis=-1)
  return (jnp.sum(mask * l1), jnp.sum(mask), jnp.sum((1 - mask) * l1),
          jnp.sum(1 - mask))


def pncc_loss(pred: Array, target: Array, mask: Array,
              background_weight: float, axis_name: Optional[str] = None
              ) -> tuple[Array, dict[str, Array]]:
  """Masked L1 loss (module docstring); pixel counts psum'ed over
  `axis_name` (and the loss scaled) so that pmean of per-device gradients
  is the gradient of the global-batch loss."""
  face, n_face, bg, n_bg = masked_l1_terms(pred, target, mask)
  n_face, n_bg = jax.lax.stop_gradient((n_face, n_bg))
  num_devices = 1
  if axis_name is not None:
    n_face = jax.lax.psum(n_face, axis_name)
    n_bg = jax.lax.psum(n_bg, axis_name)
    num_devices = jax.lax.psum(1, axis_name)
  face_l1 = num_devices * face / jnp.maximum(n_face, 1e-6)
  bg_l1 = num_devices * bg / jnp.maximum(n_bg, 1e-6)
  loss = face_l1 + background_weight * bg_l1
  return loss, {'face_l1': face_l1, 'background_l1': bg_l1}


def _check_model_config(model_config) -> None:
  if model_config.get('from_scratch_decoder', False) and model_config.get(
      'freeze_decoder', True):
    raise ValueError('model.from_scratch_decoder=True needs '
                     'model.freeze_decoder=False (a random frozen decoder '
                     'cannot learn)')


@functools.lru_cache(maxsize=16)
def _model(model_json: str, bn_axis_name=None) -> ae_lib.PNCCPredictor:
  return ae_lib.pncc_predictor_from_config(
      ml_collections.ConfigDict(json.loads(model_json)), bn_axis_name)


@functools.lru_cache(maxsize=8)
def _jitted_init(model_json: str) -> Callable:
  # One jitted function per model config, so repeated runs in a process
  # (resumes, tests) compile once. jitted: eager init dispatches hundreds of
  # small ops (tens of seconds).
  model = _model(model_json)
  r = model.resolution
  return jax.jit(lambda k: model.init(
      common.init_key(k), jnp.zeros((1, r, r, 3), jnp.float32), train=False))


def init_variables(config, rng: jax.Array) -> dict:
  """PNCC-predictor variables: fresh ITL/skip/output params; encoder and
  decoder from the stage-0 checkpoint in `config.init_from` when set
  (decoder random when `model.from_scratch_decoder`)."""
  _check_model_config(config.model)
  variables = _jitted_init(config.model.to_json())(rng)
  variables = {'params': variables['params'],
               'batch_stats': variables.get('batch_stats', {})}
  init_from = config.get('init_from', '')
  if init_from:
    stage0 = common.load_variables(init_from)
    variables = ae_lib.pncc_variables_from_autoencoder(
        stage0, variables,
        copy_decoder=not config.model.get('from_scratch_decoder', False))
    logging.info('PNCC predictor: encoder/decoder from %s (step %d)',
                 init_from, stage0['step'])
  else:
    logging.warning('PNCC predictor: no init_from, encoder/decoder random')
  return jax.tree_util.tree_map(jnp.asarray, variables)


@functools.lru_cache(maxsize=8)
def _masked_tx(model_json: str, optimizer_json: str,
               num_train_steps: int) -> optax.GradientTransformation:
  # Cached: the optimizer is static TrainState data, and an equal object
  # lets re-created states (resumes, tests) reuse compiled steps.
  model = _model(model_json)
  r = model.resolution
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, r, r, 3)), train=False))
  mask = ae_lib.trainable_mask(shapes['params'], 'pncc',
                               freeze_encoder=model.freeze_encoder,
                               freeze_decoder=model.freeze_decoder)
  opt = ml_collections.ConfigDict(json.loads(optimizer_json))
  return ae_lib.masked_optimizer(
      common.make_optimizer(opt, num_train_steps), mask)


def create_train_state(config, rng: jax.Array) -> common.TrainState:
  """Unreplicated TrainState with the masked optimizer."""
  init_rng, state_rng = jax.random.split(rng)
  variables = init_variables(config, init_rng)
  model = _model(config.model.to_json())
  tx = _masked_tx(config.model.to_json(), config.optimizer.to_json(),
                  config.num_train_steps)
  return common.TrainState.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables['batch_stats'], tx=tx, rng=state_rng)


def make_train_step(config) -> Callable:
  """Pure per-device step (state, batch) -> (state, metrics), to be pmapped
  with axis common.AXIS. The same function object for equal model/loss
  settings, so jax's compilation cache is hit across runs in a process."""
  return _train_step(config.model.to_json(),
                     float(config.loss.background_weight))


@functools.lru_cache(maxsize=8)
def _train_step(model_json: str, background_weight: float) -> Callable:
  model = _model(model_json, bn_axis_name=common.AXIS)

  def train_step(state: common.TrainState, batch):
    def loss_fn(params):
      pred, new_vars = model.apply(
          {'params': params, 'batch_stats': state.batch_stats},
          batch['image'], train=True, mutable=['batch_stats'])
      loss, aux = pncc_loss(pred, batch['pncc'], batch['mask'],
                            background_weight, axis_name=common.AXIS)
      return loss, (aux, new_vars['batch_stats'])

    # Per-device values are scaled by D (see pncc_loss): their mean is global.
    return common.apply_loss_gradients(state, loss_fn)

  return train_step


def _flat(x: np.ndarray, ndim: int) -> np.ndarray:
  x = np.asarray(x)
  return x.reshape((-1,) + x.shape[-(ndim - 1):]) if x.ndim > ndim else x


def make_predict_fn(config) -> Callable[[Mapping[str, Any], Array], Array]:
  """jitted (variables, images [N, R, R, 3] in [0, 1]) -> PNCC [N, O, O, 3]."""
  model = ae_lib.pncc_predictor_from_config(config.model)
  return jax.jit(lambda variables, images: model.apply(
      variables, images, train=False))


def make_eval_fn(config, eval_batches: Union[Iterable[Mapping[str, Any]],
                                             Callable[[], Iterable]],
                 num_images: int = 4) -> Callable:
  """state -> {'eval/face_l1', 'eval/background_l1', 'image/...'}.

  eval_batches: a re-iterable (e.g. list) of batches or a callable returning
  a fresh iterator; arrays [B, H, W, C] or [D, B, H, W, C]. face_l1 is the
  held-out mean L1 over face pixels (pixel-weighted over all images).
  """
  predict = make_predict_fn(config)

  def eval_fn(state) -> dict:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    face = n_face = bg = n_bg = 0.0
    shown = None
    source = eval_batches() if callable(eval_batches) else eval_batches
    for batch in source:
      image = _flat(batch['image'], 4)
      pred = predict(variables, image)
      terms = masked_l1_terms(pred, jnp.asarray(_flat(batch['pncc'], 4)),
                              jnp.asarray(_flat(batch['mask'], 4)))
      f, nf, b, nb = (float(t) for t in jax.device_get(terms))
      face, n_face, bg, n_bg = face + f, n_face + nf, bg + b, n_bg + nb
      if shown is None and num_images:
        target = resize_area(jnp.asarray(_flat(batch['pncc'], 4)),
                             pred.shape[-2])
        shown = {'image/pncc_pred': np.asarray(pred[:num_images]),
                 'image/pncc_true': np.asarray(target[:num_images])}
    if n_face == 0:
      raise ValueError('eval batches contain no face pixels (mask all 0)')
    return {'eval/face_l1': face / n_face,
            'eval/background_l1': bg / max(n_bg, 1e-6), **(shown or {})}

  return eval_fn


def train(config, workdir: Union[str, os.PathLike], batches,
          eval_batches=None, stop_at_step: Optional[int] = None
          ) -> common.TrainState:
  """Runs/resumes stage 1 in `workdir`; returns the final state.

  batches: `start_step -> iterator` of batches in the module's format (or an
  iterator; see common.train_loop). eval_batches: see `make_eval_fn`.
  """
  eval_fn = make_eval_fn(config, eval_batches) if eval_batches else None
  return common.train_loop(
      config, workdir, lambda rng: create_train_state(config, rng),
      make_train_step(config), common.checked_batches(batches, REQUIRED),
      eval_fn=eval_fn, stop_at_step=stop_at_step)
