"""Tests for pnccface.models.autoencoder and stage 0 (train/autoencoder.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pnccface.models import autoencoder as ae
from pnccface.train import autoencoder as stage0
from pnccface.train import common
from configs import autoencoder as autoencoder_config
from configs import pncc_few as pncc_few_config
from tests.conftest import ellipse_faces, few_shot_source

TINY = dict(resolution=32, base_width=8, z_dim=16, encoder_blocks=1)


def _init(model, x, seed=0):
  # jitted with an rbg key: eager threefry init takes tens of seconds on CPU.
  return jax.jit(lambda k: model.init(common.init_key(k), x, train=False))(
      jax.random.PRNGKey(seed))


def _count(tree):
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def test_full_size_parameter_counts_match_3fabrec():
  # 3FabRec's README log: "Trainable params Q: 11,379,491 / P: 10,868,096 /
  # D_z: 1,102,001 / D: 1,743,744" for its 256x256 model.
  image = jnp.zeros((1, 256, 256, 3))
  shapes = jax.eval_shape(lambda: ae.Autoencoder().init(
      jax.random.PRNGKey(0), image, train=False))['params']
  assert _count(shapes['encoder']) == 11_379_491
  assert _count(shapes['decoder']) == 10_868_096
  dz = jax.eval_shape(lambda: ae.LatentDiscriminator().init(
      jax.random.PRNGKey(0), jnp.zeros((1, 99)), train=False))
  d = jax.eval_shape(lambda: ae.ImageDiscriminator().init(
      jax.random.PRNGKey(0), image, train=False))
  assert _count(dz['params']) == 1_102_001
  assert _count(d['params']) == 1_743_744
  # LandmarkHeadV2 placement: ITLs t1..t4 of 256, 128, 64, 64 channels
  # (3x3, no bias) and a 128x128 output for a 256 input.
  p = jax.eval_shape(lambda: ae.PNCCPredictor().init(
      jax.random.PRNGKey(0), image, train=False))['params']
  assert [p[f'itl_{k}']['kernel'].shape for k in range(1, 5)] == [
      (3, 3, 256, 256), (3, 3, 128, 128), (3, 3, 64, 64), (3, 3, 64, 64)]
  assert 'itl_5' not in p
  model = ae.PNCCPredictor()
  out = jax.eval_shape(lambda: model.apply(
      model.init(jax.random.PRNGKey(0), image, train=False), image,
      train=False))
  assert out.shape == (1, 128, 128, 3)


@pytest.mark.parametrize('resolution', [32, 64])
def test_forward_shapes_and_ranges(resolution):
  kw = dict(TINY, resolution=resolution)
  images = jnp.asarray(ellipse_faces(0, 2, resolution)['image'])
  model = ae.Autoencoder(**kw)
  v = _init(model, images)
  (recon, z), _ = jax.jit(lambda v, x: model.apply(
      v, x, train=True, mutable=['batch_stats']))(v, images)
  assert recon.shape == (2, resolution, resolution, 3) and z.shape == (2, 16)
  assert float(recon.min()) >= 0 and float(recon.max()) <= 1
  encoder = ae.Encoder(**{k: kw[k] for k in ('resolution', 'base_width',
                                              'z_dim')}, blocks=1)
  _, feats = jax.jit(lambda v, x: encoder.apply(v, x, train=False))(
      {'params': v['params']['encoder'],
       'batch_stats': v['batch_stats']['encoder']}, images)
  sizes = sorted(feats)
  assert sizes[0] == 4 and sizes[-1] == resolution // 2
  for size, f in feats.items():
    assert f.shape[1:3] == (size, size)
  for out_res in (resolution, resolution // 2):
    p = ae.PNCCPredictor(**kw, pncc_resolution=out_res)
    y = jax.jit(lambda v, x, p=p: p.apply(v, x, train=False))(
        _init(p, images, 1), images)
    assert y.shape == (2, out_res, out_res, 3)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_bad_input_shape_is_named():
  model = ae.Autoencoder(**TINY)
  with pytest.raises(ValueError, match=r'\[B, 32, 32, 3\]'):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)), train=False)
  with pytest.raises(ValueError, match='power of two'):
    ae.num_itl_stages(48, 64)


def test_skips_are_additive_after_itls():
  images = jnp.asarray(ellipse_faces(1, 2)['image'])
  with_skips = ae.PNCCPredictor(**TINY, pncc_resolution=32)
  v = _init(with_skips, images)
  skips = [k for k in v['params'] if k.startswith('skip_')]
  # 32x32 input: decoder stages at 8x8 and 16x16; encoder has both sizes.
  assert skips == ['skip_1', 'skip_2']
  no_skips = ae.PNCCPredictor(**TINY, pncc_resolution=32, use_skips=False)
  v_plain = {'params': {k: p for k, p in v['params'].items()
                        if not k.startswith('skip_')},
             'batch_stats': v['batch_stats']}
  zeroed = jax.tree_util.tree_map(lambda x: x, v)
  zeroed['params'] = dict(v['params'])
  for k in skips:
    zeroed['params'][k] = jax.tree_util.tree_map(jnp.zeros_like,
                                                 v['params'][k])
  y_plain = no_skips.apply(v_plain, images, train=False)
  np.testing.assert_allclose(with_skips.apply(zeroed, images, train=False),
                             y_plain, atol=1e-6)
  assert float(jnp.max(jnp.abs(with_skips.apply(v, images, train=False)
                               - y_plain))) > 1e-3


def test_pncc_variables_from_autoencoder_copies_exactly():
  images = jnp.zeros((1, 32, 32, 3))
  av = _init(ae.Autoencoder(**TINY), images)
  av = jax.tree_util.tree_map(lambda x: x + 0.5, av)  # distinct from init
  pv = _init(ae.PNCCPredictor(**TINY, pncc_resolution=32), images, 1)
  out = ae.pncc_variables_from_autoencoder(av, pv)
  for col in ('params', 'batch_stats'):
    for part in ('encoder', 'decoder'):
      for path, leaf in jax.tree_util.tree_leaves_with_path(out[col][part]):
        src = av[col][part]
        for key in path:
          src = src[key.key]
        np.testing.assert_array_equal(leaf, src)
  np.testing.assert_array_equal(out['params']['itl_1']['kernel'],
                                pv['params']['itl_1']['kernel'])
  # The head does not use the decoder's full-resolution output conv.
  assert 'out_conv' not in out['params']['decoder']
  scratch = ae.pncc_variables_from_autoencoder(av, pv, copy_decoder=False)
  np.testing.assert_array_equal(scratch['params']['decoder']['fc']['kernel'],
                                pv['params']['decoder']['fc']['kernel'])
  bad = {'params': {'encoder': av['params']['encoder']},
         'batch_stats': av['batch_stats']}
  with pytest.raises(KeyError, match='params/decoder'):
    ae.pncc_variables_from_autoencoder(bad, pv)


def test_trainable_mask_and_masked_optimizer():
  params = {'encoder': {'w': jnp.ones(3)}, 'decoder': {'w': jnp.ones(2)},
            'itl_1': {'w': jnp.ones(2)}, 'skip_1': {'w': jnp.ones(2)}}
  mask = ae.trainable_mask(params)
  assert mask == {'encoder': {'w': False}, 'decoder': {'w': False},
                  'itl_1': {'w': True}, 'skip_1': {'w': True}}
  assert ae.trainable_mask(params, freeze_decoder=False)['decoder']['w']
  assert all(jax.tree_util.tree_leaves(ae.trainable_mask(params,
                                                         'autoencoder')))
  # AdamW with strong weight decay: frozen leaves get exactly zero updates.
  tx = ae.masked_optimizer(optax.adamw(0.1, weight_decay=10.0), mask)
  state = tx.init(params)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(new['encoder']['w'], params['encoder']['w'])
  np.testing.assert_array_equal(new['decoder']['w'], params['decoder']['w'])
  assert float(jnp.max(jnp.abs(new['itl_1']['w'] - 1))) > 0.05


def _ssim_reference(a, b, sigma=1.5, size=31):
  """Brute-force numpy SSIM (zero-padded Gaussian window), per image."""
  x = np.arange(size) - (size - 1) / 2
  g = np.exp(-x**2 / (2 * sigma**2))
  w = np.outer(g, g) / np.sum(g)**2
  h, wd = a.shape[1:3]
  r = size // 2

  def blur(img):
    pad = np.pad(img, ((0, 0), (r, r), (r, r), (0, 0)))
    out = np.zeros_like(img)
    for i in range(h):
      for j in range(wd):
        out[:, i, j] = np.einsum('bijc,ij->bc',
                                 pad[:, i:i + size, j:j + size], w)
    return out

  c1, c2 = 0.01**2, 0.03**2
  ma, mb = blur(a), blur(b)
  va, vb, cov = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
  s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) *
                                              (va + vb + c2))
  return s.mean(axis=(1, 2, 3))


def test_ssim_matches_bruteforce():
  data = ellipse_faces(3, 2, 16)
  a = data['image'].astype(np.float64)
  b = np.clip(a + np.random.RandomState(0).normal(0, 0.1, a.shape), 0, 1)
  got = stage0.ssim(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
  np.testing.assert_allclose(got, _ssim_reference(a, b), atol=2e-4)
  np.testing.assert_allclose(stage0.ssim(jnp.asarray(a, jnp.float32),
                                         jnp.asarray(a, jnp.float32)),
                             1.0, atol=1e-5)


@pytest.mark.parametrize('with_gan', [
    False, pytest.param(True, marks=pytest.mark.slow)])
def test_stage0_trains_and_feeds_stage1(tmp_path, with_gan):
  config = autoencoder_config.get_config('tiny')
  config.loss.with_gan = with_gan
  config.num_train_steps = 4
  config.checkpoint_every = 4
  data = ellipse_faces(0, 16)
  state = stage0.train(config, tmp_path / 'ae',
                       few_shot_source({'image': data['image']}, 8),
                       eval_batches=[{'image': data['image'][:8]}])
  assert int(state.step) == 4
  fresh = stage0.create_train_state(config, jax.random.PRNGKey(config.seed))
  parts = ['encoder', 'decoder', 'disc_z'] + (['disc_img'] if with_gan else [])
  assert sorted(state.params) == sorted(parts)
  for part in parts:
    before = jax.tree_util.tree_leaves(fresh.params[part])
    after = jax.tree_util.tree_leaves(state.params[part])
    assert any(not np.array_equal(x, y) for x, y in zip(before, after)), part
  # The checkpoint initialises the PNCC predictor (stage 1).
  from pnccface.train import pncc  # pylint: disable=g-import-not-at-top
  pconfig = pncc_few_config.get_config('tiny')
  pconfig.init_from = str(tmp_path / 'ae')
  variables = pncc.init_variables(pconfig, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(
      variables['params']['encoder']['fc']['kernel'],
      state.params['encoder']['fc']['kernel'])
  np.testing.assert_array_equal(
      variables['batch_stats']['decoder']['stem_bn']['mean'],
      state.batch_stats['decoder']['stem_bn']['mean'])
