"""Stage 0: unsupervised pre-training of the 3FabRec face autoencoder.

Loss (`losses`, after 3FabRec's `train_aae_unsupervised.py` /
`aae_training.py`; switches and weights in `config.loss`):
  autoencoder: w_rec * L1 (0..255 units), or once the structural term is on
    0.5 w_rec L1 + 0.5 w_ssim structural (`reconstruction_loss`,
    `structural_error`: 'cs' or 'ssim'); + w_enc * -log D_z(z) (with_zgan)
    + w_gan * -log D(x_rec) (with_gan);
  D_z: N(0, I) samples vs. encodings; D: real vs. reconstructed images.
  Which terms count at a step: `stage0_gates`; the discriminators' learning
  rates and update rates: `make_optimizer`.

State params: {'encoder', 'decoder', 'disc_z', 'disc_img'} (discriminators
only when enabled); batch_stats: {'encoder', 'decoder', 'disc_img'}. The
stage-1 PNCC predictor takes 'encoder' and 'decoder' from the checkpoint.

Batches: {'image': [D, B, R, R, 3] float32 in [0, 1]}, augmented by the
input pipeline (`config.augment`, `pnccface.data.augment`).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pnccface import geometry
from pnccface.models import autoencoder as autoencoder_model
from pnccface.train import common

Array = jnp.ndarray
REQUIRED = {'image': 5}


def _gaussian_window(size: int, sigma: float) -> Array:
  x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  g = jnp.exp(-x**2 / (2.0 * sigma**2))
  return g / jnp.sum(g)


def _gaussian_blur(window: int, sigma: float, channels: int, padding: str
                   ) -> Callable[[Array], Array]:
  """Separable per-channel Gaussian filter of NHWC images."""
  g = _gaussian_window(window, sigma)
  kernel_h = jnp.tile(g[:, None, None, None], (1, 1, 1, channels))
  kernel_w = jnp.tile(g[None, :, None, None], (1, 1, 1, channels))

  def blur(x):
    for k in (kernel_h, kernel_w):
      x = jax.lax.conv_general_dilated(
          x, k, (1, 1), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
          feature_group_count=channels)
    return x

  return blur


def contrast_structure(a: Array, b: Array, window: int = 31,
                       sigma: float = 1.5, max_value: float = 1.0) -> Array:
  """3FabRec's structural score `cs` of [B, H, W, C] images, per image [B].

  cs = mean over channels and valid positions (no padding: H - window + 1
  rows) of (2 s_ab + C2) / (s_a^2 + s_b^2 + C2), with Gaussian-weighted
  local (co)variances and C2 = (0.03 max_value)^2: SSIM without its
  luminance factor (3FabRec `csl_common/metrics/ssim.py`, `ssim(...)`,
  padding 0). 1 for identical non-flat images.
  """
  if min(a.shape[1:3]) < window:
    raise ValueError(f'contrast_structure needs images >= window {window}, '
                     f'got {a.shape}')
  blur = _gaussian_blur(window, sigma, a.shape[-1], 'VALID')
  c2 = (0.03 * max_value)**2
  mu_a, mu_b = blur(a), blur(b)
  var_a = blur(a * a) - mu_a**2
  var_b = blur(b * b) - mu_b**2
  cov = blur(a * b) - mu_a * mu_b
  return jnp.mean((2 * cov + c2) / (var_a + var_b + c2), axis=(1, 2, 3))


def ssim(a: Array, b: Array, window: int = 31, sigma: float = 1.5,
         max_value: float = 1.0) -> Array:
  """Per-image mean SSIM of [B, H, W, C] images (Gaussian window, zero
  padding 'SAME', constants (0.01 L)^2, (0.03 L)^2). Returns [B]."""
  blur = _gaussian_blur(window, sigma, a.shape[-1], 'SAME')
  c1, c2 = (0.01 * max_value)**2, (0.03 * max_value)**2
  mu_a, mu_b = blur(a), blur(b)
  var_a = blur(a * a) - mu_a**2
  var_b = blur(b * b) - mu_b**2
  cov = blur(a * b) - mu_a * mu_b
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
      (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
  return jnp.mean(s, axis=(1, 2, 3))


STRUCTURAL_CS = 'cs'      # 3FabRec: 1 - cs, valid window
STRUCTURAL_SSIM = 'ssim'  # 1 - SSIM, zero padding (our earlier variant)


def structural_error(image: Array, recon: Array, loss_config) -> Array:
  """[B] structural error of `loss.structural` (see module docstring)."""
  kind = loss_config.get('structural', STRUCTURAL_SSIM)
  # C2's data range L: 3FabRec picks it from the (normalised) target (2 when
  # a value is < -0.5, else 1); here it is `ssim_max_value` (1.0).
  args = (loss_config.ssim_window, loss_config.ssim_sigma,
          loss_config.get('ssim_max_value', 1.0))
  if kind == STRUCTURAL_CS:
    return 1.0 - contrast_structure(image, recon, *args)
  if kind == STRUCTURAL_SSIM:
    return 1.0 - ssim(image, recon, *args)
  raise ValueError(f'unknown loss.structural {kind!r}; use '
                   f'{STRUCTURAL_CS!r} or {STRUCTURAL_SSIM!r}')


def reconstruction_loss(l1_255: Array, structural: Array, ssim_on: Array,
                        w_rec: float, w_ssim: float) -> Array:
  """3FabRec's image loss: w_rec L1 alone, or once the structural term is on
  0.5 w_rec L1 + 0.5 w_ssim structural (`train_aae_unsupervised.py`:
  `loss = 0.5 * loss + 0.5 * loss_ssim`). Scalars (ssim_on 0/1)."""
  return jnp.where(ssim_on > 0, 0.5 * w_rec * l1_255 + 0.5 * w_ssim *
                   structural, w_rec * l1_255)


class Stage0Gates(NamedTuple):
  """0/1 float weights of the stage-0 terms at one step (`stage0_gates`)."""
  ssim: Array       # structural term on (phase)
  gen: Array        # image-GAN generator loss for the autoencoder
  disc: Array       # image discriminator update
  enc_prior: Array  # encoder's Gaussian-prior (latent GAN) loss
  zdisc: Array      # latent discriminator update


def stage0_gates(step, loss_config) -> Stage0Gates:
  """Which terms count at `step` (0-based): switches, phases, update rates.

  ssim from `ssim_start_step` (if with_ssim); the image GAN from
  `gan_start_step` (if with_gan), D on every `disc_every`-th and the
  generator loss on every `gen_every`-th step of it; D_z every
  `zdisc_every`-th and the encoder's prior loss every `enc_prior_every`-th
  step (if with_zgan). `step=None`: every enabled term on.
  """
  lc = loss_config

  def on(enabled, start=0, every=1):
    if step is None:
      return jnp.float32(bool(enabled))
    s = jnp.asarray(step)
    return jnp.float32(bool(enabled)) * (
        (s >= start) & (s % max(int(every), 1) == 0)).astype(jnp.float32)

  # Phases (3FabRec's README): epoch 1 reconstruction (+ latent GAN) only,
  # the image GAN from epoch 2, the structural loss from epoch 3. Rates
  # (3FabRec's `update_encoding`, --update-D-freq 2, --update-E-freq 1): a
  # skipped term has weight 0 and its discriminator's optimizer does not
  # step (`every_k_updates`), so Adam's state is that of a skipped step.
  gan_start = lc.get('gan_start_step', 0)
  return Stage0Gates(
      ssim=on(lc.with_ssim, lc.get('ssim_start_step', 0)),
      gen=on(lc.with_gan, gan_start, lc.get('gen_every', 1)),
      disc=on(lc.with_gan, gan_start, lc.get('disc_every', 1)),
      enc_prior=on(lc.with_zgan, 0, lc.get('enc_prior_every', 1)),
      zdisc=on(lc.with_zgan, 0, lc.get('zdisc_every', 1)))


class _EveryKState(NamedTuple):
  count: Array
  inner: Any


def every_k_updates(tx: optax.GradientTransformation, every: int
                    ) -> optax.GradientTransformation:
  """`tx` on updates 0, k, 2k, ...; zero updates and untouched `tx` state on
  the others (a module updated every k-th step, as 3FabRec's D_z / D)."""
  every = max(int(every), 1)
  if every == 1:
    return tx

  def init(params):
    return _EveryKState(jnp.zeros([], jnp.int32), tx.init(params))

  def update(updates, state, params=None):
    new_updates, new_inner = tx.update(updates, state.inner, params)
    due = state.count % every == 0
    pick = lambda a, b: jax.tree_util.tree_map(
        lambda x, y: jnp.where(due, x, y), a, b)
    return (pick(new_updates, jax.tree_util.tree_map(jnp.zeros_like,
                                                     updates)),
            _EveryKState(state.count + 1, pick(new_inner, state.inner)))

  return optax.GradientTransformation(init, update)


class Models:
  """The stage-0 modules of a config (train-time ones use the pmap axis)."""

  def __init__(self, config, bn_axis_name: Optional[str] = None):
    self.autoencoder = autoencoder_model.Autoencoder(
        **config.model, bn_axis_name=bn_axis_name)
    # The discriminators compute in the autoencoder's dtype (config.model).
    self.disc_z = autoencoder_model.LatentDiscriminator(
        hidden=config.loss.get('zdisc_hidden', 1000),
        dtype=self.autoencoder.dtype)
    self.disc_img = autoencoder_model.ImageDiscriminator(
        ndf=config.loss.get('disc_ndf', 32), bn_axis_name=bn_axis_name,
        input_normalization=self.autoencoder.input_normalization,
        dtype=self.autoencoder.dtype)


def init_variables(config, rng: jax.Array, models: Optional[Models] = None
                   ) -> dict:
  """{'params', 'batch_stats'} for the autoencoder and enabled
  discriminators."""
  models = models or Models(config)
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

  return init(rng)


def make_optimizer(config, params) -> optax.GradientTransformation:
  """One optax.multi_transform over `params` (a pytree or its shapes): the
  autoencoder at the configured lr, the image discriminator at
  `discriminator_lr_factor` x that (3FabRec: 0.5) and D_z at
  `zdisc_lr_factor` x (3FabRec: 1.0), each stepping every `disc_every` /
  `zdisc_every` steps (`every_k_updates`)."""
  opt = config.optimizer
  ae_tx = common.make_optimizer(opt, config.num_train_steps)

  def scaled(factor, every):
    d_opt = opt.copy_and_resolve_references()
    d_opt.lr = opt.lr * factor
    return every_k_updates(
        common.make_optimizer(d_opt, config.num_train_steps), every)

  lc = config.loss
  d_factor = opt.get('discriminator_lr_factor', 0.5)
  txs = {'ae': ae_tx,
         'disc_img': scaled(d_factor, lc.get('disc_every', 1)),
         # 3FabRec's optimizer_D_z runs at the full lr.
         'disc_z': scaled(opt.get('zdisc_lr_factor', d_factor),
                          lc.get('zdisc_every', 1))}
  labels = {k: jax.tree_util.tree_map(
      lambda _, l=(k if k in txs else 'ae'): l, v)
            for k, v in params.items()}
  return optax.multi_transform(txs, labels)


def create_train_state(config, rng: jax.Array) -> common.TrainState:
  """Unreplicated TrainState of the autoencoder and its discriminators."""
  init_rng, state_rng = jax.random.split(rng)
  models = Models(config)
  variables = init_variables(config, init_rng, models)
  return common.TrainState.create(
      apply_fn=models.autoencoder.apply,
      params=variables['params'], batch_stats=variables['batch_stats'],
      tx=make_optimizer(config, variables['params']), rng=state_rng)


def _ae_vars(params, batch_stats):
  return {'params': {k: params[k] for k in ('encoder', 'decoder')},
          'batch_stats': {k: batch_stats[k] for k in ('encoder', 'decoder')
                          if k in batch_stats}}


def losses(config, models: Models, params, batch_stats, image: Array,
           rng: jax.Array, train: bool = True, step=None
           ) -> tuple[Array, tuple[dict, dict]]:
  """Total loss (autoencoder + discriminators; see module docstring),
  (metrics, new batch_stats). image: [B, R, R, 3] in [0, 1]; step: the
  0-based training step for `stage0_gates` (None: every enabled term).

  3FabRec's optional "generative" image loss (with_gen_loss, interpolated
  latents) and its z-regulariser (off by default there) are left out.
  """
  lc = config.loss
  gates = stage0_gates(step, lc)
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
    structural = jnp.mean(structural_error(image, recon, lc))
    loss_ae = reconstruction_loss(l1, structural, gates.ssim, lc.w_rec,
                                  lc.w_ssim)
    metrics['structural_error'] = structural
  else:
    loss_ae = lc.w_rec * l1
  loss_d = 0.0
  k_real, k_drop1, k_drop2, k_drop3 = jax.random.split(rng, 4)
  if lc.with_zgan:
    dz = lambda p, x, k: models.disc_z.apply({'params': p}, x, train=train,
                                             rngs={'dropout': k})
    z_prior = jax.random.normal(k_real, z.shape, z.dtype)
    # softplus(-x) = -log sigmoid(x) on logits (3FabRec: sigmoid, then
    # log(p + 1e-8)).
    loss_dz = jnp.mean(jax.nn.softplus(-dz(params['disc_z'], z_prior,
                                           k_drop1))
                       + jax.nn.softplus(dz(params['disc_z'], sg(z), k_drop2)))
    loss_enc = jnp.mean(jax.nn.softplus(-dz(sg(params['disc_z']), z,
                                            k_drop3)))
    # 3FabRec steps the encoder a second time with this loss alone
    # (`update_encoding` calls optimizer_E.step()); here it joins the
    # encoder's one combined step, which is pure and resumable. The
    # parameter sets are otherwise disjoint: each discriminator sees
    # stop-gradient inputs, the autoencoder stop-gradient discriminators.
    loss_ae += gates.enc_prior * lc.w_enc * loss_enc
    loss_d += gates.zdisc * loss_dz
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
    loss_ae += gates.gen * lc.w_gan * loss_gen
    loss_d += gates.disc * loss_disc
    new_stats['disc_img'] = d_stats
    metrics.update(loss_disc=loss_disc, loss_gen=loss_gen)
  metrics['loss'] = loss_ae
  return loss_ae + loss_d, (metrics, new_stats)


def train_step(state: common.TrainState, batch, *, config, models: Models
               ) -> tuple[common.TrainState, common.Metrics]:
  """Pure per-device step; pmap it with axis common.AXIS, binding `config`
  and `models` (built with bn_axis_name=common.AXIS) by functools.partial."""
  # Augmentation (3FabRec's --daug 4: flips + RandomAffine(45 deg, 3.5%
  # translation, 3% scale)) happens in the input pipeline
  # (`pipeline.training_batch_source`), seeded by (seed, step), so the step
  # stays independent of the number of devices. 3FabRec's RandomAffine also
  # shears (5 deg) and rotates a crop with margins; ours transforms the
  # input-size crop.
  rng = common.step_rng(state)
  # `losses` reports the autoencoder's own loss as metrics['loss'].
  return common.apply_loss_gradients(
      state, lambda p: losses(config, models, p, state.batch_stats,
                              batch['image'], rng, step=state.step))


def make_train_step(config) -> Callable:
  """`train_step` with its static arguments bound, ready for jax.pmap."""
  return functools.partial(train_step, config=config,
                           models=Models(config, common.AXIS))


def make_reconstruct_fn(config) -> Callable:
  """jitted (variables, images [N, R, R, 3]) -> reconstructions, z."""
  model = autoencoder_model.Autoencoder(**config.model)
  return jax.jit(lambda variables, images: model.apply(
      _ae_vars(variables['params'], variables['batch_stats']), images,
      train=False))


def make_eval_fn(config, eval_batches: Union[Iterable[Mapping[str, Any]],
                                             Callable[[], Iterable]],
                 num_images: int = 4) -> Callable:
  """state -> {'eval/l1' (mean |x - x_rec|, [0, 1] units), 'eval/ssim',
  'image/reconstruction'}; eval_batches as pncc.make_eval_fn."""
  # In place of 3FabRec's landmark-free visualisations: held-out L1 / SSIM
  # and reconstructions in TensorBoard.
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
  p_train_step = jax.pmap(make_train_step(config), axis_name=common.AXIS,
                          donate_argnums=(0,))
  return common.train_loop(
      config, workdir, lambda rng: create_train_state(config, rng),
      p_train_step, common.checked_batches(batches, REQUIRED),
      eval_fn=eval_fn, stop_at_step=stop_at_step)
