"""The 3FabRec face autoencoder, its discriminators, and the PNCC predictor.

Our own Flax linen version of 3FabRec's networks (browatbn2/3FabRec,
`networks/resnet_ae.py`, `networks/invresnet.py`, `networks/aae.py`,
`networks/archs.py`). R = `resolution` (a power of two >= 16), w =
`base_width`.

Images at this module's boundary are float32 [B, H, W, 3] in [0, 1] (NHWC);
the networks see them through `normalize_image` ('symmetric' 2 x - 1, or
'3fabrec' x - VGGFace2 mean, which weights imported from 3FabRec need) and
the decoder's tanh is mapped back by `image_from_tanh`.

  Encoder:       [B, R, R, 3] -> z [B, z_dim], feature maps {s: [B, s, s,
                 stage_width(w, s)]} for s = R/2, R/4, ..., 4.
  Decoder:       z [B, z_dim] -> [B, R, R, 3]; stage layer_k is at 4 * 2**k.
  Autoencoder:   [B, R, R, 3] -> (reconstruction [B, R, R, 3], z).
  PNCCPredictor: [B, R, R, 3] -> PNCC [B, O, O, 3] in [0, 1], O =
                 `pncc_resolution`.

Parameter names (top-level subtrees):
  Autoencoder:   'encoder', 'decoder'
  PNCCPredictor: 'encoder', 'decoder', 'itl_1'..'itl_M', 'skip_1'.., 'pncc_out'
Batch norm lives only in 'encoder' and 'decoder' (and the image
discriminator).

Every module's `dtype` ('float32' or 'bfloat16', `precision`) is its
compute dtype; parameters and batch-norm statistics stay float32, and the
outputs above (z, images, PNCC, logits) are float32 whatever `dtype`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from pnccface.models import precision

Array = jnp.ndarray
PyTree = Any

NORMALIZE_SYMMETRIC = 'symmetric'  # 2 x - 1
NORMALIZE_3FABREC = '3fabrec'      # x - VGGFace2 mean, std 1
INPUT_NORMALIZATIONS = (NORMALIZE_SYMMETRIC, NORMALIZE_3FABREC)
# 3FabRec's per-channel (RGB) VGGFace(2) mean, csl_common/utils/transforms.py.
VGGFACE2_MEAN = (0.518, 0.418, 0.361)


def _check_normalization(mode: str) -> None:
  if mode not in INPUT_NORMALIZATIONS:
    raise ValueError(f'unknown input_normalization {mode!r}; use one of '
                     f'{INPUT_NORMALIZATIONS}')


def normalize_image(image: Array, mode: str = NORMALIZE_SYMMETRIC) -> Array:
  """[..., 3] image in [0, 1] -> the networks' input space."""
  _check_normalization(mode)
  if mode == NORMALIZE_3FABREC:
    # 3FabRec's input: image - mean, std 1 (csl_common/utils/transforms.py
    # `Normalize`).
    return image - jnp.asarray(VGGFACE2_MEAN, image.dtype)
  return 2.0 * image - 1.0


def image_from_tanh(t: Array, mode: str = NORMALIZE_SYMMETRIC) -> Array:
  """Decoder tanh output [..., 3] -> image units (inverse of
  `normalize_image`)."""
  _check_normalization(mode)
  if mode == NORMALIZE_3FABREC:
    # May leave [0, 1] by up to the mean, as 3FabRec's denormalised output.
    return t + jnp.asarray(VGGFACE2_MEAN, t.dtype)
  return 0.5 * (t + 1.0)


# PyTorch ConvTranspose2d(kernel 4, stride 2, padding 1) doubles the size; in
# lax's transposed-conv convention that is padding k - 1 - p = 2 on each side.
_UP_PADDING = ((2, 2), (2, 2))


def _log2_int(n: int, what: str) -> int:
  k = int(round(math.log2(n))) if n > 0 else -1
  if k < 0 or 2**k != n:
    raise ValueError(f'{what} must be a power of two, got {n}')
  return k


def stage_width(base_width: int, resolution: int) -> int:
  """Channels of a feature map of spatial size `resolution` (both nets)."""
  # For R = 256, w = 64 these are 3FabRec's encoder layer0..layer4 (64@64,
  # 64@32, 128@16, 256@8, 512@4) and decoder widths (256, 128, 64, 64, 64).
  if resolution <= 4:
    return 8 * base_width
  if resolution == 8:
    return 4 * base_width
  if resolution == 16:
    return 2 * base_width
  return base_width


