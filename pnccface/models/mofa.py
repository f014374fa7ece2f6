"""MoFa (Tewari et al. 2017): a CNN encoder and a fixed model-based decoder.

The encoder maps an image (3 channels, MoFa) or an image stacked with its
PNCC (6 channels, MoFaPNCC; the paper's Sec. 2), [B, H, W, C] in [0, 1], to
a `FaceCode`. The decoder (`decode`) is a pure function of the code and a
`MorphableModel` passed as an argument (a pytree of arrays, never a module
attribute, so it stays out of the params and is traced under jit): 3DMM ->
weak-perspective screen vertices -> SH-shaded rendering over the input image.

Code (`FaceCode`), all [B, ...] float32:
  shape, expression, albedo: standardised 3DMM coefficients; raw = z * std.
  angles: [B, 3] (pitch, yaw, roll) radians in (-max_angle, max_angle), the
    300W-LP convention (`geometry.euler_to_rotation`), i.e. the data's
    `Pose_Para` angles.
  centre: [B, 2] image position of the face's landmark centre as an offset
    from the image centre, in units of the image size (x, y; image frame).
  log_scale: [B] weak-perspective scale = `s0 * exp(log_scale)`, s0 the
    scale at which the mean face's 68-landmark box spans `face_fraction` of
    the image height (`default_scale`).
  sh: [B, 27] SH lighting (`render.shading`): ambient white of irradiance
    `initial_irradiance` plus the regressed offset.

Encoders (`backbone`): 'alexnet' (`AlexNetFeatures`, MoFa's) or 'resnet'
(`ResNetFeatures`), `norm` in {'none', 'batch', 'group'}; with 'batch' build
the module with `bn_axis_name=common.AXIS` for training under pmap.
`dtype` ('float32' or 'bfloat16', `precision`) is the trunk's compute
dtype; parameters, normalisation statistics, the code layer and the code
stay float32.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pnccface import geometry
from pnccface import render
from pnccface.facemodel import MorphableModel
from pnccface.models import precision

Array = jnp.ndarray
NUM_POSE_OUTPUTS = 6  # 3 angles, 2 centre, 1 log-scale
# A data-derived default for s0: the middle of the synthetic faces' range of
# landmark-box height / image height (`data.synthesis.SamplingRanges`).
DEFAULT_FACE_FRACTION = 0.525


class FaceCode(NamedTuple):
  """The encoder's semantic code (see the module docstring for units)."""
  shape: Array
  expression: Array
  albedo: Array
  angles: Array
  centre: Array
  log_scale: Array
  sh: Array


def code_size(num_shape: int, num_expression: int, num_albedo: int) -> int:
  """Length of the flat code vector."""
  return (num_shape + num_expression + num_albedo + NUM_POSE_OUTPUTS +
          render.NUM_SH_COEFFICIENTS)


def split_code(raw: Array, num_shape: int, num_expression: int,
               num_albedo: int, max_angle: float = math.pi / 2,
               initial_irradiance: float = 1.0) -> FaceCode:
  """Maps the flat code layer output [B, code_size] to a `FaceCode`."""
  sizes = (num_shape, num_expression, num_albedo, 3, 2, 1,
           render.NUM_SH_COEFFICIENTS)
  if raw.shape[-1] != sum(sizes):
    raise ValueError(f'code has {raw.shape[-1]} entries, expected {sum(sizes)}'
                     f' for sizes {sizes}')
  parts = jnp.split(raw, np.cumsum(sizes)[:-1], axis=-1)
  shape, expression, albedo, angles, centre, log_scale, sh = parts
  ambient = render.ambient_sh_coefficients(irradiance=initial_irradiance)
  return FaceCode(shape=shape, expression=expression, albedo=albedo,
                  # tanh bounds each angle to the data's range (max_angle =
                  # pi/2 by default, the yaw range) with gradient max_angle
                  # at the frontal start, where training begins. A 6D
                  # rotation would avoid the gimbal lock at yaw = +-90 deg
                  # but not bound yaw; such faces are rare in the data.
                  angles=max_angle * jnp.tanh(angles), centre=centre,
                  log_scale=log_scale[..., 0], sh=ambient + sh)


