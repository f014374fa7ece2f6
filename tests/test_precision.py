"""The conv nets in bfloat16 (`model.dtype`, pnccface/models/precision.py):
close to float32, float32 params and outputs, and they train."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnccface.models import autoencoder as ae_model
from pnccface.models import mofa as mofa_model
from pnccface.models import precision
from pnccface.train import common
from pnccface.train import mofa as mofa_train
from pnccface.train import pncc as pncc_train
from configs import mofa as mofa_config
from configs import pncc_few as pncc_few_config
from tests.conftest import ellipse_faces, rendered_faces, tiny_face_model

# bfloat16 keeps 8 significant bits: each rounding of a layer's inputs,
# weights or output is off by at most 2**-9 relative, 2**-8 with the
# products' accumulation. Summed over the L weight layers on a path (a
# worst case: rounding errors of random sign mostly cancel), an output's
# relative error stays below L * 2**-8.
BF16_EPS = 2.0**-8
TINY_AE = dict(resolution=32, base_width=8, z_dim=16, encoder_blocks=1)
TINY_ALEXNET = dict(conv_features=(16, 32, 32, 32, 32),
                    kernel_sizes=(5, 3, 3, 3, 3), strides=(2, 1, 1, 1, 1),
                    dense_features=(128,))


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape),
                     jnp.float32)


# name: (model in float32, input shape, train); train=True normalises with
# batch statistics (realistic activations; BN statistics in float32).
MODELS = {
    'autoencoder': (ae_model.Autoencoder(**TINY_AE), (4, 32, 32, 3), True),
    'pncc_predictor': (ae_model.PNCCPredictor(**TINY_AE, pncc_resolution=32),
                       (4, 32, 32, 3), True),
    'image_discriminator': (ae_model.ImageDiscriminator(ndf=8),
                            (4, 32, 32, 3), True),
    # Inference mode: dropout would need an rng and differ between runs.
    'latent_discriminator': (ae_model.LatentDiscriminator(hidden=32),
                             (4, 16), False),
    'mofa_alexnet': (mofa_model.MoFaEncoder(
        8, 4, 8, backbone_kwargs=TINY_ALEXNET), (4, 64, 64, 6), True),
    'mofa_resnet_batchnorm': (mofa_model.MoFaEncoder(
        8, 4, 8, backbone='resnet', norm='batch',
        backbone_kwargs=dict(width=8, stage_blocks=(1, 1, 1, 1))),
                              (4, 64, 64, 3), True),
}


def _apply(model, variables, x, train):
  # A closure, not static_argnums: MoFaEncoder's backbone_kwargs (a dict)
  # make it unhashable.
  return jax.jit(lambda v, x: model.apply(
      v, x, train=train, mutable=['batch_stats'])[0])(variables, x)


def _relative_error(a, b) -> float:
  return float(jnp.linalg.norm(jnp.ravel(a - b)) /
               jnp.maximum(jnp.linalg.norm(jnp.ravel(b)), 1e-30))


@pytest.mark.parametrize('name', sorted(MODELS))
def test_bfloat16_forward_is_close_to_float32(name):
  model, shape, train = MODELS[name]
  bf16 = model.clone(dtype=precision.BFLOAT16)
  x = _images(shape)
  variables = jax.jit(lambda k: model.init(k, x, train=False))(
      jax.random.PRNGKey(0))
  # Same variables in both precisions: bfloat16 changes no parameter.
  bf16_shapes = jax.eval_shape(lambda: bf16.init(jax.random.PRNGKey(0), x,
                                                 train=False))
  assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(bf16_shapes)} == {
      jnp.dtype(jnp.float32)}
  assert (jax.tree_util.tree_structure(bf16_shapes) ==
          jax.tree_util.tree_structure(variables))
  want = _apply(model, variables, x, train)
  got = _apply(bf16, variables, x, train)
  num_layers = sum(1 for path, _ in
                   jax.tree_util.tree_leaves_with_path(variables['params'])
                   if path[-1].key == 'kernel')
  errors = []
  for g, w in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(want)):
    assert g.dtype == jnp.float32  # what leaves the net is float32
    errors.append(_relative_error(g, w))
  assert max(errors) <= num_layers * BF16_EPS, (errors, num_layers)
  assert max(errors) > 2.0**-20, errors  # bfloat16 was in effect


def test_unknown_dtype_is_named():
  with pytest.raises(ValueError, match=r"'float16'.*bfloat16"):
    jax.eval_shape(lambda: ae_model.Autoencoder(**TINY_AE, dtype='float16')
                   .init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                         train=False))


def test_stage0_weights_into_a_bfloat16_predictor_stay_float32():
  # As import_3fabrec / init_from deliver them: numpy arrays (here float64,
  # so a cast to anything but the target's float32 would show).
  image = jnp.zeros((1, 32, 32, 3))
  ae_shapes = jax.eval_shape(lambda: ae_model.Autoencoder(**TINY_AE).init(
      jax.random.PRNGKey(0), image, train=False))
  ae_vars = jax.tree_util.tree_map(
      lambda s: np.full(s.shape, 0.5, np.float64), ae_shapes)
  predictor = ae_model.PNCCPredictor(**TINY_AE, pncc_resolution=32,
                                     dtype=precision.BFLOAT16)
  pncc_vars = jax.tree_util.tree_map(
      lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(
          lambda: predictor.init(jax.random.PRNGKey(0), image, train=False)))
  out = ae_model.pncc_variables_from_autoencoder(ae_vars, pncc_vars)
  leaves = jax.tree_util.tree_leaves(out)
  assert {np.asarray(x).dtype for x in leaves} == {np.dtype(np.float32)}
  assert np.all(np.asarray(out['params']['encoder']['fc']['kernel']) == 0.5)


# A drop in the loss over a few steps well beyond what bfloat16's rounding of
# the nets' outputs (~BF16_EPS relative) could make.
_LEARNED = 4 * BF16_EPS


def _losses(step, state, batch, extra, num_steps):
  """`num_steps` steps of `step`, pmapped on one device, on one batch."""
  devices = jax.local_devices()[:1]
  step = jax.pmap(step, axis_name=common.AXIS, devices=devices)
  state = common.replicate(state, devices)
  batch = {k: v[None] for k, v in batch.items()}
  extra = tuple(common.replicate(x, devices) for x in extra)
  losses = []
  for _ in range(num_steps):
    state, metrics = step(state, batch, *extra)
    losses.append(float(common.unreplicate(metrics)['loss']))
  return state, losses


def test_pncc_train_step_in_bfloat16_lowers_the_loss():
  config = pncc_few_config.get_config('tiny')
  config.model.dtype = precision.BFLOAT16
  state = pncc_train.create_train_state(config, jax.random.PRNGKey(0))
  state, losses = _losses(pncc_train.make_train_step(config), state,
                          ellipse_faces(0, 8), (), 5)
  assert np.all(np.isfinite(losses)), losses
  assert losses[-1] < (1 - _LEARNED) * losses[0], losses
  params = jax.tree_util.tree_leaves(state.params)
  assert {x.dtype for x in params} == {jnp.dtype(jnp.float32)}


def test_mofa_train_step_in_bfloat16_lowers_the_loss():
  config = mofa_config.get_config('tiny')
  config.model.dtype = precision.BFLOAT16
  config.image_size = 32
  face_model = mofa_train.face_model_for(config, tiny_face_model())
  state = mofa_train.create_train_state(config, face_model,
                                        jax.random.PRNGKey(0))
  state, losses = _losses(mofa_train.make_train_step(config, face_model),
                          state, rendered_faces(face_model, 0, 8, config.image_size),
                          (face_model,), 5)
  assert np.all(np.isfinite(losses)), losses
  assert losses[-1] < (1 - _LEARNED) * losses[0], losses
  params = jax.tree_util.tree_leaves(state.params)
  assert {x.dtype for x in params} == {jnp.dtype(jnp.float32)}