def num_decoder_stages(resolution: int) -> int:
  """N: decoder stages layer_1..layer_N before the final 2x output conv."""
  n = _log2_int(resolution, 'resolution') - 3
  if n < 1:
    raise ValueError(f'resolution must be >= 16, got {resolution}')
  return n


def num_itl_stages(pncc_resolution: int, resolution: int) -> int:
  """M: the PNCC head uses decoder stages layer_1..layer_M (M ITLs)."""
  m = _log2_int(pncc_resolution, 'pncc_resolution') - 3
  if not 1 <= m <= num_decoder_stages(resolution):
    raise ValueError(
        f'pncc_resolution {pncc_resolution} must be in [16, {resolution}]')
  return m


def _batch_norm(axis_name: Optional[str], name: Optional[str],
                dtype: str = precision.FLOAT32) -> nn.BatchNorm:
  # PyTorch BatchNorm2d defaults: momentum 0.1 (flax: 0.9), eps 1e-5. Flax
  # computes the statistics in float32 whatever `dtype` (the output's).
  return nn.BatchNorm(momentum=0.9, epsilon=1e-5, axis_name=axis_name,
                      dtype=precision.compute_dtype(dtype), name=name)


class ResBlock(precision.ComputeDtypeMixin, nn.Module):
  """ResNet BasicBlock (two 3x3 convs, BN, identity or 1x1 shortcut)."""
  width: int
  stride: int = 1
  bn_axis_name: Optional[str] = None
  dtype: str = precision.FLOAT32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    s = (self.stride, self.stride)
    bn = lambda name: _batch_norm(self.bn_axis_name, name, self.dtype)
    y = nn.Conv(self.width, (3, 3), s, padding=1, use_bias=False,
                dtype=self.compute_dtype, name='conv1')(x)
    y = bn('bn1')(y, use_running_average=not train)
    y = nn.relu(y)
    y = nn.Conv(self.width, (3, 3), padding=1, use_bias=False,
                dtype=self.compute_dtype, name='conv2')(y)
    y = bn('bn2')(y, use_running_average=not train)
    if self.stride != 1 or x.shape[-1] != self.width:
      x = nn.Conv(self.width, (1, 1), s, use_bias=False,
                  dtype=self.compute_dtype, name='down_conv')(x)
      x = bn('down_bn')(x, use_running_average=not train)
    return nn.relu(x + y)


class InvResBlock(precision.ComputeDtypeMixin, nn.Module):
  """Inverted BasicBlock: 4x4/2 transposed conv when upsampling, else 3x3."""
  width: int
  upsample: bool = False
  bn_axis_name: Optional[str] = None
  dtype: str = precision.FLOAT32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    bn = lambda name: _batch_norm(self.bn_axis_name, name, self.dtype)
    if self.upsample:
      y = nn.ConvTranspose(self.width, (4, 4), (2, 2), padding=_UP_PADDING,
                           use_bias=False, dtype=self.compute_dtype,
                           name='conv1')(x)
    else:
      y = nn.Conv(self.width, (3, 3), padding=1, use_bias=False,
                  dtype=self.compute_dtype, name='conv1')(x)
    y = bn('bn1')(y, use_running_average=not train)
    y = nn.relu(y)
    y = nn.Conv(self.width, (3, 3), padding=1, use_bias=False,
                dtype=self.compute_dtype, name='conv2')(y)
    y = bn('bn2')(y, use_running_average=not train)
    if self.upsample or x.shape[-1] != self.width:
      x = nn.ConvTranspose(self.width, (4, 4), (2, 2) if self.upsample else
                           (1, 1), padding=_UP_PADDING if self.upsample else
                           'SAME', use_bias=False, dtype=self.compute_dtype,
                           name='up_conv')(x)
      x = bn('up_bn')(x, use_running_average=not train)
    return nn.relu(x + y)


