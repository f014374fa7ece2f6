"""Stage-0 losses and schedule as 3FabRec's, against hand-computed values."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import autoencoder as autoencoder_config
from pnccface.data import augment
from pnccface.train import autoencoder as stage0


def _cs_reference(a, b, size=31, sigma=1.5, c2=0.03**2):
  """Brute-force numpy cs: every valid window position, 2D Gaussian."""
  x = np.arange(size) - size // 2  # 3FabRec's gaussian(): centre size // 2
  g = np.exp(-x**2 / (2 * sigma**2))
  w = np.outer(g, g) / np.sum(g)**2
  rows, cols = a.shape[1] - size + 1, a.shape[2] - size + 1
  out = np.zeros((a.shape[0], rows, cols, a.shape[3]))
  for i in range(rows):
    for j in range(cols):
      pa, pb = a[:, i:i + size, j:j + size], b[:, i:i + size, j:j + size]
      mean = lambda p: np.einsum('bijc,ij->bc', p, w)
      ma, mb = mean(pa), mean(pb)
      va, vb = mean(pa * pa) - ma**2, mean(pb * pb) - mb**2
      cov = mean(pa * pb) - ma * mb
      out[:, i, j] = (2 * cov + c2) / (va + vb + c2)
  return out.mean(axis=(1, 2, 3))


def test_contrast_structure_matches_bruteforce_on_the_valid_window():
  rng = np.random.default_rng(0)
  a = rng.uniform(size=(2, 35, 33, 3))
  b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
  got = stage0.contrast_structure(jnp.asarray(a, jnp.float32),
                                  jnp.asarray(b, jnp.float32))
  np.testing.assert_allclose(got, _cs_reference(a, b), atol=1e-4)
  with pytest.raises(ValueError, match='window'):
    stage0.contrast_structure(jnp.zeros((1, 20, 40, 3)),
                              jnp.zeros((1, 20, 40, 3)))


def test_contrast_structure_ignores_brightness_hand_computed():
  """b = k a + t: cs = (2 k v + C2) / ((1 + k^2) v + C2) for local variance v.

  A 31 x 31 image has one valid position; with a checkerboard of +-d around
  m the Gaussian-weighted variance is v = d^2 - (sum_w sign)^2 d^2.
  """
  signs = np.where((np.add.outer(np.arange(31), np.arange(31)) % 2) == 0,
                   1.0, -1.0)
  a = 0.5 + 0.1 * signs[None, :, :, None]
  x = np.arange(31) - 15
  g = np.exp(-x**2 / 4.5)
  w = np.outer(g, g) / g.sum()**2
  v = 0.01 * (1 - (w * signs).sum()**2)
  c2 = 0.03**2
  for k, t in ((1.0, 0.3), (2.0, -0.4), (0.5, 0.0)):
    expected = (2 * k * v + c2) / ((1 + k**2) * v + c2)
    got = stage0.contrast_structure(jnp.asarray(a, jnp.float32),
                                    jnp.asarray(k * a + t, jnp.float32))
    np.testing.assert_allclose(got, [expected], rtol=1e-4)
  # Brightness alone (k = 1) does not change cs; full SSIM would drop.
  assert float(stage0.contrast_structure(
      jnp.asarray(a, jnp.float32), jnp.asarray(a + 0.3, jnp.float32))[0]
               ) == pytest.approx(1.0, abs=1e-5)


def test_reconstruction_loss_is_3fabrecs_average():
  # L1 10 (0..255 units), cs 0.8: 0.5 * 10 + 0.5 * 60 * 0.2 = 11.
  assert float(stage0.reconstruction_loss(10.0, 0.2, 1.0, 1.0, 60.0)) == 11.0
  # Before the structural phase: w_rec * L1 alone.
  assert float(stage0.reconstruction_loss(10.0, 0.2, 0.0, 1.0, 60.0)) == 10.0


def _loss_config(**overrides):
  values = dict(with_ssim=True, with_gan=True, with_zgan=True,
                zdisc_every=4, enc_prior_every=2, disc_every=2, gen_every=1,
                gan_start_step=3, ssim_start_step=5)
  values.update(overrides)
  return ml_collections.ConfigDict(values)


def test_stage0_gates_follow_3fabrec_rates_and_phases():
  gates = [stage0.stage0_gates(step, _loss_config()) for step in range(9)]
  column = lambda name: [int(getattr(g, name)) for g in gates]
  assert column('zdisc') == [1, 0, 0, 0, 1, 0, 0, 0, 1]
  assert column('enc_prior') == [1, 0, 1, 0, 1, 0, 1, 0, 1]
  assert column('gen') == [0, 0, 0, 1, 1, 1, 1, 1, 1]  # from step 3
  assert column('disc') == [0, 0, 0, 0, 1, 0, 1, 0, 1]  # even, from 3
  assert column('ssim') == [0, 0, 0, 0, 0, 1, 1, 1, 1]
  # Switched off stays off; step None (our earlier variant) = all enabled.
  off = stage0.stage0_gates(6, _loss_config(with_gan=False))
  assert float(off.gen) == float(off.disc) == 0.0
  every = stage0.stage0_gates(None, _loss_config())
  assert all(float(x) == 1.0 for x in every)
  # Traced steps work inside jit.
  assert int(jax.jit(lambda s: stage0.stage0_gates(s, _loss_config()).zdisc)(
      jnp.int32(8))) == 1


def test_every_k_updates_steps_only_on_its_turn():
  tx = stage0.every_k_updates(optax.adam(0.1, b1=0.0), 4)
  params = {'w': jnp.ones(3)}
  state = tx.init(params)
  moved = []
  for _ in range(8):
    updates, state = tx.update({'w': jnp.ones(3)}, state, params)
    moved.append(bool(jnp.any(updates['w'] != 0)))
  assert moved == [True, False, False, False, True, False, False, False]
  # The inner Adam counted only the 2 real steps.
  assert int(state.inner[0].count) == 2
  assert stage0.every_k_updates(optax.sgd(1.0), 1) is not None


def test_stage0_augments_as_3fabrec_in_the_input_pipeline():
  # 3FabRec --daug 4: flips, RandomAffine(45, translate 3.5%, scale ~3%),
  # no colour jitter; the pipeline's draws are device-count independent.
  config = autoencoder_config.get_config()
  assert augment.from_config(config) == augment.Augmentation(
      flip=0.5, scale=0.03, translate=0.035, rotate_degrees=45.0,
      brightness=0.0, contrast=0.0, saturation=0.0)
  assert not hasattr(stage0, 'augment_images')  # one mechanism, not two