# ----------------------------------------------------------------------------
# Encoders.


def _norm(kind: str, train: bool, bn_axis_name: Optional[str], name: str,
          dtype: str = precision.FLOAT32):
  # Flax computes the statistics in float32 whatever `dtype` (the output's).
  dt = precision.compute_dtype(dtype)
  if kind == 'batch':
    return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                        axis_name=bn_axis_name if train else None, dtype=dt,
                        name=name)
  if kind == 'group':
    return nn.GroupNorm(num_groups=None, group_size=8, dtype=dt, name=name)
  if kind == 'none':
    return lambda x: x
  raise ValueError(f'unknown norm {kind!r} (none, batch, group)')


class AlexNetFeatures(precision.ComputeDtypeMixin, nn.Module):
  """MoFa's AlexNet-style trunk: [B, H, W, C] -> [B, F] features.

  The defaults are AlexNet, MoFa's encoder (Tewari et al. 2017, Sec. 4): 5
  convolutions with 3x3/2 max-pools after the 1st, 2nd and 5th, then two
  4096-unit dense layers; 'SAME' padding, ReLU.
  """
  conv_features: Sequence[int] = (96, 256, 384, 384, 256)
  kernel_sizes: Sequence[int] = (11, 5, 3, 3, 3)
  strides: Sequence[int] = (4, 1, 1, 1, 1)
  pool_after: Sequence[int] = (0, 1, 4)
  dense_features: Sequence[int] = (4096, 4096)
  norm: str = 'none'  # AlexNet's LRN is replaced by this optional norm
  bn_axis_name: Optional[str] = None
  dtype: str = precision.FLOAT32  # compute dtype (`precision`)

  @nn.compact
  def __call__(self, x, train: bool = False):
    """Features [B, F] in the compute dtype."""
    if not (len(self.conv_features) == len(self.kernel_sizes) ==
            len(self.strides)):
      raise ValueError('conv_features, kernel_sizes and strides must have the'
                       ' same length')
    for i, (f, k, s) in enumerate(zip(self.conv_features, self.kernel_sizes,
                                      self.strides)):
      x = nn.Conv(f, (k, k), strides=(s, s), padding='SAME',
                  use_bias=self.norm == 'none', dtype=self.compute_dtype,
                  name=f'conv{i}')(x)
      x = nn.relu(_norm(self.norm, train, self.bn_axis_name, f'norm{i}',
                        self.dtype)(x))
      if i in self.pool_after and min(x.shape[1:3]) >= 2:
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
    x = x.reshape((x.shape[0], -1))
    for i, f in enumerate(self.dense_features):
      x = nn.relu(nn.Dense(f, dtype=self.compute_dtype, name=f'fc{i}')(x))
    return x


class BasicBlock(precision.ComputeDtypeMixin, nn.Module):
  """ResNet basic block (two 3x3 convs) with a projection shortcut."""
  features: int
  stride: int = 1
  norm: str = 'batch'
  bn_axis_name: Optional[str] = None
  dtype: str = precision.FLOAT32  # compute dtype (`precision`)

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = lambda name: _norm(self.norm, train, self.bn_axis_name, name,
                              self.dtype)
    y = nn.Conv(self.features, (3, 3), strides=(self.stride, self.stride),
                padding='SAME', use_bias=False, dtype=self.compute_dtype,
                name='conv1')(x)
    y = nn.relu(norm('norm1')(y))
    y = nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False,
                dtype=self.compute_dtype, name='conv2')(y)
    y = norm('norm2')(y)
    if x.shape[-1] != self.features or self.stride != 1:
      x = nn.Conv(self.features, (1, 1), strides=(self.stride, self.stride),
                  use_bias=False, dtype=self.compute_dtype, name='shortcut')(x)
      x = norm('norm_shortcut')(x)
    return nn.relu(x + y)