class Encoder(precision.ComputeDtypeMixin, nn.Module):
  """ResNet-18-style encoder.

  Attributes:
    resolution: input size R (square), a power of two >= 16.
    base_width: w (64 in 3FabRec).
    z_dim: latent size (99 in 3FabRec).
    blocks: BasicBlocks per stage (2 = ResNet-18).
    bn_axis_name: pmap axis for cross-device batch statistics (or None).
    input_normalization: 'symmetric' or '3fabrec' (`normalize_image`).
    dtype: compute dtype, 'float32' or 'bfloat16' (`precision`).
  """
  resolution: int = 256
  base_width: int = 64
  z_dim: int = 99
  blocks: int = 2
  bn_axis_name: Optional[str] = None
  input_normalization: str = NORMALIZE_SYMMETRIC
  dtype: str = precision.FLOAT32

  @nn.compact
  def __call__(self, image: Array, train: bool
               ) -> tuple[Array, dict[int, Array]]:
    """Encodes images.

    Args:
      image: [B, R, R, 3] float32 in [0, 1].
      train: batch statistics (True) or running averages (False).

    Returns:
      z: [B, z_dim] float32 latent.
      features: {spatial size: [B, s, s, C]} in the compute dtype: the stem
        output (R/2) and the output of every stage (R/4 ... 4).
    """
    r = self.resolution
    if image.ndim != 4 or image.shape[1:] != (r, r, 3):
      raise ValueError(f'Encoder expects [B, {r}, {r}, 3] images, got '
                       f'{image.shape}')
    num_decoder_stages(r)  # validates r
    x = normalize_image(image, self.input_normalization)
    # ResNet-18's stem: 7x7/2 conv, BN, ReLU (R/2), 3x3/2 max-pool (R/4).
    x = nn.Conv(self.base_width, (7, 7), (2, 2), padding=3, use_bias=False,
                dtype=self.compute_dtype, name='stem_conv')(x)
    x = _batch_norm(self.bn_axis_name, 'stem_bn', self.dtype)(
        x, use_running_average=not train)
    x = nn.relu(x)
    features = {r // 2: x}
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    # Stages down to 4x4: the first at R/4 with stride 1, then stride 2
    # (with the stem, 3FabRec's layer0..layer4 for R = 256; for R = 128 its
    # layer1..layer4).
    size, stride, stage = r // 4, 1, 0
    while size >= 4:
      width = stage_width(self.base_width, size)
      for b in range(self.blocks):
        x = ResBlock(width, stride if b == 0 else 1, self.bn_axis_name,
                     dtype=self.dtype, name=f'stage{stage}_block{b}')(x, train)
      features[size] = x
      size, stride, stage = size // 2, 2, stage + 1
    # Global average pool, dense -> z (z_dim = 99 in 3FabRec's aae.py).
    z = nn.Dense(self.z_dim, dtype=self.compute_dtype, name='fc')(
        jnp.mean(x, axis=(1, 2)))
    # z leaves the net: the latent discriminator and its prior are float32.
    return precision.to_float32(z), features


class Decoder(precision.ComputeDtypeMixin, nn.Module):
  """Inverted-ResNet generator z -> image; stages callable one at a time.

  Attributes: as `Encoder`; `blocks` per stage (1 in 3FabRec).
  """
  resolution: int = 256
  base_width: int = 64
  z_dim: int = 99
  blocks: int = 1
  bn_axis_name: Optional[str] = None
  input_normalization: str = NORMALIZE_SYMMETRIC
  dtype: str = precision.FLOAT32

  def setup(self):
    # Stem: dense z -> 8w, 4x4 valid transposed conv -> 4x4x8w, BN, ReLU
    # (3FabRec's invresnet.py).
    w0 = stage_width(self.base_width, 4)
    self.fc = nn.Dense(w0, dtype=self.compute_dtype)
    self.stem_conv = nn.ConvTranspose(w0, (4, 4), padding='VALID',
                                      use_bias=False, dtype=self.compute_dtype)
    self.stem_bn = _batch_norm(self.bn_axis_name, None, self.dtype)
    # layer_k doubles the resolution to 4 * 2**k with a 4x4/2 transposed
    # conv in its first block (and a transposed-conv + BN shortcut).
    layers = []
    for k in range(1, num_decoder_stages(self.resolution) + 1):
      width = stage_width(self.base_width, 4 * 2**k)
      layers.append([
          InvResBlock(width, upsample=(b == 0), bn_axis_name=self.bn_axis_name,
                      dtype=self.dtype)
          for b in range(self.blocks)
      ])
    self.layers = layers
    # A last 4x4/2 transposed conv to 3 channels (+ tanh) gives R x R.
    self.out_conv = nn.ConvTranspose(3, (4, 4), (2, 2), padding=_UP_PADDING,
                                     use_bias=False, dtype=self.compute_dtype)

  def stem(self, z: Array, train: bool) -> Array:
    """z [B, z_dim] -> [B, 4, 4, 8w]."""
    if z.ndim != 2 or z.shape[-1] != self.z_dim:
      raise ValueError(f'Decoder expects z of shape [B, {self.z_dim}], got '
                       f'{z.shape}')
    x = self.fc(z)[:, None, None, :]
    x = self.stem_bn(self.stem_conv(x), use_running_average=not train)
    return nn.relu(x)

  def stage(self, k: int, x: Array, train: bool) -> Array:
    """layer_k (1-based): [B, s, s, C] -> [B, 2s, 2s, C']."""
    for block in self.layers[k - 1]:
      x = block(x, train)
    return x

  def __call__(self, z: Array, train: bool) -> Array:
    """z [B, z_dim] -> image [B, R, R, 3] in [0, 1], float32."""
    x = self.stem(z, train)
    for k in range(1, len(self.layers) + 1):
      x = self.stage(k, x, train)
    # The image leaves the net for the float32 losses: tanh and the mapping
    # to image units in float32 too.
    return image_from_tanh(jnp.tanh(precision.to_float32(self.out_conv(x))),
                           self.input_normalization)


class Autoencoder(nn.Module):
  """3FabRec's autoencoder (stage 0): image -> z -> reconstruction.

  Attributes: as `Encoder`; `encoder_blocks` / `decoder_blocks` per stage.
  A stage config builds it as `Autoencoder(**config.model, bn_axis_name=...)`
  (configs/autoencoder.py).
  """
  resolution: int = 256
  base_width: int = 64
  z_dim: int = 99
  encoder_blocks: int = 2
  decoder_blocks: int = 1
  bn_axis_name: Optional[str] = None
  input_normalization: str = NORMALIZE_SYMMETRIC
  dtype: str = precision.FLOAT32

  def setup(self):
    self.encoder = Encoder(self.resolution, self.base_width, self.z_dim,
                           self.encoder_blocks, self.bn_axis_name,
                           self.input_normalization, self.dtype)
    self.decoder = Decoder(self.resolution, self.base_width, self.z_dim,
                           self.decoder_blocks, self.bn_axis_name,
                           self.input_normalization, self.dtype)

  def __call__(self, image: Array, train: bool) -> tuple[Array, Array]:
    """image [B, R, R, 3] in [0, 1] -> (reconstruction [B, R, R, 3] in
    [0, 1] ('3fabrec': up to the mean outside), z [B, z_dim])."""
    z, _ = self.encoder(image, train)
    return self.decoder(z, train), z

  def decode(self, z: Array, train: bool) -> Array:
    return self.decoder(z, train)


class PNCCPredictor(precision.ComputeDtypeMixin, nn.Module):
  """Autoencoder + ITLs (+ SCAF skips) -> PNCC image (paper's Figure 2).

  Attributes:
    resolution, base_width, z_dim, encoder_blocks, decoder_blocks: as the
      stage-0 `Autoencoder` whose weights it re-uses.
    pncc_resolution: output size O (128 = 3FabRec's landmark head on 256).
    use_skips: add SCAF skip connections.
    freeze_encoder, freeze_decoder: frozen parts always run their batch norm
      on running averages (their statistics never change); pair with
      `trainable_mask` for the optimizer.
    bn_axis_name: pmap axis for cross-device batch statistics (or None).
    input_normalization: as the stage-0 model (`normalize_image`).
    dtype: compute dtype, 'float32' or 'bfloat16' (`precision`); the
      stage-0 weights it re-uses are float32 whatever the dtype.
  A stage config builds it as `PNCCPredictor(**config.model, bn_axis_name=
  ...)` (configs/pncc_full.py).
  """
  resolution: int = 256
  base_width: int = 64
  z_dim: int = 99
  encoder_blocks: int = 2
  decoder_blocks: int = 1
  pncc_resolution: int = 128
  use_skips: bool = True
  freeze_encoder: bool = True
  freeze_decoder: bool = True
  bn_axis_name: Optional[str] = None
  input_normalization: str = NORMALIZE_SYMMETRIC
  dtype: str = precision.FLOAT32

  @nn.compact
  def __call__(self, image: Array, train: bool) -> Array:
    """image [B, R, R, 3] in [0, 1] -> PNCC [B, O, O, 3] in [0, 1],
    float32."""
    m = num_itl_stages(self.pncc_resolution, self.resolution)
    encoder = Encoder(self.resolution, self.base_width, self.z_dim,
                      self.encoder_blocks, self.bn_axis_name,
                      self.input_normalization, self.dtype, name='encoder')
    decoder = Decoder(self.resolution, self.base_width, self.z_dim,
                      self.decoder_blocks, self.bn_axis_name,
                      self.input_normalization, self.dtype, name='decoder')
    # Paper Sec. 2: encoder and decoder are pre-trained and frozen; frozen
    # parts run batch norm on running averages, so their statistics never
    # change (the optimizer side is `trainable_mask`).
    z, features = encoder(image, train and not self.freeze_encoder)
    decoder_train = train and not self.freeze_decoder
    x = decoder.stem(z, decoder_train)
    for k in range(1, m + 1):
      x = decoder.stage(k, x, decoder_train)
      # Interleaved Transfer Layer (paper Sec. 2, Figure 2): a 3x3 conv of
      # the same width, no bias, no activation, as 3FabRec's LandmarkHeadV2
      # t1..t4 after its decoder's layer1..layer4.
      x = nn.Conv(x.shape[-1], (3, 3), padding=1, use_bias=False,
                  dtype=self.compute_dtype, name=f'itl_{k}')(x)
      size = x.shape[1]
      # SCAF skip (paper Sec. 2; Dornier et al. 2022): the encoder map of the
      # same size through a trainable 3x3 conv, added to the ITL output. The
      # paper gives no layer-level detail: this placement is our reading.
      if self.use_skips and size in features:
        x = x + nn.Conv(x.shape[-1], (3, 3), padding=1,
                        dtype=self.compute_dtype,
                        name=f'skip_{k}')(features[size])
    # LandmarkHeadV2's last 4x4/2 transposed conv, to 3 PNCC channels; with
    # M = 4 ITLs O = 128 for R = 256 (its decoder's layer5 unused).
    x = nn.ConvTranspose(3, (4, 4), (2, 2), padding=_UP_PADDING,
                         use_bias=False, dtype=self.compute_dtype,
                         name='pncc_out')(x)
    # PNCC values lie in [0, 1]; the sigmoid in float32, as the PNCC leaves
    # the net for the float32 loss (and annotation files).
    return nn.sigmoid(precision.to_float32(x))


# ----------------------------------------------------------------------------
# Discriminators of the unsupervised stage (3FabRec networks/archs.py).


class LatentDiscriminator(precision.ComputeDtypeMixin, nn.Module):
  """D_z: MLP z -> logit (Gaussian prior vs. encodings); 1000 units, dropout
  0.2 after each hidden dense as 3FabRec's D_net_gauss."""
  hidden: int = 1000
  dropout: float = 0.2
  dtype: str = precision.FLOAT32

  @nn.compact
  def __call__(self, z: Array, train: bool) -> Array:
    """z [B, z_dim] -> logits [B], float32."""
    x = z
    for i in range(2):
      x = nn.Dense(self.hidden, dtype=self.compute_dtype, name=f'dense{i}')(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = nn.relu(x)
    # Logits leave the net for the float32 GAN losses.
    logits = nn.Dense(1, dtype=self.compute_dtype, name='out')(x)[:, 0]
    return precision.to_float32(logits)


class ImageDiscriminator(precision.ComputeDtypeMixin, nn.Module):
  """D: DCGAN-style conv net image -> logit (3FabRec's `Discriminator`).

  4x4 stride-2 convs (ndf, 2ndf, 4ndf, 8ndf, 8ndf; BN + LeakyReLU(0.2), no BN
  on the first) down to 8x8, then a 4x4 valid conv to 1 channel and a global
  average. Fewer stride-2 convs for small inputs.
  """
  ndf: int = 32
  bn_axis_name: Optional[str] = None
  input_normalization: str = NORMALIZE_SYMMETRIC
  dtype: str = precision.FLOAT32

  @nn.compact
  def __call__(self, image: Array, train: bool) -> Array:
    """image [B, R, R, 3] in [0, 1] -> logits [B], float32."""
    x = normalize_image(image, self.input_normalization)
    num_down = min(5, _log2_int(image.shape[1], 'image size') - 3)
    widths = [self.ndf, 2 * self.ndf, 4 * self.ndf, 8 * self.ndf, 8 * self.ndf]
    for i in range(num_down):
      x = nn.Conv(widths[i], (4, 4), (2, 2), padding=1, use_bias=False,
                  dtype=self.compute_dtype, name=f'conv{i}')(x)
      if i > 0:
        x = _batch_norm(self.bn_axis_name, f'bn{i}', self.dtype)(
            x, use_running_average=not train)
      x = nn.leaky_relu(x, 0.2)
    x = nn.Conv(1, (4, 4), padding='VALID', use_bias=False,
                dtype=self.compute_dtype, name='out')(x)
    # Logits leave the net for the float32 GAN losses.
    return jnp.mean(precision.to_float32(x), axis=(1, 2, 3))


# ----------------------------------------------------------------------------
# Transferring weights, freezing.


def _unfreeze(tree):
  return flax.core.unfreeze(tree) if isinstance(
      tree, flax.core.FrozenDict) else tree


def _copy_matching(source: Mapping, target: Mapping, where: str) -> dict:
  """`target`'s structure, with leaves taken from `source` (shapes checked)."""
  out = {}
  for key, value in target.items():
    if key not in source:
      raise KeyError(f'stage-0 checkpoint lacks {where}/{key}')
    if isinstance(value, Mapping):
      out[key] = _copy_matching(source[key], value, f'{where}/{key}')
    else:
      src = jnp.asarray(source[key])
      if src.shape != value.shape:
        raise ValueError(f'{where}/{key}: stage-0 shape {src.shape} != PNCC '
                         f'predictor shape {value.shape}')
      # value.dtype is the target's param dtype: float32 whatever the
      # compute `dtype` (imported 3FabRec weights stay float32 too).
      out[key] = src.astype(value.dtype)
  return out


def pncc_variables_from_autoencoder(
    ae_variables: Mapping[str, Any], pncc_variables: Mapping[str, Any],
    copy_decoder: bool = True) -> dict:
  """PNCC-predictor variables with encoder/decoder taken from stage 0.

  Args:
    ae_variables: {'params': {'encoder', 'decoder', ...}, 'batch_stats':
      {'encoder', 'decoder'}} of a stage-0 `Autoencoder` (extra top-level
      entries such as discriminators are ignored).
    pncc_variables: freshly initialised `PNCCPredictor` variables; their ITL,
      skip and output params are kept.
    copy_decoder: False for the from-scratch-decoder ablation (only the
      encoder is copied).

  Returns:
    variables {'params', 'batch_stats'} for `PNCCPredictor.apply`.
  """
  parts = ('encoder', 'decoder') if copy_decoder else ('encoder',)
  out = {}
  for collection in ('params', 'batch_stats'):
    target = dict(_unfreeze(pncc_variables.get(collection, {})))
    if collection not in ae_variables:
      raise KeyError(f'stage-0 variables lack collection {collection!r}')
    source = _unfreeze(ae_variables[collection])
    for part in parts:
      if part in target:
        if part not in source:
          raise KeyError(f'stage-0 variables lack {collection}/{part}')
        target[part] = _copy_matching(source[part], target[part],
                                      f'{collection}/{part}')
    out[collection] = target
  return out


def trainable_mask(params: Mapping[str, Any], stage: str = 'pncc',
                   freeze_encoder: bool = True,
                   freeze_decoder: bool = True) -> PyTree:
  """Which parameters train: a pytree of bools shaped like `params`.

  stage='autoencoder': everything. stage='pncc': everything except 'encoder'
  (when freeze_encoder) and 'decoder' (when freeze_decoder); i.e. by default
  only itl_*, skip_* and pncc_out.
  """
  if stage not in ('autoencoder', 'pncc'):
    raise ValueError(f"stage must be 'autoencoder' or 'pncc', got {stage!r}")
  frozen = set()
  if stage == 'pncc':
    if freeze_encoder:
      frozen.add('encoder')
    if freeze_decoder:
      frozen.add('decoder')
  params = _unfreeze(params)
  return {
      key: jax.tree_util.tree_map(lambda _, t=(key not in frozen): t, value)
      for key, value in params.items()
  }


def masked_optimizer(tx: optax.GradientTransformation,
                     mask: PyTree) -> optax.GradientTransformation:
  """`tx` on mask==True leaves, exactly-zero updates (and no optimizer state,
  no weight decay) on the rest."""
  labels = jax.tree_util.tree_map(lambda t: 'train' if t else 'frozen', mask)
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()},
                               labels)
