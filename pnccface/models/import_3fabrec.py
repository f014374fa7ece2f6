"""Importing 3FabRec's released autoencoder into a stage-0 workdir.

The paper starts stage 1 from 3FabRec's pre-trained adversarial autoencoder
(browatbn2/3FabRec; its README's `download_models.sh` fetches the snapshot).
A snapshot file (`<name>.mdl`) is a torch pickle whose 'state_dict' holds
the `AAE` module's parameters: `Q.*` the ResNet-18 encoder
(`networks/resnet_ae.py`), `P.*` the inverted-ResNet decoder
(`networks/invresnet.py`), plus `D_z.*` / `D.*` discriminators we do not
need. This module maps those names and layouts onto our Flax `Autoencoder`
(`pnccface.models.autoencoder`) and writes an orbax checkpoint that the PNCC
stage loads with `config.init_from` (as a stage-0 workdir).

Only `load_torch_state_dict` needs torch (`pip install -e '.[convert]'`); it
is imported there, never at module import. Everything else works on
{name: numpy array} dicts.

Layout facts (PyTorch -> Flax):
  * Conv2d weight [O, I, kh, kw] -> kernel [kh, kw, I, O].
  * ConvTranspose2d weight [I, O, kh, kw] -> kernel [kh, kw, I, O] flipped in
    both spatial axes: torch's transposed conv is the gradient of a
    correlation (it scatters with the kernel as stored), while flax's
    `ConvTranspose` (transpose_kernel=False) correlates the stride-dilated
    input with the kernel as stored; the flip makes them equal. Paddings
    (torch p=1 for 4x4/2, p=0 for the 4x4 stem) are in the model already.
  * Linear weight [O, I] -> kernel [I, O].
  * BatchNorm2d weight/bias -> scale/bias (params); running_mean/var ->
    mean/var (batch_stats); num_batches_tracked is dropped. Both use eps 1e-5.
Input normalisation: 3FabRec feeds `image - VGGFACE2_MEAN` (std 1, RGB) and
its decoder's tanh output lives in that space, so the imported model must
run with `input_normalization='3fabrec'` (`model_config`).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

import numpy as np

from pnccface.models import autoencoder as ae_lib

RESOLUTIONS = (128, 256)  # sizes of 3FabRec's released models
STATE_DICT_KEY = 'state_dict'  # csl_common/utils/nn.py `read_model`


def model_config(resolution: int = 256):
  """The `model` config block (`Autoencoder`'s fields) of 3FabRec's
  released autoencoder.

  ResNet-18 encoder (2 blocks per stage), 1 decoder block per stage
  (`DECODER_PLANES_PER_BLOCK`), width 64, z 99, VGGFace2-mean input.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  if resolution not in RESOLUTIONS:
    raise ValueError(f'3FabRec models are 128 or 256 px, got {resolution}')
  return ml_collections.ConfigDict(dict(
      resolution=resolution, base_width=64, z_dim=99, encoder_blocks=2,
      decoder_blocks=1, input_normalization=ae_lib.NORMALIZE_3FABREC))


def load_torch_state_dict(path) -> dict[str, np.ndarray]:
  """{name: float32 array} from a 3FabRec `.mdl` snapshot (needs torch)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading 3FabRec's torch snapshot needs torch: pip "
                      "install -e '.[convert]'") from e
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'no 3FabRec snapshot at {path}')
  snapshot = torch.load(path, map_location='cpu', weights_only=False)
  state = snapshot.get(STATE_DICT_KEY, snapshot) if isinstance(
      snapshot, Mapping) else None
  if not isinstance(state, Mapping):
    raise ValueError(f'{path} holds no state dict (got {type(snapshot)})')
  return {k: v.detach().cpu().numpy() for k, v in state.items()
          if hasattr(v, 'detach')}


def conv_kernel(weight) -> np.ndarray:
  """Conv2d weight [O, I, kh, kw] -> flax Conv kernel [kh, kw, I, O]."""
  return np.transpose(np.asarray(weight), (2, 3, 1, 0))


def conv_transpose_kernel(weight) -> np.ndarray:
  """ConvTranspose2d weight [I, O, kh, kw] -> flax ConvTranspose kernel
  [kh, kw, I, O], spatially flipped (see the module docstring)."""
  return np.transpose(np.asarray(weight), (2, 3, 0, 1))[::-1, ::-1]


def dense_kernel(weight) -> np.ndarray:
  """Linear weight [O, I] -> flax Dense kernel [I, O]."""
  return np.transpose(np.asarray(weight))


class _Reader:
  """Takes tensors out of a state dict by name, remembering what was used."""

  def __init__(self, state_dict: Mapping[str, Any]):
    self.state = {k: np.asarray(v, np.float32) for k, v in state_dict.items()}
    self.used = set()

  def __call__(self, name: str) -> np.ndarray:
    if name not in self.state:
      raise KeyError(f'3FabRec state dict lacks {name!r}')
    self.used.add(name)
    return self.state[name]

  def batch_norm(self, prefix: str) -> tuple[dict, dict]:
    params = {'scale': self(f'{prefix}.weight'), 'bias': self(f'{prefix}.bias')}
    stats = {'mean': self(f'{prefix}.running_mean'),
             'var': self(f'{prefix}.running_var')}
    self.used.add(f'{prefix}.num_batches_tracked')
    return params, stats


def _put(params, stats, name, layer_params, layer_stats=None):
  params[name] = layer_params
  if layer_stats is not None:
    stats[name] = layer_stats


def _first_encoder_layer(resolution: int) -> int:
  """3FabRec's name of the first encoder stage (`ResNet.__init__`): at 256 a
  stride-1 layer0 precedes layer1..layer4; below, layer1 is the first (and
  stride 1). 512 adds a `layer01` we do not model."""
  if resolution > 256:
    raise ValueError(f'3FabRec names above 256 px are not supported, got '
                     f'{resolution}')
  return 0 if resolution == 256 else 1


def _convert_encoder(read: _Reader, resolution: int, blocks: int):
  params, stats = {}, {}
  params['stem_conv'] = {'kernel': conv_kernel(read('Q.conv1.weight'))}
  _put(params, stats, 'stem_bn', *read.batch_norm('Q.bn1'))
  first = _first_encoder_layer(resolution)
  size, stage = resolution // 4, 0
  while size >= 4:
    for b in range(blocks):
      prefix = f'Q.layer{first + stage}.{b}'
      block_params, block_stats = {}, {}
      for i in (1, 2):
        block_params[f'conv{i}'] = {
            'kernel': conv_kernel(read(f'{prefix}.conv{i}.weight'))}
        _put(block_params, block_stats, f'bn{i}',
             *read.batch_norm(f'{prefix}.bn{i}'))
      if f'{prefix}.downsample.0.weight' in read.state:
        block_params['down_conv'] = {
            'kernel': conv_kernel(read(f'{prefix}.downsample.0.weight'))}
        _put(block_params, block_stats, 'down_bn',
             *read.batch_norm(f'{prefix}.downsample.1'))
      _put(params, stats, f'stage{stage}_block{b}', block_params, block_stats)
    size, stage = size // 2, stage + 1
  params['fc'] = {'kernel': dense_kernel(read('Q.fc.weight')),
                  'bias': read('Q.fc.bias')}
  return params, stats


def _convert_decoder(read: _Reader, resolution: int, blocks: int):
  params, stats = {}, {}
  params['fc'] = {'kernel': dense_kernel(read('P.fc.weight')),
                  'bias': read('P.fc.bias')}
  params['stem_conv'] = {'kernel': conv_transpose_kernel(read('P.conv1.weight'))}
  _put(params, stats, 'stem_bn', *read.batch_norm('P.bn1'))
  for k in range(1, ae_lib.num_decoder_stages(resolution) + 1):
    for b in range(blocks):
      prefix = f'P.layer{k}.{b}'
      block_params, block_stats = {}, {}
      upsample = f'{prefix}.upsample.0.weight' in read.state
      first = read(f'{prefix}.conv1.weight')
      block_params['conv1'] = {'kernel': conv_transpose_kernel(first)
                               if upsample else conv_kernel(first)}
      block_params['conv2'] = {'kernel': conv_kernel(read(f'{prefix}.conv2.weight'))}
      for i in (1, 2):
        _put(block_params, block_stats, f'bn{i}',
             *read.batch_norm(f'{prefix}.bn{i}'))
      if upsample:
        block_params['up_conv'] = {'kernel': conv_transpose_kernel(
            read(f'{prefix}.upsample.0.weight'))}
        _put(block_params, block_stats, 'up_bn',
             *read.batch_norm(f'{prefix}.upsample.1'))
      _put(params, stats, f'layers_{k - 1}_{b}', block_params, block_stats)
  params['out_conv'] = {'kernel': conv_transpose_kernel(read('P.lin.weight'))}
  return params, stats


def _check_like(converted, template, where: str) -> None:
  """Same tree and shapes as a freshly initialised model (clear errors)."""
  if set(converted) != set(template):
    raise ValueError(f'{where}: converted keys {sorted(converted)} != model '
                     f'keys {sorted(template)}')
  for key, value in template.items():
    if isinstance(value, Mapping):
      _check_like(converted[key], value, f'{where}/{key}')
    elif tuple(converted[key].shape) != tuple(value.shape):
      raise ValueError(f'{where}/{key}: 3FabRec shape {converted[key].shape} '
                       f'!= model shape {tuple(value.shape)}')


def convert_state_dict(state_dict: Mapping[str, Any], config=None,
                       strict: bool = True) -> dict:
  """3FabRec `Q.*` / `P.*` tensors -> our `Autoencoder` variables.

  Args:
    state_dict: {name: array} with 3FabRec's names (e.g. 'Q.layer0.0.conv1.
      weight', 'P.layer1.0.upsample.0.weight'), numpy or torch-converted.
    config: the `model` config the variables are for; `model_config()`
      (3FabRec at 256 px) by default.
    strict: raise when a `Q.`/`P.` tensor is left unused (a different
      architecture); discriminator (`D_z.`, `D.`) and other keys are ignored.

  Returns:
    {'params': {'encoder', 'decoder'}, 'batch_stats': {'encoder',
    'decoder'}} of numpy float32 arrays, checked against the model's shapes.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  config = model_config() if config is None else config
  resolution = int(config.resolution)
  read = _Reader(state_dict)
  enc_params, enc_stats = _convert_encoder(read, resolution,
                                           config.encoder_blocks)
  dec_params, dec_stats = _convert_decoder(read, resolution,
                                           config.decoder_blocks)
  if strict:
    left = sorted(k for k in read.state if k.startswith(('Q.', 'P.')) and
                  k not in read.used)
    if left:
      raise ValueError(f'unused 3FabRec tensors (another architecture?): '
                       f'{left[:8]}{"..." if len(left) > 8 else ""}')
  variables = {'params': {'encoder': enc_params, 'decoder': dec_params},
               'batch_stats': {'encoder': enc_stats, 'decoder': dec_stats}}
  model = ae_lib.Autoencoder(**config)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, resolution, resolution, 3)),
      train=False))
  for collection in ('params', 'batch_stats'):
    _check_like(variables[collection], dict(shapes[collection]), collection)
  return variables