class ResNetFeatures(precision.ComputeDtypeMixin, nn.Module):
  """Small ResNet trunk: 3x3/2 stem, stages of BasicBlocks, global pool."""
  width: int = 32
  stage_blocks: Sequence[int] = (2, 2, 2, 2)
  norm: str = 'batch'
  bn_axis_name: Optional[str] = None
  dtype: str = precision.FLOAT32  # compute dtype (`precision`)

  @nn.compact
  def __call__(self, x, train: bool = False):
    """Features [B, F] in the compute dtype."""
    x = nn.Conv(self.width, (3, 3), strides=(2, 2), padding='SAME',
                use_bias=False, dtype=self.compute_dtype, name='stem')(x)
    x = nn.relu(_norm(self.norm, train, self.bn_axis_name, 'stem_norm',
                      self.dtype)(x))
    for stage, blocks in enumerate(self.stage_blocks):
      for b in range(blocks):
        x = BasicBlock(self.width * 2**stage,
                       stride=2 if (stage > 0 and b == 0) else 1,
                       norm=self.norm, bn_axis_name=self.bn_axis_name,
                       dtype=self.dtype, name=f'stage{stage}_block{b}')(
                           x, train)
    return jnp.mean(x, axis=(1, 2))


class MoFaEncoder(nn.Module):
  """Image (or image + PNCC) [B, H, W, C] in [0, 1] -> `FaceCode`.

  Attributes:
    num_shape, num_expression, num_albedo: the 3DMM's coefficient counts
      (`MorphableModel.num_shape` etc.).
    backbone: 'alexnet' or 'resnet'; backbone_kwargs: its attributes.
    norm: 'none' | 'batch' | 'group'; bn_axis_name: pmap axis for batch norm.
    max_angle: bound of each Euler angle, radians.
    initial_irradiance: ambient irradiance of the initial light.
    head_init_scale: stddev multiplier of the code layer's kernel (tiny, so
      the initial prediction is the mean frontal face).
    dtype: the trunk's compute dtype, 'float32' or 'bfloat16' (`precision`).
  A stage config builds it as `MoFaEncoder(**config.model, num_shape=...,
  num_expression=..., num_albedo=...)` (`pnccface.train.mofa.make_encoder`).
  """
  num_shape: int
  num_expression: int
  num_albedo: int
  backbone: str = 'alexnet'
  backbone_kwargs: Any = None
  norm: str = 'none'
  bn_axis_name: Optional[str] = None
  max_angle: float = math.pi / 2
  initial_irradiance: float = 1.0
  head_init_scale: float = 1e-3
  dtype: str = precision.FLOAT32

  @nn.compact
  def __call__(self, x, train: bool = False) -> FaceCode:
    if x.ndim != 4:
      raise ValueError(f'encoder input must be [B, H, W, C], got {x.shape}')
    trunks = {'alexnet': AlexNetFeatures, 'resnet': ResNetFeatures}
    if self.backbone not in trunks:
      raise ValueError(f'unknown backbone {self.backbone!r} (alexnet, resnet)')
    kwargs = dict(self.backbone_kwargs or {})
    try:
      trunk = trunks[self.backbone](norm=self.norm,
                                    bn_axis_name=self.bn_axis_name,
                                    dtype=self.dtype, name='trunk', **kwargs)
    except TypeError as e:  # e.g. a ResNet's kwargs for the AlexNet
      raise ValueError(f'backbone_kwargs {sorted(kwargs)} do not fit backbone '
                       f'{self.backbone!r} ({e})') from None
    features = trunk(2.0 * x - 1.0, train)  # image and PNCC alike to [-1, 1]
    # The features leave the (low-precision) trunk here: the code layer, a
    # small share of the compute, and the code (angles, log-scale, SH) that
    # the float32 3DMM decode and renderer read stay float32.
    features = precision.to_float32(features)
    size = code_size(self.num_shape, self.num_expression, self.num_albedo)
    # Zero bias and a tiny kernel: the first prediction is (to ~1e-3) the
    # mean face, frontal, centred, at scale s0, under ambient light, so
    # training starts from a sensible render while the trunk still gets
    # (small) gradients from the first step.
    raw = nn.Dense(size, kernel_init=nn.initializers.variance_scaling(
        self.head_init_scale**2, 'fan_in', 'normal'),
                   bias_init=nn.initializers.zeros, name='code')(features)
    return split_code(raw, self.num_shape, self.num_expression,
                      self.num_albedo, self.max_angle,
                      self.initial_irradiance)


