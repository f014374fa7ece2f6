"""Tests of the MoFa encoder, the model-based decoder and the MoFa losses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnccface.data import synthesis
from pnccface.models import mofa as mofa_model
from pnccface.train import mofa as mofa_train
from tests.conftest import tiny_face_model, true_face_code

SIZE = 64
TINY_ALEXNET = dict(conv_features=(8, 16, 16, 16, 16),
                    kernel_sizes=(5, 3, 3, 3, 3), strides=(2, 1, 1, 1, 1),
                    pool_after=(0, 1, 4), dense_features=(32,))

DECODE = jax.jit(mofa_model.decode)


@pytest.fixture(scope='module')
def face_model():
  return tiny_face_model()


def _encoder(face_model, backbone='alexnet', **kwargs):
  backbone_kwargs = (TINY_ALEXNET if backbone == 'alexnet' else
                     dict(width=8, stage_blocks=(1, 1)))
  return mofa_model.MoFaEncoder(face_model.num_shape, face_model.num_expression,
                          face_model.num_albedo, backbone=backbone,
                          backbone_kwargs=backbone_kwargs, **kwargs)


@pytest.mark.parametrize('backbone,norm', [('alexnet', 'none'),
                                           ('resnet', 'batch'),
                                           ('resnet', 'group')])
@pytest.mark.parametrize('channels', [3, 6])
def test_encoder_output_shapes(face_model, backbone, norm, channels):
  encoder = _encoder(face_model, backbone, norm=norm)
  x = jnp.zeros((2, SIZE, SIZE, channels))
  # Shapes only: abstract evaluation keeps this test fast.
  variables = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), x)
  kernels = jax.tree_util.tree_leaves(variables['params']['trunk'])
  assert any(k.ndim == 4 and k.shape[2] == channels for k in kernels)
  code = jax.eval_shape(encoder.apply, variables, x)
  assert code.shape.shape == (2, face_model.num_shape)
  assert code.expression.shape == (2, face_model.num_expression)
  assert code.albedo.shape == (2, face_model.num_albedo)
  assert code.angles.shape == (2, 3)
  assert code.centre.shape == (2, 2)
  assert code.log_scale.shape == (2,)
  assert code.sh.shape == (2, 27)


def test_split_code_bounds_angles_and_checks_size():
  raw = jnp.full((1, mofa_model.code_size(2, 1, 0)), 100.0)
  code = mofa_model.split_code(raw, 2, 1, 0, max_angle=math.pi / 2)
  np.testing.assert_allclose(code.angles, math.pi / 2, rtol=1e-6)
  with pytest.raises(ValueError, match='entries'):
    mofa_model.split_code(raw[:, 1:], 2, 1, 0)


def test_initial_prediction_is_frontal_centred_mean_face(face_model):
  encoder = _encoder(face_model)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(size=(3, SIZE, SIZE, 3)), jnp.float32)
  variables = jax.jit(encoder.init)(jax.random.PRNGKey(1), images)
  code = jax.jit(encoder.apply)(variables, images)
  recon = DECODE(code, face_model, images)
  # Independent reference: the mean shape, unrotated, scaled so that its
  # landmark box spans 0.525 of the image, landmark centre at the image centre.
  mean = np.asarray(face_model.mean_shape)
  lms = mean[np.asarray(face_model.landmark_indices)]
  s0 = 0.525 * SIZE / np.ptp(lms[:, 1])
  centre = lms.mean(axis=0)
  expect_x = SIZE / 2 + s0 * (mean[:, 0] - centre[0])
  expect_y = SIZE / 2 - s0 * (mean[:, 1] - centre[1])
  for b in range(3):
    np.testing.assert_allclose(recon.vertices_screen[b, :, 0], expect_x,
                               atol=0.3)
    np.testing.assert_allclose(recon.vertices_screen[b, :, 1], expect_y,
                               atol=0.3)
  np.testing.assert_allclose(recon.landmarks_2d.mean(axis=1), SIZE / 2,
                             atol=0.1)
  for angle in (recon.yaw_degrees, recon.pitch_degrees, recon.roll_degrees):
    np.testing.assert_allclose(angle, 0.0, atol=0.5)
  # Ambient white light: the rendered face is the mean albedo.
  np.testing.assert_allclose(code.sh[:, 0], code.sh[0, 0], rtol=1e-2)
  assert float(recon.mask.mean()) > 0.1


def test_decoder_reproduces_synthetic_faces(face_model):
  rng = np.random.default_rng(3)
  params = synthesis.sample_face_params(rng, face_model, 4, SIZE)
  background = synthesis.random_backgrounds(rng, 4, SIZE, SIZE)
  faces = synthesis.render_faces(face_model, params, jnp.asarray(background),
                                 SIZE)
  code = true_face_code(face_model, params, SIZE)
  recon = DECODE(code, face_model, jnp.asarray(background))
  np.testing.assert_allclose(recon.vertices_screen, faces.vertices_screen,
                             atol=2e-3 * SIZE)
  np.testing.assert_allclose(recon.pose_para, params.pose_para, rtol=1e-4,
                             atol=1e-2)
  np.testing.assert_allclose(recon.landmarks_2d, faces.landmarks_2d,
                             atol=2e-3 * SIZE)
  np.testing.assert_allclose(recon.yaw_degrees,
                             np.degrees(params.pose_para[:, 1]), atol=1e-2)
  rendered = np.clip(np.asarray(recon.image), 0, 1)
  # Identical up to the rare pixel whose visibility flips with round-off.
  close = np.abs(rendered - np.asarray(faces.image)).max(axis=-1) < 1e-3
  assert close.mean() > 0.995
  photo, count = mofa_train.photometric_terms(
      jnp.asarray(faces.image), jnp.asarray(faces.image), recon.mask)
  assert float(photo) == 0.0 and float(count) == float(recon.mask.sum())


def test_decoder_gradients_reach_encoder(face_model):
  encoder = _encoder(face_model)
  rng = np.random.default_rng(4)
  params = synthesis.sample_face_params(rng, face_model, 2, SIZE)
  faces = synthesis.render_faces(
      face_model, params,
      jnp.asarray(synthesis.random_backgrounds(rng, 2, SIZE, SIZE)), SIZE)
  batch = {'image': faces.image, 'landmarks_2d': faces.landmarks_2d,
           'landmark_weights': jnp.ones((2, 68))}
  variables = jax.jit(encoder.init)(jax.random.PRNGKey(0), faces.image)
  loss_config = dict(w_photo=1.0, w_landmark=30.0, w_shape=1e-4,
                     w_expression=1e-4, w_albedo=1e-4)

  class Cfg(dict):
    __getattr__ = dict.__getitem__

  @jax.jit
  def loss_fn(p):
    code = encoder.apply({'params': p}, faces.image)
    recon = mofa_model.decode(code, face_model, faces.image)
    return mofa_train.mofa_loss(recon, code, batch, Cfg(loss_config))[0]

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables['params'])
  assert np.isfinite(float(loss))
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  trunk = jax.tree_util.tree_leaves(grads['trunk'])
  assert all(float(jnp.abs(g).max()) > 0 for g in trunk)
  # Direction check: a small step along -grad lowers the loss.
  stepped = jax.tree_util.tree_map(lambda p, g: p - 1e-4 * g / (
      jnp.linalg.norm(g) + 1e-12), variables['params'], grads)
  assert float(loss_fn(stepped)) < float(loss)


def test_photometric_and_landmark_terms_match_numpy():
  rng = np.random.default_rng(5)
  a, b = rng.uniform(size=(2, 2, 5, 5, 3))
  mask = (rng.uniform(size=(2, 5, 5, 1)) > 0.5).astype(np.float32)
  total, count = mofa_train.photometric_terms(a, b, mask, 'l2')
  d2 = ((a - b)**2).sum(-1)
  np.testing.assert_allclose(total, (d2 * mask[..., 0]).sum(), rtol=1e-5)
  assert float(count) == mask.sum()
  total, _ = mofa_train.photometric_terms(a, b, mask, 'l21')
  np.testing.assert_allclose(total, (np.sqrt(d2) * mask[..., 0]).sum(),
                             rtol=1e-4)
  pred, target = rng.uniform(0, 64, size=(2, 3, 68, 2))
  weights = (rng.uniform(size=(3, 68)) > 0.3).astype(np.float32)
  sq, dist, n = mofa_train.landmark_terms(pred, target, weights, 64)
  dd = np.linalg.norm(pred - target, axis=-1)
  np.testing.assert_allclose(sq, (weights * dd**2).sum() / 64**2, rtol=1e-5)
  np.testing.assert_allclose(dist, (weights * dd).sum() / 64, rtol=1e-5)
  assert float(n) == weights.sum()
  with pytest.raises(ValueError, match='photo_norm'):
    mofa_train.photometric_terms(a, b, mask, 'l1')


def test_celeba_eye_centres_match_the_mean_of_six_eye_landmarks():
  pred = np.zeros((1, 68, 2), np.float32)
  pred[0, 36:42] = [[8, 18], [12, 22], [10, 20], [10, 20], [9, 20], [11, 20]]
  pred[0, 42:48] = [[30, 20]] * 6
  weights = np.zeros((1, 68), np.float32)
  weights[0, 30] = 1.0  # the nose tip, already on target
  batch = {'landmarks_2d': np.zeros((1, 68, 2), np.float32),
           'landmark_weights': weights}
  assert mofa_train.landmark_targets(pred, batch)[0] is pred  # no eyes: as is
  batch['eye_centres'] = np.array([[[12, 20], [30, 24]]], np.float32)
  sq, dist, n = mofa_train.landmark_terms(
      *mofa_train.landmark_targets(pred, batch), 64)
  # Eye means (10, 20) and (30, 20) against (12, 20) and (30, 24).
  np.testing.assert_allclose(sq, (2**2 + 4**2) / 64**2, rtol=1e-5)
  np.testing.assert_allclose(dist, (2 + 4) / 64, rtol=1e-5)
  assert float(n) == 3


def test_encoder_input_stacks_pncc():
  image = np.zeros((1, 4, 4, 3), np.float32)
  pncc = np.ones((1, 4, 4, 3), np.float32)
  x = mofa_model.encoder_input(image, pncc)
  assert x.shape == (1, 4, 4, 6)
  np.testing.assert_array_equal(x[..., 3:], 1.0)
  with pytest.raises(ValueError, match='pncc'):
    mofa_model.encoder_input(image, pncc[:, :2])
