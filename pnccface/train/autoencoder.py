"""Stage 0: unsupervised pre-training of the 3FabRec face autoencoder.

Implemented (3FabRec `train_aae_unsupervised.py` / `aae_training.py`):
  * reconstruction loss: mean |x - x_rec| in 0..255 units, weight w_rec;
  * structural loss (with_ssim): 1 - SSIM(x, x_rec) per image (Gaussian
    window sigma 1.5, window 31 as 3FabRec, zero padding, on [0, 1] images),
    weight w_ssim = 60; when on, 3FabRec averages the two:
    loss = 0.5 * w_rec * L1 + 0.5 * w_ssim * (1 - SSIM);
  * latent adversarial loss (with_zgan): a Gaussian-prior discriminator D_z
    (MLP 1000-1000-1, dropout 0.2) learns N(0, I) samples vs. encodings; the
    encoder gets w_enc * -log D_z(z);
  * image adversarial loss (with_gan): a DCGAN-style discriminator D learns
    real vs. reconstructed images; encoder+decoder get w_gan * -log D(x_rec);
    D trains at `discriminator_lr_factor` (0.5) x the lr as 3FabRec.
  Losses use log-sigmoid of logits (3FabRec: sigmoid + log(p + 1e-8)).

Left out / changed, and why:
  * 3FabRec updates D_z every 4th, the encoder's prior loss every 2nd and D
    every 2nd iteration, each with its own optimizer step; here all parts
    update every step from one combined gradient (disjoint parameter sets:
    each discriminator sees stop-gradient inputs, the autoencoder sees
    stop-gradient discriminators). Simpler, pure, and resumable; the ratio is
    a tuning detail.
  * the optional "generative" image loss (with_gen_loss, interpolated
    latents) and the z-regulariser (off by default there) are not
    implemented.
  * 3FabRec's landmark-free evaluation visualisations are replaced by
    held-out L1/SSIM and reconstruction images in TensorBoard.

State params: {'encoder', 'decoder', 'disc_z', 'disc_img'} (discriminators
only when enabled); batch_stats: {'encoder', 'decoder', 'disc_img'}. The
stage-1 PNCC predictor takes 'encoder' and 'decoder' from the checkpoint.

Batches: {'image': [D, B, R, R, 3] float32 in [0, 1]}.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from pnccface.models import autoencoder as ae_lib
from pnccface.train import common

Array = jnp.ndarray
REQUIRED = {'image': 5}


def _gaussian_window(size: int, sigma: float) -> Array:
  x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  g = jnp.exp(-x**2 / (2.0 * sigma**2))
  return g / jnp.sum(g)


def ssim(a: Array, b: Array, window: int = 31, sigma: float = 1.5,
         max_value: float = 1.0) -> Array:
  """Per-image mean SSIM of [B, H, W, C] images (Gaussian window, zero
  padding 'SAME', constants (0.01 L)^2, (0.03 L)^2). Returns [B]."""
  g = _gaussian_window(window, sigma)
  channels = a.shape[-1]
  kernel_h = jnp.tile(g[:, None, None, None], (1, 1, 1, channels))
  kernel_w = jnp.tile(g[None, :, None, None], (1, 1, 1, channels))

  def blur(x):
    for k in (kernel_h, kernel_w):
      x = jax.lax.conv_general_dilated(
          x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
          feature_group_count=channels)
    return x

  c1, c2 = (0.01 * max_value)**2, (0.03 * max_value)**2
  mu_a, mu_b = blur(a), blur(b)
  var_a = blur(a * a) - mu_a**2
  var_b = blur(b * b) - mu_b**2
  cov = blur(a * b) - mu_a * mu_b
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
      (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
  return jnp.mean(s, axis=(1, 2, 3))


class Models:
  """The stage-0 modules of a config (train-time ones use the pmap axis)."""

  def __init__(self, config, bn_axis_name: Optional[str] = None):
    self.autoencoder = ae_lib.autoencoder_from_config(config.model,
                                                      bn_axis_name)
    self.disc_z = ae_lib.LatentDiscriminator(
        hidden=config.loss.get('zdisc_hidden', 1000))
    self.disc_img = ae_lib.ImageDiscriminator(
        ndf=config.loss.get('disc_ndf', 32), bn_axis_name=bn_axis_name,
        input_normalization=config.model.get(
            'input_normalization', ae_lib.NORMALIZE_SYMMETRIC))


# Caches keyed by the config's JSON: equal configs give the same functions
# and static TrainState data (optimizer, apply_fn), so repeated runs in one
# process (resumes, tests) reuse compiled code instead of recompiling.


def _key(config) -> str:
  return json.dumps({k: json.loads(config[k].to_json())
                     for k in ('model', 'loss', 'optimizer')} |
                    {'num_train_steps': int(config.num_train_steps)},
                    sort_keys=True)


def _config(key: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(json.loads(key))


@functools.lru_cache(maxsize=16)
def _models(key: str, bn_axis_name: Optional[str] = None) -> Models:
  return Models(_config(key), bn_axis_name)


def init_variables(config, rng: jax.Array) -> dict:
  """{'params', 'batch_stats'} for the autoencoder and enabled
  discriminators."""
  return _jitted_init(_key(config))(rng)


@functools.lru_cache(maxsize=8)
def _jitted_init(key: str) -> Callable:
  config = _config(key)
  models = _models(key)
  r = config.model.resolution
  image = jnp.zeros((1, r, r, 3), jnp.float32)

  @jax.jit  # eager init dispatches hundreds of small ops (slow)
  def init(rng):
    k_ae, k_dz, k_d = jax.random.split(common.init_key(rng), 3)
    v = models.autoencoder.init(k_ae, image, train=False)
    params = dict(v['params'])
    batch_stats = dict(v.get('batch_stats', {}))
    if config.loss.with_zgan:
      params['disc_z'] = models.disc_z.init(
          k_dz, jnp.zeros((1, config.model.z_dim)), train=False)['params']
    if config.loss.with_gan:
      vd = models.disc_img.init(k_d, image, train=False)
      params['disc_img'] = vd['params']
      batch_stats['disc_img'] = vd.get('batch_stats', {})
    return {'params': params, 'batch_stats': batch_stats}

  return init


def create_train_state(config, rng: jax.Array) -> common.TrainState:
  """Unreplicated TrainState; autoencoder and discriminators share one
  optax.multi_transform (discriminators at discriminator_lr_factor x lr)."""
  init_rng, state_rng = jax.random.split(rng)
  variables = init_variables(config, init_rng)
  return common.TrainState.create(
      apply_fn=_models(_key(config)).autoencoder.apply,
      params=variables['params'], batch_stats=variables['batch_stats'],
      tx=_tx(_key(config)), rng=state_rng)


@functools.lru_cache(maxsize=8)
def _tx(key: str) -> optax.GradientTransformation:
  config = _config(key)
  shapes = jax.eval_shape(_jitted_init(key), jax.random.PRNGKey(0))
  opt = config.optimizer
  ae_tx = common.make_optimizer(opt, config.num_train_steps)
  d_opt = opt.copy_and_resolve_references()
  d_opt.lr = opt.lr * opt.get('discriminator_lr_factor', 0.5)
  d_tx = common.make_optimizer(d_opt, config.num_train_steps)
  labels = {k: jax.tree_util.tree_map(
      lambda _, l=('disc' if k.startswith('disc') else 'ae'): l, v)
            for k, v in shapes['params'].items()}
  return optax.multi_transform({'ae': ae_tx, 'disc': d_tx}, labels)


def _ae_vars(params, batch_stats):
  return {'params': {k: params[k] for k in ('encoder', 'decoder')},
          'batch_stats': {k: batch_stats[k] for k in ('encoder', 'decoder')
                          if k in batch_stats}}


def losses(config, models: Models, params, batch_stats, image: Array,
           rng: jax.Array, train: bool = True
           ) -> tuple[Array, tuple[dict, dict]]:
  """Total loss (autoencoder + discriminators; see module docstring),
  (metrics, new batch_stats). image: [B, R, R, 3] in [0, 1]."""
  lc = config.loss
  sg = jax.lax.stop_gradient
  mutable = ['batch_stats'] if train else False
  out = models.autoencoder.apply(_ae_vars(params, batch_stats), image,
                                 train=train, mutable=mutable)
  (recon, z), new_ae = out if train else (out, {'batch_stats': {}})
  new_stats = dict(batch_stats)
  new_stats.update(new_ae['batch_stats'])
  l1 = jnp.mean(jnp.abs(recon - image)) * 255.0
  metrics = {'l1_255': l1}
  if lc.with_ssim:
    s = jnp.mean(ssim(image, recon, lc.ssim_window, lc.ssim_sigma))
    loss_ae = 0.5 * lc.w_rec * l1 + 0.5 * lc.w_ssim * (1.0 - s)
    metrics['ssim'] = s
  else:
    loss_ae = lc.w_rec * l1
  loss_d = 0.0
  k_real, k_drop1, k_drop2, k_drop3 = jax.random.split(rng, 4)
  if lc.with_zgan:
    dz = lambda p, x, k: models.disc_z.apply({'params': p}, x, train=train,
                                             rngs={'dropout': k})
    z_prior = jax.random.normal(k_real, z.shape, z.dtype)
    loss_dz = jnp.mean(jax.nn.softplus(-dz(params['disc_z'], z_prior,
                                           k_drop1))
                       + jax.nn.softplus(dz(params['disc_z'], sg(z), k_drop2)))
    loss_enc = jnp.mean(jax.nn.softplus(-dz(sg(params['disc_z']), z,
                                            k_drop3)))
    loss_ae += lc.w_enc * loss_enc
    loss_d += loss_dz
    metrics.update(loss_dz=loss_dz, loss_enc=loss_enc)
  if lc.with_gan:
    d_stats = batch_stats['disc_img']

    def d_apply(p, stats, x):
      if not train:
        return models.disc_img.apply({'params': p, 'batch_stats': stats}, x,
                                     train=False), stats
      logits, upd = models.disc_img.apply(
          {'params': p, 'batch_stats': stats}, x, train=True,
          mutable=['batch_stats'])
      return logits, upd['batch_stats']

    real, d_stats = d_apply(params['disc_img'], d_stats, image)
    fake, d_stats = d_apply(params['disc_img'], d_stats, sg(recon))
    gen, _ = d_apply(sg(params['disc_img']), sg(d_stats), recon)
    loss_disc = jnp.mean(jax.nn.softplus(-real) + jax.nn.softplus(fake))
    loss_gen = jnp.mean(jax.nn.softplus(-gen))
    loss_ae += lc.w_gan * loss_gen
    loss_d += loss_disc
    new_stats['disc_img'] = d_stats
    metrics.update(loss_disc=loss_disc, loss_gen=loss_gen)
  metrics['loss'] = loss_ae
  return loss_ae + loss_d, (metrics, new_stats)


def make_train_step(config) -> Callable:
  """Pure per-device step (state, batch) -> (state, metrics); pmap with
  axis common.AXIS (the same object for equal configs)."""
  return _train_step(_key(config))


@functools.lru_cache(maxsize=8)
def _train_step(key: str) -> Callable:
  config = _config(key)
  models = _models(key, common.AXIS)

  def train_step(state: common.TrainState, batch):
    rng = common.step_rng(state)
    # `losses` reports the autoencoder's own loss as metrics['loss'].
    return common.apply_loss_gradients(
        state, lambda p: losses(config, models, p, state.batch_stats,
                                batch['image'], rng))

  return train_step


def make_reconstruct_fn(config) -> Callable:
  """jitted (variables, images [N, R, R, 3]) -> reconstructions, z."""
  model = ae_lib.autoencoder_from_config(config.model)
  return jax.jit(lambda variables, images: model.apply(
      _ae_vars(variables['params'], variables['batch_stats']), images,
      train=False))


def make_eval_fn(config, eval_batches: Union[Iterable[Mapping[str, Any]],
                                             Callable[[], Iterable]],
                 num_images: int = 4) -> Callable:
  """state -> {'eval/l1' (mean |x - x_rec|, [0, 1] units), 'eval/ssim',
  'image/reconstruction'}; eval_batches as pncc.make_eval_fn."""
  reconstruct = make_reconstruct_fn(config)

  @jax.jit
  def scores(image, recon):
    return (jnp.sum(jnp.mean(jnp.abs(recon - image), axis=(1, 2, 3))),
            jnp.sum(ssim(image, recon, config.loss.ssim_window,
                         config.loss.ssim_sigma)))

  def eval_fn(state) -> dict:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    l1 = s = n = 0.0
    shown = None
    source = eval_batches() if callable(eval_batches) else eval_batches
    for batch in source:
      image = np.asarray(batch['image'])
      image = image.reshape((-1,) + image.shape[-3:])
      recon, _ = reconstruct(variables, image)
      a, b = jax.device_get(scores(image, recon))
      l1, s, n = l1 + float(a), s + float(b), n + image.shape[0]
      if shown is None and num_images:
        shown = np.concatenate([image[:num_images],
                                np.asarray(recon[:num_images])], axis=2)
    if n == 0:
      raise ValueError('no eval batches')
    out = {'eval/l1': l1 / n, 'eval/ssim': s / n}
    if shown is not None:
      out['image/reconstruction'] = shown
    return out

  return eval_fn


def train(config, workdir: Union[str, os.PathLike], batches,
          eval_batches=None, stop_at_step: Optional[int] = None
          ) -> common.TrainState:
  """Runs/resumes stage 0 in `workdir`; returns the final state (its
  checkpoint is what stage 1's `init_from` points at)."""
  eval_fn = make_eval_fn(config, eval_batches) if eval_batches else None
  return common.train_loop(
      config, workdir, lambda rng: create_train_state(config, rng),
      make_train_step(config), common.checked_batches(batches, REQUIRED),
      eval_fn=eval_fn, stop_at_step=stop_at_step)