# ----------------------------------------------------------------------------
# The model-based decoder (pure functions of the code and the face model).


class Reconstruction(NamedTuple):
  """The decoder's output, all [B, ...].

  image: [B, H, W, 3] rendered face over the input image (background).
  mask: [B, H, W, 1] 1 on visible face pixels.
  landmarks_2d: [B, 68, 2] image pixels.
  vertices_screen: [B, V, 3] (x, y image pixels, depth in the same scaled
    units) -- `evaluation.report.FaceGeometry.vertices`.
  pose_para: [B, 7] [pitch, yaw, roll (rad), tx, ty, tz, scale] (300W-LP).
  pitch_degrees, yaw_degrees, roll_degrees: [B] from the posed rotation
    (`geometry.rotation_to_euler_degrees`).
  """
  image: Array
  mask: Array
  landmarks_2d: Array
  vertices_screen: Array
  pose_para: Array
  pitch_degrees: Array
  yaw_degrees: Array
  roll_degrees: Array


def default_scale(face_model: MorphableModel, image_size: int,
                  face_fraction: float = DEFAULT_FACE_FRACTION) -> Array:
  """Scale s0 at which the mean face's landmarks span `face_fraction` of the
  image height (scalar)."""
  y = face_model.landmarks(face_model.mean_shape)[:, 1]
  return face_fraction * image_size / jnp.maximum(y.max() - y.min(), 1e-6)


def pose_para(code: FaceCode, face_model: MorphableModel, image_size: int,
              face_fraction: float = DEFAULT_FACE_FRACTION) -> Array:
  """The code's weak-perspective pose as `Pose_Para` [B, 7].

  Solves the release's translation t so that the rotated, scaled mean-face
  landmark centre lands at the predicted image position (inverting
  `geometry.weak_perspective_to_screen`), with tz = 0.
  """
  rotation = geometry.euler_to_rotation(code.angles[..., 0],
                                        code.angles[..., 1],
                                        code.angles[..., 2])
  scale = default_scale(face_model, image_size, face_fraction) * jnp.exp(
      code.log_scale)
  centre_model = jnp.mean(face_model.landmarks(face_model.mean_shape), axis=0)
  rotated = jnp.einsum('...ij,j->...i', rotation, centre_model)
  centre_image = image_size / 2 + code.centre * image_size
  target = jnp.stack([
      geometry.image_to_matlab_xy(centre_image[..., 0]),
      image_size + 1.0 - geometry.image_to_matlab_xy(centre_image[..., 1]),
      jnp.zeros_like(centre_image[..., 0])
  ], axis=-1)
  # The code predicts where the face is in the image rather than the
  # release's t: that decouples translation from rotation; t is solved here.
  translation = target - scale[..., None] * rotated
  return jnp.concatenate([code.angles, translation, scale[..., None]], axis=-1)


def face_vertices(code: FaceCode, face_model: MorphableModel) -> Array:
  """Model-frame vertices [B, V, 3] of the code's shape and expression."""
  return face_model.vertices(code.shape * face_model.shape_std,
                             code.expression * face_model.expression_std)


