"""Stage 1: train the PNCC predictor (frozen 3FabRec autoencoder + ITLs/SCAF).

Batches: {'image': [D, B, H, W, 3] float32 in [0, 1], 'pncc': [D, B, H, W, 3]
float32 in [0, 1], 'mask': [D, B, H, W, 1] float32 in {0, 1}}. The predictor
maps [N, R, R, 3] images to [N, O, O, 3] PNCCs (O = model.pncc_resolution).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pnccface import distributed
from pnccface.models import autoencoder as autoencoder_model
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
  # 3FabRec's output is half the input (128 for 256): compare at its size.
  target = resize_area(target, size)
  mask = resize_area(mask, size)[..., 0]
  l1 = jnp.mean(jnp.abs(pred - target), axis=-1)  # per pixel, channel mean
  return (jnp.sum(mask * l1), jnp.sum(mask), jnp.sum((1 - mask) * l1),
          jnp.sum(1 - mask))


def pncc_loss(pred: Array, target: Array, mask: Array,
              background_weight: float, axis_name: Optional[str] = None
              ) -> tuple[Array, dict[str, Array]]:
  """The stage-1 loss: mean L1 over face pixels + `background_weight` x
  mean L1 over background pixels, over the global batch.

  loss = sum(mask * l1) / sum(mask)
         + background_weight * sum((1 - mask) * l1) / sum(1 - mask)
  """
  face, n_face, bg, n_bg = masked_l1_terms(pred, target, mask)
  # Pixel counts summed over `axis_name`: the pmean of per-device gradients
  # is then the gradient of the global-batch loss.
  face_l1 = common.global_mean(face, n_face, axis_name)
  bg_l1 = common.global_mean(bg, n_bg, axis_name)
  # Our choice (the paper states no loss): L1 like 3FabRec's landmark head;
  # the small background term (default 0.1) teaches the PNCC background 0.
  loss = face_l1 + background_weight * bg_l1
  return loss, {'face_l1': face_l1, 'background_l1': bg_l1}


def make_model(config, bn_axis_name: Optional[str] = None
               ) -> autoencoder_model.PNCCPredictor:
  """The stage-1 PNCC predictor of `config.model`."""
  return autoencoder_model.PNCCPredictor(**config.model,
                                         bn_axis_name=bn_axis_name)


def init_variables(config, rng: jax.Array) -> dict:
  """PNCC-predictor variables: fresh ITL/skip/output params; encoder and
  decoder from the stage-0 checkpoint in `config.init_from` when set
  (decoder random when `config.from_scratch_decoder`)."""
  model = make_model(config)
  if config.from_scratch_decoder and model.freeze_decoder:
    raise ValueError('from_scratch_decoder=True needs '
                     'model.freeze_decoder=False (a random frozen decoder '
                     'cannot learn)')
  r = model.resolution
  # jitted: eager init dispatches hundreds of small ops (tens of seconds).
  variables = jax.jit(lambda k: model.init(
      common.init_key(k), jnp.zeros((1, r, r, 3), jnp.float32),
      train=False))(rng)
  variables = {'params': variables['params'],
               'batch_stats': variables.get('batch_stats', {})}
  init_from = config.get('init_from', '')
  if init_from:
    stage0 = common.load_variables(init_from)
    variables = autoencoder_model.pncc_variables_from_autoencoder(
        stage0, variables,
        copy_decoder=not config.from_scratch_decoder)
    logging.info('PNCC predictor: encoder/decoder from %s (step %d)',
                 init_from, stage0['step'])
  else:
    logging.warning('PNCC predictor: no init_from, encoder/decoder random')
  return jax.tree_util.tree_map(jnp.asarray, variables)


def make_optimizer(config, params) -> optax.GradientTransformation:
  """The configured optimizer on the trainable parameters only.

  The paper trains only the ITLs, SCAF skips and output conv (Section 2,
  Figure 2): encoder and decoder get zero updates, no weight decay and no
  optimizer state, and keep their batch-norm running averages.
  `model.freeze_decoder=False` trains the pre-trained decoder too;
  `from_scratch_decoder=True` (needs model.freeze_decoder=False) starts it
  from random weights (ablations).
  """
  model = make_model(config)
  mask = autoencoder_model.trainable_mask(params, 'pncc',
                               freeze_encoder=model.freeze_encoder,
                               freeze_decoder=model.freeze_decoder)
  return autoencoder_model.masked_optimizer(
      common.make_optimizer(config.optimizer, config.num_train_steps), mask)


def create_train_state(config, rng: jax.Array) -> common.TrainState:
  """Unreplicated TrainState with the masked optimizer."""
  init_rng, state_rng = jax.random.split(rng)
  variables = init_variables(config, init_rng)
  return common.TrainState.create(
      apply_fn=make_model(config).apply, params=variables['params'],
      batch_stats=variables['batch_stats'],
      tx=make_optimizer(config, variables['params']), rng=state_rng)


def train_step(state: common.TrainState, batch, *, model,
               background_weight: float
               ) -> tuple[common.TrainState, common.Metrics]:
  """Pure per-device step; pmap it with axis common.AXIS, binding `model`
  (built with bn_axis_name=common.AXIS) and the loss weight."""
  def loss_fn(params):
    pred, new_vars = model.apply(
        {'params': params, 'batch_stats': state.batch_stats},
        batch['image'], train=True, mutable=['batch_stats'])
    loss, aux = pncc_loss(pred, batch['pncc'], batch['mask'],
                          background_weight, axis_name=common.AXIS)
    return loss, (aux, new_vars['batch_stats'])

  # Per-device values are scaled by D (see pncc_loss): their mean is global.
  return common.apply_loss_gradients(state, loss_fn)


def make_train_step(config) -> Callable:
  """`train_step` with its static arguments bound, ready for jax.pmap."""
  return functools.partial(
      train_step, model=make_model(config, common.AXIS),
      background_weight=float(config.loss.background_weight))


def make_predict_fn(config) -> Callable[[Mapping[str, Any], Array], Array]:
  """jitted (variables, images [N, R, R, 3] in [0, 1]) -> PNCC [N, O, O, 3]."""
  model = make_model(config)
  return jax.jit(lambda variables, images: model.apply(
      variables, images, train=False))


def make_eval_fn(config, eval_batches: Union[Iterable[Mapping[str, Any]],
                                             Callable[[], Iterable]],
                 num_images: int = 4) -> Callable:
  """state -> {'eval/face_l1', 'eval/background_l1', 'image/...'}.

  eval_batches: a re-iterable (e.g. list) of batches or a callable returning
  a fresh iterator; arrays [B, H, W, C] or [D, B, H, W, C]. face_l1 is the
  held-out mean L1 over face pixels (pixel-weighted over all images).
  Several processes: each evaluates its share of the batches
  (`distributed.process_share`); the sums are added over processes.
  """
  predict = make_predict_fn(config)

  def eval_fn(state) -> dict:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    face = n_face = bg = n_bg = 0.0
    shown = None
    source = eval_batches() if callable(eval_batches) else eval_batches
    for batch in distributed.process_share(source):
      image = common.unshard(batch['image'], 4)
      pncc = jnp.asarray(common.unshard(batch['pncc'], 4))
      pred = predict(variables, image)
      terms = masked_l1_terms(pred, pncc,
                              jnp.asarray(common.unshard(batch['mask'], 4)))
      f, nf, b, nb = (float(t) for t in jax.device_get(terms))
      face, n_face, bg, n_bg = face + f, n_face + nf, bg + b, n_bg + nb
      if shown is None and num_images:
        target = resize_area(pncc, pred.shape[-2])
        shown = {'image/pncc_pred': np.asarray(pred[:num_images]),
                 'image/pncc_true': np.asarray(target[:num_images])}
    face, n_face, bg, n_bg = distributed.sum_across_processes(
        [face, n_face, bg, n_bg])
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
  p_train_step = jax.pmap(make_train_step(config), axis_name=common.AXIS,
                          donate_argnums=(0,))
  return common.train_loop(
      config, workdir, lambda rng: create_train_state(config, rng),
      p_train_step, common.checked_batches(batches, REQUIRED),
      eval_fn=eval_fn, stop_at_step=stop_at_step)