def write_workdir(variables: Mapping[str, Any], workdir, config=None,
                  source: str = '') -> pathlib.Path:
  """Writes `variables` as a stage-0 workdir (orbax checkpoint at step 0).

  `pnccface.train.common.load_variables(workdir)` reads it back, so a PNCC
  config with `init_from=workdir` (and the same `model` block, e.g.
  `model_config()`) starts from it. Also writes `config.json` with the model
  block and the source file, for the record.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from pnccface.train import common  # pylint: disable=g-import-not-at-top
  config = model_config() if config is None else config
  workdir = pathlib.Path(workdir).resolve()
  directory = workdir / common.CHECKPOINT_SUBDIR
  if directory.exists() and any(directory.iterdir()):
    raise FileExistsError(f'{directory} already holds a checkpoint')
  manager = ocp.CheckpointManager(
      os.fspath(directory), options=ocp.CheckpointManagerOptions(create=True))
  try:
    manager.save(0, args=ocp.args.StandardSave({
        'step': np.int32(0), 'params': variables['params'],
        'batch_stats': variables['batch_stats']}), force=True)
    manager.wait_until_finished()
  finally:
    manager.close()
  (workdir / 'config.json').write_text(json.dumps(
      {'model': config.to_dict(), 'imported_from': str(source)}, indent=2))
  return workdir


def import_snapshot(snapshot_path, workdir, resolution: int = 256
                    ) -> pathlib.Path:
  """3FabRec `.mdl` -> stage-0 workdir (needs torch); returns the workdir."""
  config = model_config(resolution)
  variables = convert_state_dict(load_torch_state_dict(snapshot_path), config)
  return write_workdir(variables, workdir, config, source=snapshot_path)
