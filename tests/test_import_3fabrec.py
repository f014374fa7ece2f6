"""Importing 3FabRec's autoencoder: names, layouts, parity with torch's ops.

The state dicts here are random, with 3FabRec's key names and shapes
(`networks/resnet_ae.py`, `networks/invresnet.py`), built from that
architecture independently of the converter.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnccface.models import autoencoder as ae_lib
from pnccface.models import import_3fabrec
from pnccface.train import common
from pnccface.train import pncc
from configs import pncc_few as pncc_few_config


def _bn(rng, prefix, channels, out):
  out[f'{prefix}.weight'] = rng.uniform(0.4, 0.9, channels)  # O(1) activations
  out[f'{prefix}.bias'] = rng.normal(0, 0.1, channels)
  out[f'{prefix}.running_mean'] = rng.normal(0, 0.1, channels)
  out[f'{prefix}.running_var'] = rng.uniform(0.5, 1.5, channels)
  out[f'{prefix}.num_batches_tracked'] = np.array(100)


def _he(rng, shape, fan_in):
  return rng.normal(0, np.sqrt(2.0 / fan_in), shape)


def fabrec_state_dict(resolution=256, width=64, z_dim=99, seed=0):
  """Random tensors named and shaped as 3FabRec's AAE (Q, P, D_z)."""
  rng = np.random.default_rng(seed)
  sd = {}
  sd['Q.conv1.weight'] = _he(rng, (width, 3, 7, 7), 3 * 49)
  _bn(rng, 'Q.bn1', width, sd)
  # ResNet-18: layer0 (256 px only), layer1 .. layer4; each stage's width
  # by its spatial size (64 @ >= 32 px, 128 @ 16, 256 @ 8, 512 @ 4 for
  # w = 64). Sizes below 128 (tests only) keep the stages that reach 4x4,
  # named as 3FabRec's sub-256 branch (layer1 first, at stride 1).
  by_size = lambda size: width * {4: 8, 8: 4, 16: 2}.get(size, 1)
  sizes = [resolution // 4 // 2**i for i in range(int(np.log2(resolution)) - 3)]
  first = 0 if resolution == 256 else 1
  layers = [(first + i, by_size(size), 1 if i == 0 else 2)
            for i, size in enumerate(sizes)]
  inplanes = width
  for index, planes, stride in layers:
    for b in range(2):
      p = f'Q.layer{index}.{b}'
      cin = inplanes if b == 0 else planes
      sd[f'{p}.conv1.weight'] = _he(rng, (planes, cin, 3, 3), 9 * cin)
      _bn(rng, f'{p}.bn1', planes, sd)
      sd[f'{p}.conv2.weight'] = _he(rng, (planes, planes, 3, 3), 9 * planes)
      _bn(rng, f'{p}.bn2', planes, sd)
      if b == 0 and (stride != 1 or cin != planes):
        sd[f'{p}.downsample.0.weight'] = _he(rng, (planes, cin, 1, 1), cin)
        _bn(rng, f'{p}.downsample.1', planes, sd)
    inplanes = planes
  sd['Q.fc.weight'] = rng.normal(0, 1 / np.sqrt(8 * width), (z_dim, 8 * width))
  sd['Q.fc.bias'] = rng.normal(0, 0.1, z_dim)
  # InvResNet: fc, 4x4 transposed stem, layer1..layer4 (+ layer5 at 256).
  sd['P.fc.weight'] = rng.normal(0, 1 / np.sqrt(z_dim), (8 * width, z_dim))
  sd['P.fc.bias'] = rng.normal(0, 0.1, 8 * width)
  sd['P.conv1.weight'] = _he(rng, (8 * width, 8 * width, 4, 4), 8 * width)
  _bn(rng, 'P.bn1', 8 * width, sd)
  inplanes = 8 * width
  planes_per_layer = [by_size(8 * 2**k)
                      for k in range(int(np.log2(resolution)) - 3)]
  for k, planes in enumerate(planes_per_layer, start=1):
    p = f'P.layer{k}.0'
    sd[f'{p}.conv1.weight'] = _he(rng, (inplanes, planes, 4, 4), 4 * inplanes)
    _bn(rng, f'{p}.bn1', planes, sd)
    sd[f'{p}.conv2.weight'] = _he(rng, (planes, planes, 3, 3), 9 * planes)
    _bn(rng, f'{p}.bn2', planes, sd)
    sd[f'{p}.upsample.0.weight'] = _he(rng, (inplanes, planes, 4, 4),
                                       4 * inplanes)
    _bn(rng, f'{p}.upsample.1', planes, sd)
    inplanes = planes
  sd['P.lin.weight'] = _he(rng, (inplanes, 3, 4, 4), 4 * inplanes) * 0.3
  sd['D_z.lin1.weight'] = rng.normal(size=(1000, z_dim))  # ignored
  return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def _config(resolution, width, z_dim):
  """3FabRec's layout at a small size (names as its sub-256 models)."""
  config = import_3fabrec.model_config()
  config.resolution = resolution
  config.base_width, config.z_dim = width, z_dim
  return config


def torch_conv_transpose_reference(x, weight, stride, padding):
  """PyTorch's ConvTranspose2d by its definition (scatter), NCHW numpy."""
  batch, _, h, w = x.shape
  _, cout, k, _ = weight.shape
  full = np.zeros((batch, cout, (h - 1) * stride + k, (w - 1) * stride + k))
  for i in range(h):
    for j in range(w):
      full[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += (
          np.einsum('bi,iokl->bokl', x[:, :, i, j], weight))
  return full[:, :, padding:full.shape[2] - padding,
              padding:full.shape[3] - padding]


def test_transposed_conv_layout_matches_torch_definition():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
  weight = rng.normal(size=(5, 6, 4, 4)).astype(np.float32)
  expected = torch_conv_transpose_reference(x, weight, 2, 1)
  layer = ae_lib.nn.ConvTranspose(6, (4, 4), (2, 2),
                                  padding=ae_lib._UP_PADDING, use_bias=False)
  out = layer.apply(
      {'params': {'kernel': import_3fabrec.conv_transpose_kernel(weight)}},
      jnp.transpose(x, (0, 2, 3, 1)))
  assert out.shape == (2, 6, 8, 6)
  np.testing.assert_allclose(np.transpose(out, (0, 3, 1, 2)), expected,
                             atol=1e-4)


def test_converted_workdir_is_a_pncc_init_from(tmp_path):
  config = _config(32, 8, 16)
  state = fabrec_state_dict(32, 8, 16)
  variables = import_3fabrec.convert_state_dict(state, config)
  np.testing.assert_array_equal(
      variables['params']['encoder']['stem_conv']['kernel'],
      np.transpose(state['Q.conv1.weight'], (2, 3, 1, 0)))
  np.testing.assert_array_equal(
      variables['batch_stats']['decoder']['layers_1_0']['up_bn']['var'],
      state['P.layer2.0.upsample.1.running_var'])
  workdir = import_3fabrec.write_workdir(variables, tmp_path / 'ae', config)
  pncc_config = pncc_few_config.get_config('tiny')
  pncc_config.model.update(config)  # the imported autoencoder's sizes
  pncc_config.init_from = str(workdir)
  loaded = pncc.init_variables(pncc_config, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(
      loaded['params']['decoder']['layers_1_0']['conv1']['kernel'],
      variables['params']['decoder']['layers_1_0']['conv1']['kernel'])
  np.testing.assert_array_equal(
      loaded['batch_stats']['encoder']['stage1_block0']['down_bn']['mean'],
      state['Q.layer2.0.downsample.1.running_mean'])
  assert common.load_variables(workdir)['step'] == 0
  with pytest.raises(FileExistsError):
    import_3fabrec.write_workdir(variables, workdir, config)


def test_missing_or_extra_tensors_are_named():
  config = _config(32, 8, 16)
  state = fabrec_state_dict(32, 8, 16)
  with pytest.raises(KeyError, match='Q.layer2.1.bn2.running_var'):
    import_3fabrec.convert_state_dict(
        {k: v for k, v in state.items()
         if k != 'Q.layer2.1.bn2.running_var'}, config)
  with pytest.raises(ValueError, match='128 or 256'):
    import_3fabrec.model_config(64)
  with pytest.raises(ValueError, match='P.layer9.0.conv1.weight'):
    import_3fabrec.convert_state_dict(
        state | {'P.layer9.0.conv1.weight': np.zeros(3)}, config)
  with pytest.raises(ValueError, match='z_dim|shape'):
    import_3fabrec.convert_state_dict(state, _config(32, 8, 17))


# ----------------------------------------------------------------------------
# Parity with torch's own ops (skipped without torch).


def _torch_forward(sd, image_nchw, resolution):
  """3FabRec's Q then P (eval mode), written with torch.nn.functional."""
  torch = pytest.importorskip('torch')
  f = torch.nn.functional
  t = {k: torch.from_numpy(v) for k, v in sd.items()}

  def bn(x, p):
    return f.batch_norm(x, t[f'{p}.running_mean'], t[f'{p}.running_var'],
                        t[f'{p}.weight'], t[f'{p}.bias'], training=False,
                        eps=1e-5)

  x = torch.from_numpy(image_nchw)
  x = f.relu(bn(f.conv2d(x, t['Q.conv1.weight'], stride=2, padding=3),
                'Q.bn1'))
  x = f.max_pool2d(x, 3, 2, 1)
  for index in ([0] if resolution == 256 else []) + [1, 2, 3, 4]:
    for b in range(2):
      p = f'Q.layer{index}.{b}'
      stride = 2 if b == 0 and f'{p}.downsample.0.weight' in t and (
          index > 1 or resolution == 256 and index == 1) else 1
      y = f.relu(bn(f.conv2d(x, t[f'{p}.conv1.weight'], stride=stride,
                             padding=1), f'{p}.bn1'))
      y = bn(f.conv2d(y, t[f'{p}.conv2.weight'], padding=1), f'{p}.bn2')
      if f'{p}.downsample.0.weight' in t:
        x = bn(f.conv2d(x, t[f'{p}.downsample.0.weight'], stride=stride),
               f'{p}.downsample.1')
      x = f.relu(x + y)
  z = f.linear(x.mean(dim=(2, 3)), t['Q.fc.weight'], t['Q.fc.bias'])
  x = f.linear(z, t['P.fc.weight'], t['P.fc.bias'])[:, :, None, None]
  x = f.relu(bn(f.conv_transpose2d(x, t['P.conv1.weight']), 'P.bn1'))
  for k in range(1, 6 if resolution == 256 else 5):
    p = f'P.layer{k}.0'
    y = f.relu(bn(f.conv_transpose2d(x, t[f'{p}.conv1.weight'], stride=2,
                                     padding=1), f'{p}.bn1'))
    y = bn(f.conv2d(y, t[f'{p}.conv2.weight'], padding=1), f'{p}.bn2')
    x = f.relu(y + bn(f.conv_transpose2d(
        x, t[f'{p}.upsample.0.weight'], stride=2, padding=1),
                      f'{p}.upsample.1'))
  out = torch.tanh(f.conv_transpose2d(x, t['P.lin.weight'], stride=2,
                                      padding=1))
  return z.numpy(), out.numpy()


@pytest.mark.parametrize('resolution', [
    pytest.param(256, marks=pytest.mark.slow), 128])
def test_parity_with_torch(resolution):
  pytest.importorskip('torch')
  config = import_3fabrec.model_config(resolution)  # real 3FabRec sizes
  state = fabrec_state_dict(resolution)
  variables = import_3fabrec.convert_state_dict(state, config)
  image = np.random.default_rng(2).uniform(
      size=(2, resolution, resolution, 3)).astype(np.float32)
  mean = np.asarray(ae_lib.VGGFACE2_MEAN, np.float32)
  # 3FabRec's input: image - VGGFace2 mean (std 1), NCHW.
  z_ref, tanh_ref = _torch_forward(
      state, np.transpose(image - mean, (0, 3, 1, 2)).copy(), resolution)
  model = ae_lib.Autoencoder(**config)
  recon, z = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, image)
  assert np.abs(z_ref).max() > 0.1 and np.abs(tanh_ref).std() > 0.05
  np.testing.assert_allclose(z, z_ref, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(recon) - mean,
                             np.transpose(tanh_ref, (0, 2, 3, 1)), atol=1e-4)


def test_3fabrec_normalisation_is_an_input_affine_map():
  """'3fabrec' sees image - mean where 'symmetric' sees 2 image - 1."""
  image = np.random.default_rng(5).uniform(size=(2, 16, 16, 3)).astype(
      np.float32)
  mean = np.asarray(ae_lib.VGGFACE2_MEAN, np.float32)
  np.testing.assert_allclose(
      ae_lib.normalize_image(image, '3fabrec'), image - mean)
  np.testing.assert_allclose(ae_lib.image_from_tanh(
      ae_lib.normalize_image(image, '3fabrec'), '3fabrec'), image, atol=1e-6)
  fabrec = ae_lib.Encoder(16, 4, 5, 1, input_normalization='3fabrec')
  symmetric = ae_lib.Encoder(16, 4, 5, 1)
  variables = jax.jit(lambda k: fabrec.init(k, image, train=False))(
      jax.random.PRNGKey(0))
  # 2 y - 1 = image - mean  <=>  y = (image - mean + 1) / 2.
  z_fabrec, z_symmetric = jax.jit(lambda v: (
      fabrec.apply(v, image, train=False)[0],
      symmetric.apply(v, (image - mean + 1) / 2, train=False)[0]))(variables)
  np.testing.assert_allclose(z_fabrec, z_symmetric, atol=1e-5)
  with pytest.raises(ValueError, match='input_normalization'):
    ae_lib.normalize_image(image, 'imagenet')


@pytest.mark.slow  # writes 3FabRec's 22M parameters
def test_import_snapshot_reads_a_torch_pickle(tmp_path):
  torch = pytest.importorskip('torch')
  state = fabrec_state_dict(128, seed=3)
  torch.save({'state_dict': {k: torch.from_numpy(v) for k, v in
                             state.items()}, 'arch': 'AAE'},
             tmp_path / 'saae.mdl')
  workdir = import_3fabrec.import_snapshot(tmp_path / 'saae.mdl',
                                           tmp_path / 'ae', resolution=128)
  loaded = common.load_variables(workdir)
  np.testing.assert_array_equal(
      loaded['params']['encoder']['fc']['kernel'], state['Q.fc.weight'].T)
  with pytest.raises(FileNotFoundError, match='no 3FabRec snapshot'):
    import_3fabrec.load_torch_state_dict(tmp_path / 'absent.mdl')