def decode(code: FaceCode, face_model: MorphableModel, background, *,
           face_fraction: float = DEFAULT_FACE_FRACTION,
           render_method: Optional[str] = None) -> Reconstruction:
  """Renders the code: 3DMM -> weak perspective -> SH-shaded rasterization.

  Args:
    code: `FaceCode` with batch B.
    face_model: the `MorphableModel` (a traced pytree under jit).
    background: [B, S, S, 3] the input image, composited behind the face
      (S = image size; non-square images are not supported).
    face_fraction: see `default_scale`.
    render_method: rasterizer visibility method (None: default).

  Returns:
    `Reconstruction`.
  """
  background = jnp.asarray(background, jnp.float32)
  if background.ndim != 4 or background.shape[1] != background.shape[2]:
    raise ValueError('background must be a square [B, S, S, 3] image, got '
                     f'{background.shape}')
  size = background.shape[1]
  pose = pose_para(code, face_model, size, face_fraction)
  camera = geometry.pose_para_to_weak_perspective(pose)
  screen = geometry.weak_perspective_to_screen(
      face_vertices(code, face_model), camera, size)
  albedo = face_model.albedo(code.albedo * face_model.albedo_std)
  image, mask = render.render_shaded(screen, face_model.triangles, albedo,
                                     code.sh, size, size,
                                     background=background[..., :3],
                                     method=render_method)
  pitch, yaw, roll = geometry.rotation_to_euler_degrees(camera.rotation)
  return Reconstruction(
      image=image, mask=mask,
      landmarks_2d=render.project_landmarks(screen,
                                            face_model.landmark_indices),
      vertices_screen=screen, pose_para=pose, pitch_degrees=pitch,
      yaw_degrees=yaw, roll_degrees=roll)


def truncate_face_model(face_model: MorphableModel, num_shape: int = -1,
                        num_expression: int = -1, num_albedo: int = -1
                        ) -> MorphableModel:
  """The model with only its first shape / expression / albedo components.

  MoFa (Tewari et al. 2017, Sec. 3) keeps 80 shape, 64 expression and 80
  reflectance components of its models; with 3DDFA's 29-component
  expression basis we keep all 29. -1 (or more than the model has) keeps
  all; idempotent. Bases and stds are sliced together.
  """
  def keep(basis, std, count):
    count = basis.shape[-1] if count is None or count < 0 else min(
        int(count), basis.shape[-1])
    return basis[..., :count], std[:count]

  shape_basis, shape_std = keep(face_model.shape_basis, face_model.shape_std,
                                num_shape)
  expression_basis, expression_std = keep(
      face_model.expression_basis, face_model.expression_std, num_expression)
  albedo_basis, albedo_std = keep(face_model.albedo_basis,
                                  face_model.albedo_std, num_albedo)
  return face_model.replace(
      shape_basis=shape_basis, shape_std=shape_std,
      expression_basis=expression_basis, expression_std=expression_std,
      albedo_basis=albedo_basis, albedo_std=albedo_std,
      nonnegative_expressions=tuple(
          k for k in face_model.nonnegative_expressions
          if k < expression_basis.shape[-1]))


def vertex_colours(code: FaceCode, face_model: MorphableModel,
                   vertices_screen) -> Array:
  """Shaded per-vertex colours c_i = albedo_i x irradiance(n_i) [B, V, 3],
  the colours `decode` rasterizes (`render.render_shaded`)."""
  albedo = face_model.albedo(code.albedo * face_model.albedo_std)
  normals = render.screen_normals(vertices_screen, face_model.triangles)
  return albedo * render.sh_shading(normals, code.sh)


def encoder_input(image, pncc=None) -> Array:
  """The encoder's input: the image [B, H, W, 3], or image and PNCC stacked
  on channels (MoFaPNCC) [B, H, W, 6]."""
  image = jnp.asarray(image, jnp.float32)
  if pncc is None:
    return image
  pncc = jnp.asarray(pncc, jnp.float32)
  if pncc.shape != image.shape:
    raise ValueError(f'pncc {pncc.shape} must match image {image.shape}')
  return jnp.concatenate([image, pncc], axis=-1)
