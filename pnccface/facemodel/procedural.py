"""The embedded procedural face model ('procedural_v1'): a 3DMM made by code.

The mesh is a regular grid over the front of a head: columns sweep an azimuth
angle around the vertical axis (viewer's left to right), rows sweep height
(neck under the chin to the top of the forehead). The base surface is a stack
of horizontal superellipse rings (head, jaw and neck) centred on the head's
vertical axis, so the model-frame origin sits inside the head and yaw turns the
face naturally. Facial features (nose, brows, eye sockets, eyeballs and lids,
lips with a closed mouth slit, cheeks, chin) are smooth displacements along the
base normal, written as functions of the front-projected base coordinates
(`x`, `y` in millimetres).

Frames follow `pnccface.geometry` (model frame: x to the viewer's right, y up,
z towards the viewer); units are millimetres. The grid has an odd number of
columns whose middle one lies on x = 0, and every quad is split along the
mirror image of its mirror quad's diagonal, so vertices AND triangles are
symmetric under x -> -x (`ModelInfo.mirror_index`).

Bases:
  shape: smooth identity deformations (semantic fields such as face width,
    nose length or jaw width, then random smooth fields), rigid motions
    projected out, orthogonalised over vertices and scaled to 1 mm RMS
    per-vertex displacement per unit coefficient; `shape_std` in mm.
  expression: semantic actions; a unit coefficient is the full action (e.g.
    mouth fully open), `expression_std` in those units. Components are either
    mirror-symmetric or antisymmetric (`*_asym`: + means the subject's left,
    i.e. +x, does more).
  albedo: linear RGB reflectance; orthogonal, unit per-vertex RMS (RGB norm)
    per coefficient; `albedo_std` in reflectance units.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from pnccface.facemodel import morphable

MODEL_NAME = 'procedural_v1'

# Grid resolution: ~1 mm spacing over the face.
_NUM_COLUMNS = 181
_THETA_MAX = np.radians(96.0)
_ROW_SPACING_MM = 1.1

# Anthropometric anchors (mm, model frame).
_MOUTH_Y = -40.0          # stomion: the closed mouth slit
_MOUTH_HALF_WIDTH = 25.0
_EYE_Y = 30.0
_EYE_INNER_X = 16.5       # inner canthus |x|
_EYE_OUTER_X = 46.0       # outer canthus |x|
_NASION_Y = 38.0
_NOSE_TIP_Y = -7.0
_SUBNASALE_Y = -17.0
_CHIN_Y = -88.0

_NUM_SHAPE = 60
_NUM_ALBEDO = 60
_SEED = 20230601

EXPRESSION_NAMES = (
    'jaw_open', 'smile', 'mouth_frown', 'lip_pucker', 'mouth_stretch',
    'brows_raise', 'brows_frown', 'eyes_close', 'cheek_puff', 'nose_wrinkle',
    'upper_lip_raise', 'smile_asym', 'eyes_close_asym', 'brows_raise_asym',
    'jaw_sideways', 'mouth_sideways')

# Actions whose negative direction is not a face (lips or lids would pass
# through each other): samplers should draw |z| * std for these.
EXPRESSION_NONNEGATIVE = ('jaw_open', 'eyes_close')

# iBUG-68 left-right permutation: landmark i of a mirrored face is landmark
# IBUG68_MIRROR[i] of the original.
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1)) +                      # jaw 0-16
    list(range(26, 16, -1)) +                      # brows 17-26
    [27, 28, 29, 30] + [35, 34, 33, 32, 31] +      # nose
    [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] +  # eyes
    [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] +  # outer lips
    [64, 63, 62, 61, 60, 67, 66, 65],              # inner lips
    np.int32)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """Metadata of the procedural model that the pytree does not carry.

  Attributes:
    grid_shape: (rows, columns); vertex index = row * columns + column, rows
      bottom (neck) to top (forehead), columns viewer's left to right.
    mirror_index: [V] int32, vertex of the mirror image (x -> -x) of each
      vertex; applying it to triangle corners maps triangles to triangles
      (with reversed winding).
    landmark_mirror: [68] int32, `IBUG68_MIRROR`.
    face_mask: [V] bool, the face proper (inside the jaw contour, below the
      upper forehead, in front of the ears), as opposed to neck and sides.
    shape_names: [Ks] names of the shape components ('random_*' for the
      generic smooth fields), in basis order.
    expression_names: [Ke] `EXPRESSION_NAMES`.
    expression_nonnegative: [Ke] bool, `EXPRESSION_NONNEGATIVE` as a mask.
    albedo_names: [Ka] names of the albedo components.
  """
  grid_shape: tuple[int, int]
  mirror_index: np.ndarray
  landmark_mirror: np.ndarray
  face_mask: np.ndarray
  shape_names: tuple[str, ...]
  expression_names: tuple[str, ...]
  expression_nonnegative: np.ndarray
  albedo_names: tuple[str, ...]


def default_model() -> morphable.MorphableModel:
  """The embedded face model (cached; ~36k vertices, millimetres)."""
  return _model()


def model_info() -> ModelInfo:
  """Metadata (mirror map, face mask, component names) of `default_model`."""
  return _build()[1]


@functools.lru_cache(maxsize=None)
def _model() -> morphable.MorphableModel:
  return morphable.make_model(
      name=MODEL_NAME, nonnegative_expressions=[
          EXPRESSION_NAMES.index(n) for n in EXPRESSION_NONNEGATIVE],
      **_build()[0])


# ----------------------------------------------------------------------------
# Small smooth primitives (numpy, broadcasting).


def _smoothstep(edge0, edge1, x):
  """0 below edge0, 1 above edge1 (either order), C1 cubic in between."""
  t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def _gauss(x, y, cx, cy, sx, sy):
  return np.exp(-0.5 * (((x - cx) / sx)**2 + ((y - cy) / sy)**2))


def _pair(fn, x, *args, **kwargs):
  """A one-sided feature (defined at x < 0) plus its mirror image."""
  return fn(x, *args, **kwargs) + fn(-x, *args, **kwargs)


def _smooth_table(knots, values, query, sigma):
  """Piecewise-linear table blurred by a Gaussian of `sigma` mm: C-inf curve."""
  step = 0.25
  pad = 4.0 * sigma
  fine = np.arange(knots[0] - pad, knots[-1] + pad + step, step)
  table = np.interp(fine, knots, values)
  half = int(np.ceil(4.0 * sigma / step))
  kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * step / sigma)**2)
  kernel /= kernel.sum()
  padded = np.concatenate([np.full(half, table[0]), table,
                           np.full(half, table[-1])])
  smooth = np.convolve(padded, kernel, mode='valid')
  return np.interp(query, fine, smooth)


# ----------------------------------------------------------------------------
# Base head: horizontal superellipse rings (face/cranium, and neck).

# Height (mm) -> half-width, front depth of the face ring.
_RING_Y = np.array([-80., -68., -55., -40., -15., 5., 25., 45., 65., 85.,
                    100., 112., 122.])
_RING_WIDTH = np.array([30., 42., 54., 61., 67., 70., 72., 73., 72., 66.,
                        56., 40., 10.])
_RING_DEPTH = np.array([84., 87., 89., 91., 92., 91., 89., 89., 84., 74.,
                        60., 40., 10.])
_NECK_WIDTH, _NECK_DEPTH = 52.0, 48.0
_SOFT_UNION_MM = 0.5   # 1/sharpness of the face-neck soft union


def _face_ring(y):
  """Half-width, front depth and exponent of the face ring at height y."""
  width = _smooth_table(_RING_Y, _RING_WIDTH, y, 5.0)
  depth = _smooth_table(_RING_Y, _RING_DEPTH, y, 4.0)
  # The chin's underside: the ring collapses along an elliptic arc.
  below = np.clip((-80.0 - y) / 13.0, 0.0, 1.0)
  arc = np.sqrt(1.0 - below**2)
  exponent = 2.1 + 0.5 * _smoothstep(-70.0, -30.0, y)
  return width * arc, depth * arc, exponent


def _superellipse_radius(theta, width, depth, exponent):
  s = np.abs(np.sin(theta)) / np.maximum(width, 1e-3)
  c = np.abs(np.cos(theta)) / np.maximum(depth, 1e-3)
  return (s**exponent + c**exponent)**(-1.0 / exponent)


def _ring_radius(theta, y):
  """Radius of the base surface at azimuth theta, height y (soft union)."""
  width, depth, exponent = _face_ring(y)
  face = _superellipse_radius(theta, width, depth, exponent)
  neck_scale = _smoothstep(-20.0, -45.0, y)
  neck = _superellipse_radius(theta, _NECK_WIDTH * neck_scale + 1e-3,
                              _NECK_DEPTH * neck_scale + 1e-3, 2.0)
  top = np.maximum(face, neck)
  k = 1.0 / _SOFT_UNION_MM
  return top + np.log(np.exp(k * (face - top)) + np.exp(k * (neck - top))) / k


def _row_heights():
  """Row heights y (mm), bottom to top, ~uniform in arc length at the front.

  The mouth slit gets four dedicated rows: two lip-contact rows and two
  'pocket' rows between them that the mouth displacement pushes back.
  """
  fine = np.arange(-100.0, 114.0 + 1e-9, 0.05)
  front = _ring_radius(np.zeros_like(fine), fine)
  seg = np.hypot(np.diff(fine), np.diff(front))
  # Coarser sampling on the neck and the top of the forehead.
  weight = 0.55 + 0.45 * _smoothstep(-97.0, -90.0, fine) * _smoothstep(
      80.0, 65.0, fine)
  arc = np.concatenate([[0.0], np.cumsum(seg * 0.5 * (weight[1:] +
                                                      weight[:-1]))])
  num = int(round(arc[-1] / _ROW_SPACING_MM)) + 1
  rows = np.interp(np.linspace(0.0, arc[-1], num), arc, fine)
  slit = np.array([-1.1, -0.35, 0.35, 1.1]) + _MOUTH_Y
  rows = np.concatenate([rows[np.abs(rows - _MOUTH_Y) > 1.7], slit])
  return np.sort(rows)


def _column_angles():
  """Azimuths, exactly antisymmetric; denser at the front."""
  half = np.linspace(0.0, 1.0, (_NUM_COLUMNS + 1) // 2)[1:]
  u = np.concatenate([-half[::-1], [0.0], half])
  return _THETA_MAX * (0.55 * u + 0.45 * u**3)


# ----------------------------------------------------------------------------
# Facial features: normal displacements (mm) in front coordinates (x, y).


def _soft_min(a, b, k):
  m = np.minimum(a, b)
  return m - k * np.log(np.exp((m - a) / k) + np.exp((m - b) / k))


def _nose(x, y):
  """Nose dorsum, rounded tip, columella and alae."""
  # Profile height: the dorsum rises from the nasion to the tip, the
  # columella rises from the subnasale to the tip; a soft minimum of the two
  # rounds the tip, a soft plus keeps it above the lip.
  t = np.clip((_NASION_Y + 4.0 - y) / (_NASION_Y + 4.0 - _NOSE_TIP_Y), 0, 1)
  dorsum = 2.0 + 16.5 * t**1.25
  columella = 1.0 + (y - _SUBNASALE_Y) * 2.6
  height = _soft_min(dorsum, columella, 2.0)
  height = 0.8 * np.log1p(np.exp(height / 0.8))
  height *= _smoothstep(_NASION_Y + 14.0, _NASION_Y, y)
  width = 5.5 + 5.0 * t**1.5
  ridge_shape = height * np.exp(-0.5 * (x / width)**2)
  tip = 2.0 * _gauss(x, y, 0.0, _NOSE_TIP_Y - 2.0, 5.5, 3.5)
  # Alae: wings along the lower nose sides, tapering upwards into it.
  def ala(xx):
    along = (y + 12.0) / 7.0
    across = (xx + 11.5 + 0.35 * (y + 12.0)) / 3.2
    return np.exp(-0.5 * (along**2 + across**2))
  alae = _pair(ala, x) * 4.0
  nostrils = _pair(lambda xx: _gauss(xx, y, -5.0, -14.0, 2.2, 1.4), x) * -2.0
  alar_groove = _pair(
      lambda xx: _gauss(np.hypot(xx + 11.0, y + 11.0), 0.0, 6.3, 0.0, 1.2,
                        1.0), x) * -1.2 * _smoothstep(-3.0, -9.0, y)
  return ridge_shape + tip + alae + nostrils + alar_groove


def _eye_frame(x, y):
  """Almond-shaped palpebral fissure of the eye at x < 0.

  Returns:
    s: position along the fissure, 0 at the inner corner, 1 at the outer one.
    upper, lower: lid-margin heights (mm) at x.
  """
  s = (-x - _EYE_INNER_X) / (_EYE_OUTER_X - _EYE_INNER_X)
  sc = np.clip(s, 0.0, 1.0)
  axis = _EYE_Y - 1.0 + 2.5 * sc
  bell = np.sin(np.pi * sc)
  upper = axis + 5.2 * bell**0.85 * (1.0 + 0.15 * (1.0 - 2 * sc))
  lower = axis - 3.6 * bell**0.9 * (1.0 - 0.1 * (1.0 - 2 * sc))
  return s, upper, lower


def _eye_aperture(x, y):
  """Soft inside-ness (1 on the visible eyeball) of the eye at x < 0."""
  s, upper, lower = _eye_frame(x, y)
  margin = np.minimum(upper - y, y - lower)
  along = np.minimum(s, 1.0 - s) * (_EYE_OUTER_X - _EYE_INNER_X)
  return _smoothstep(-0.3, 0.5, margin) * _smoothstep(0.0, 1.0, along)


def _eye_one(x, y):
  """Socket, eyeball and lids of the eye at x < 0."""
  cx = -0.5 * (_EYE_INNER_X + _EYE_OUTER_X)
  socket = -10.0 * _gauss(x, y, cx + 1.0, _EYE_Y + 3.0, 14.0, 10.5)
  r2 = ((x - cx) / 15.0)**2 + ((y - _EYE_Y) / 12.0)**2
  eyeball = 8.5 * np.clip(1.0 - r2, 0.0, 1.0)**1.5
  s, upper, lower = _eye_frame(x, y)
  outside = np.maximum(np.maximum(y - upper, lower - y), 0.0)
  along = np.maximum(np.maximum(-s, s - 1.0), 0.0) * (
      _EYE_OUTER_X - _EYE_INNER_X)
  dist = np.hypot(outside, along)
  aperture = _eye_aperture(x, y)
  lids = 1.3 * np.exp(-(dist / 3.5)**2) * (1.0 - aperture)
  crease = -1.0 * np.exp(-((y - upper - 6.0) / 2.0)**2) * np.exp(
      -(along / 4.0)**2) * (y > upper)
  return socket + eyeball + lids + crease - 0.8 * aperture


def _brows(x, y):
  """Supraorbital ridge (brow bone) and the glabella."""
  arch = 48.0 + 3.0 * np.exp(-0.5 * ((np.abs(x) - 32.0) / 15.0)**2)
  ridge = 4.5 * np.exp(-0.5 * ((y - arch) / 6.0)**2) * np.exp(
      -0.5 * (x / 48.0)**4)
  glabella = 1.5 * _gauss(x, y, 0.0, 46.0, 9.0, 6.0)
  nasion = -2.0 * _gauss(x, y, 0.0, _NASION_Y, 7.0, 4.0)
  return ridge + glabella + nasion


def _cheeks(x, y):
  bones = _pair(lambda xx: _gauss(xx, y, -47.0, 10.0, 13.0, 9.0), x) * 5.0
  fullness = _pair(lambda xx: _gauss(xx, y, -38.0, -22.0, 16.0, 14.0), x) * 3.
  temples = _pair(lambda xx: _gauss(xx, y, -62.0, 40.0, 9.0, 12.0), x) * -3.5
  # Nasolabial fold: a groove from the ala towards the mouth corner.
  def fold(xx):
    ax, ay, bx, by = -17.0, -12.0, -31.0, -46.0
    t = np.clip(((xx - ax) * (bx - ax) + (y - ay) * (by - ay)) /
                ((bx - ax)**2 + (by - ay)**2), 0.0, 1.0)
    d = np.hypot(xx - ax - t * (bx - ax), y - ay - t * (by - ay))
    return -0.9 * np.exp(-0.5 * (d / 3.0)**2) * np.sin(np.pi * t)**0.5
  return bones + fullness + temples + _pair(fold, x)


def _mouth_width_profile(x):
  """1 across the mouth, falling to 0 at the corners."""
  return np.clip(1.0 - (x / _MOUTH_HALF_WIDTH)**2, 0.0, 1.0)**0.6


def _lips(x, y):
  """Upper and lower lip vermilion, the muzzle and the mouth-slit pocket."""
  w = _mouth_width_profile(x)
  cupid = 1.0 + 0.25 * np.exp(-0.5 * ((np.abs(x) - 5.0) / 3.0)**2) - (
      0.15 * np.exp(-0.5 * (x / 2.0)**2))
  up_h = 7.5 * cupid * w**0.5
  up = y - _MOUTH_Y
  upper = 5.5 * w * np.exp(-0.5 * ((up - 0.45 * up_h) / (0.42 * up_h +
                                                          0.5))**2)
  upper *= up > 0
  lo_h = 9.0 * w**0.5
  lower = 6.0 * w * np.exp(-0.5 * ((-up - 0.45 * lo_h) / (0.42 * lo_h +
                                                           0.5))**2)
  lower *= up < 0
  pocket = -7.0 * (np.abs(up) < 0.5) * w**0.7
  muzzle = 7.0 * _gauss(x, y, 0.0, _MOUTH_Y + 2.0, 22.0, 17.0)
  philtrum = -0.8 * np.exp(-0.5 * (x / 2.0)**2) * _smoothstep(
      _MOUTH_Y + up_h, _MOUTH_Y + up_h + 2, y) * _smoothstep(
          _SUBNASALE_Y, _SUBNASALE_Y - 3.0, y)
  return upper + lower + pocket + muzzle + philtrum


def _chin(x, y):
  mentolabial = -2.5 * _gauss(x, y, 0.0, _MOUTH_Y - 15.0, 14.0, 3.5)
  protuberance = 4.5 * _gauss(x, y, 0.0, -74.0, 14.0, 8.0)
  return mentolabial + protuberance


_FEATURES = {
    'nose': _nose,
    'eyes': lambda x, y: _pair(_eye_one, x, y),
    'brows': _brows,
    'cheeks': _cheeks,
    'lips': _lips,
    'chin': _chin,
}


# ----------------------------------------------------------------------------
# Assembly.


def _grid_normals(points):
  """Outward unit normals of a [R, C, 3] grid surface (rows up, cols right)."""
  d_col = np.gradient(points, axis=1)
  d_row = np.gradient(points, axis=0)
  n = np.cross(d_col, d_row)
  return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def _grid_triangles(rows, cols):
  """Two counter-clockwise (from +z) triangles per quad, mirror-symmetric."""
  r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing='ij')
  bl = r * cols + c
  br, tl = bl + 1, bl + cols
  tr = tl + 1
  left = (c < (cols - 1) // 2)
  # Left half: diagonal bl-tr; right half: the mirror diagonal br-tl.
  t1 = np.where(left[..., None], np.stack([bl, br, tr], -1),
                np.stack([bl, br, tl], -1))
  t2 = np.where(left[..., None], np.stack([bl, tr, tl], -1),
                np.stack([br, tr, tl], -1))
  return np.concatenate([t1.reshape(-1, 3), t2.reshape(-1, 3)]).astype(
      np.int32)


def _symmetrize(field, mirror, sign=1.0, vector=True):
  """Projects fields onto their (anti)symmetric parts under x -> -x.

  Args:
    field: [V, C] or [V, C, K].
    mirror: [V] mirror vertex of each vertex.
    sign: +1 (symmetric) or -1 (antisymmetric), scalar or [K].
    vector: the field is a displacement whose x component flips sign;
      otherwise (colours) the channels are left as they are.
  """
  flipped = field[mirror]
  if vector:
    flipped = flipped * np.array([-1.0, 1.0, 1.0]).reshape(
        (3,) + (1,) * (field.ndim - 2))
  return 0.5 * (field + np.asarray(sign) * flipped)


@functools.lru_cache(maxsize=None)
def _build():
  """Builds every array of the model; returns (make_model kwargs, ModelInfo)."""
  rows_y = _row_heights()
  theta = _column_angles()
  num_rows, num_cols = rows_y.size, theta.size
  th, yy = np.meshgrid(theta, rows_y)
  radius = _ring_radius(th, yy)
  base = np.stack([radius * np.sin(th), yy, radius * np.cos(th)], axis=-1)
  normals = _grid_normals(base)
  fx, fy = base[..., 0], yy
  parts = {k: fn(fx, fy) for k, fn in _FEATURES.items()}
  # Features fade out towards the sides of the head.
  front = _smoothstep(np.radians(80), np.radians(55), np.abs(th))
  displacement = sum(parts.values()) * front
  mean = base + normals * displacement[..., None]

  col_index = np.arange(num_cols)
  mirror = (np.arange(num_rows)[:, None] * num_cols +
            col_index[::-1][None, :]).reshape(-1)
  mean = _symmetrize(mean.reshape(-1, 3), mirror)
  triangles = _grid_triangles(num_rows, num_cols)

  ctx = _Context(rows_y=rows_y, theta=theta, base=base.reshape(-1, 3),
                 normals=normals.reshape(-1, 3), x=fx.reshape(-1),
                 y=fy.reshape(-1), th=th.reshape(-1), mean=mean,
                 mirror=mirror, front=front.reshape(-1),
                 parts={k: (v * front).reshape(-1) for k, v in parts.items()},
                 num_cols=num_cols)
  landmarks = _landmarks(ctx)
  rng = np.random.default_rng(_SEED)
  shape_basis, shape_std, shape_names = _shape_basis(ctx, rng)
  expression_basis, expression_std = _expression_basis(ctx)
  albedo_mean = _albedo_mean(ctx)
  albedo_basis, albedo_std, albedo_names = _albedo_basis(ctx, albedo_mean, rng)

  arrays = dict(
      mean_shape=mean.astype(np.float32),
      triangles=triangles,
      landmark_indices=landmarks,
      shape_basis=shape_basis,
      shape_std=shape_std,
      expression_basis=expression_basis,
      expression_std=expression_std,
      albedo_mean=albedo_mean.astype(np.float32),
      albedo_basis=albedo_basis,
      albedo_std=albedo_std,
  )
  info = ModelInfo(
      grid_shape=(num_rows, num_cols),
      mirror_index=mirror.astype(np.int32),
      landmark_mirror=IBUG68_MIRROR.copy(),
      face_mask=_face_mask(ctx),
      shape_names=shape_names,
      expression_names=EXPRESSION_NAMES,
      expression_nonnegative=np.array(
          [n in EXPRESSION_NONNEGATIVE for n in EXPRESSION_NAMES]),
      albedo_names=albedo_names)
  return arrays, info


@dataclasses.dataclass
class _Context:
  """Per-vertex quantities shared by the builders ([V] or [V, 3], float64)."""
  rows_y: np.ndarray
  theta: np.ndarray
  base: np.ndarray
  normals: np.ndarray
  x: np.ndarray
  y: np.ndarray
  th: np.ndarray
  mean: np.ndarray
  mirror: np.ndarray
  front: np.ndarray
  parts: dict
  num_cols: int


def _face_mask(ctx):
  width, _, _ = _face_ring(ctx.y)
  above_jaw = ctx.y > _CHIN_Y + 2.0
  inside = np.abs(ctx.x) < np.minimum(width - 4.0, 66.0)
  return (above_jaw & inside & (ctx.y < 68.0) &
          (np.abs(ctx.th) < np.radians(72)))


# ----------------------------------------------------------------------------
# Landmarks.


def _jaw_contour_targets():
  """(theta, y) of iBUG 0..8 (subject's right = viewer's left, x < 0)."""
  ys = np.array([20.0, 4.0, -12.0, -28.0, -43.0, -57.0, -70.0, -80.0])
  thetas = []
  for y in ys:
    # The jaw edge: where the face ring sinks into the neck; higher up, the
    # frontal silhouette near the side of the face.
    cand = np.radians(np.linspace(5.0, 80.0, 301))
    width, depth, exponent = _face_ring(np.full_like(cand, y))
    face = _superellipse_radius(cand, width, depth, exponent)
    neck_scale = _smoothstep(-20.0, -45.0, y)
    neck = _superellipse_radius(cand, _NECK_WIDTH * neck_scale + 1e-3,
                                _NECK_DEPTH * neck_scale + 1e-3, 2.0)
    above = face > neck + 4.0
    limit = cand[-1] if above.all() else cand[np.argmin(above)] - np.radians(
        3.0)
    thetas.append(min(limit, np.radians(78.0)))
  return -np.array(thetas), ys


def _nearest_vertex(ctx, x, y, max_abs_theta=np.radians(75)):
  """Vertex whose front coordinates are nearest to (x, y), on x <= 0."""
  ok = (ctx.x <= 1e-9) & (np.abs(ctx.th) < max_abs_theta)
  d = np.where(ok, (ctx.x - x)**2 + (ctx.y - y)**2, np.inf)
  return int(np.argmin(d))


def _landmarks(ctx):
  """iBUG-68 vertex indices; right-hand side (x > 0) mirrors the left."""
  num_cols = ctx.num_cols
  mid = num_cols // 2
  rows_y = ctx.rows_y

  def on_midline(y):
    return int(np.argmin(np.abs(rows_y - y))) * num_cols + mid

  def on_grid(theta, y):
    r = int(np.argmin(np.abs(rows_y - y)))
    c = int(np.argmin(np.abs(ctx.theta - theta)))
    return r * num_cols + c

  lm = np.full(68, -1, np.int64)
  jaw_theta, jaw_y = _jaw_contour_targets()
  for i, (t, y) in enumerate(zip(jaw_theta, jaw_y)):
    lm[i] = on_grid(t, y)
  lm[8] = on_midline(_CHIN_Y + 1.0)
  # Brows 17-21 (viewer's left, outer to inner).
  for i, bx in zip(range(17, 22), (-54.0, -45.0, -35.0, -25.0, -15.0)):
    arch = 48.0 + 3.0 * np.exp(-0.5 * ((abs(bx) - 32.0) / 15.0)**2)
    lm[i] = _nearest_vertex(ctx, bx, arch + 1.0 - 0.05 * abs(bx + 32.0))
  # Nose bridge 27-30: nasion to tip (30 = the most protruding midline row).
  for i, y in zip(range(27, 30), (_NASION_Y - 2.0, 22.0, 8.0)):
    lm[i] = on_midline(y)
  midline = np.arange(rows_y.size) * num_cols + mid
  nose_rows = midline[(rows_y > _SUBNASALE_Y) & (rows_y < 10.0)]
  lm[30] = nose_rows[np.argmax(ctx.mean[nose_rows, 2])]
  # Nose bottom 31-35.
  lm[31] = _nearest_vertex(ctx, -10.5, _SUBNASALE_Y + 2.0)
  lm[32] = _nearest_vertex(ctx, -5.0, _SUBNASALE_Y + 0.5)
  lm[33] = on_midline(_SUBNASALE_Y + 0.5)
  # Eyes 36-41: outer corner, upper lid x2, inner corner, lower lid x2.
  for i, s in zip((36, 37, 38, 39, 40, 41),
                  (1.0, 0.68, 0.32, 0.0, 0.32, 0.68)):
    ex = -(_EYE_INNER_X + s * (_EYE_OUTER_X - _EYE_INNER_X))
    _, upper, lower = _eye_frame(np.array(ex), np.array(0.0))
    if i in (37, 38):
      ey = float(upper)
    elif i in (40, 41):
      ey = float(lower)
    else:
      ey = float(0.5 * (upper + lower))
    lm[i] = _nearest_vertex(ctx, ex, ey)
  # Outer lips 48-51 (48: corner on the viewer's left), 57-59 below.
  mouth = np.argmin(np.abs(rows_y - (_MOUTH_Y + 0.35)))
  lm[48] = mouth * num_cols + int(np.argmin(
      np.abs(ctx.base[mouth * num_cols:(mouth + 1) * num_cols, 0] +
             _MOUTH_HALF_WIDTH - 0.5)))
  lm[49] = _nearest_vertex(ctx, -14.0, _MOUTH_Y + 6.0)
  lm[50] = _nearest_vertex(ctx, -5.5, _MOUTH_Y + 8.5)
  lm[51] = on_midline(_MOUTH_Y + 6.5)
  lm[57] = on_midline(_MOUTH_Y - 9.0)
  lm[58] = _nearest_vertex(ctx, -7.0, _MOUTH_Y - 9.0)
  lm[59] = _nearest_vertex(ctx, -15.0, _MOUTH_Y - 7.0)
  # Inner lips: 60 inner corner, 61-62 upper contact, 66-67 lower contact.
  upper_contact = int(np.argmin(np.abs(rows_y - (_MOUTH_Y + 1.1))))
  lower_contact = int(np.argmin(np.abs(rows_y - (_MOUTH_Y - 1.1))))

  def on_row(row, x):
    return row * num_cols + int(np.argmin(np.abs(
        ctx.base[row * num_cols:(row + 1) * num_cols, 0] - x)))

  lm[60] = on_row(mouth, -_MOUTH_HALF_WIDTH + 4.0)
  lm[61] = on_row(upper_contact, -9.0)
  lm[62] = upper_contact * num_cols + mid
  lm[66] = lower_contact * num_cols + mid
  lm[67] = on_row(lower_contact, -9.0)
  # Right-hand side by mirroring.
  for i in range(68):
    j = IBUG68_MIRROR[i]
    if lm[j] < 0 and lm[i] >= 0:
      lm[j] = ctx.mirror[lm[i]]
  assert (lm >= 0).all(), np.nonzero(lm < 0)
  return lm.astype(np.int32)


# ----------------------------------------------------------------------------
# Shape basis.


def _dct_fields(ctx, max_freq):
  """Low-frequency cosine fields over the grid parameters.

  Returns:
    fields: [V, F], cos(p pi (u + 1) / 2) cos(q pi v) for p + q <= max_freq,
      u in [-1, 1] across columns, v in [0, 1] up the rows.
    freq: [F] p + q.
  """
  num_rows = ctx.rows_y.size
  u = np.linspace(-1.0, 1.0, ctx.num_cols)
  v = np.linspace(0.0, 1.0, num_rows)
  fields, freq = [], []
  for p in range(max_freq + 1):
    for q in range(max_freq + 1 - p):
      fu = np.cos(0.5 * np.pi * p * (u + 1.0))
      fv = np.cos(np.pi * q * v)
      fields.append((fv[:, None] * fu[None, :]).reshape(-1))
      freq.append(p + q)
  return np.stack(fields, axis=-1), np.array(freq, np.float64)


def _random_smooth_fields(ctx, rng, count, channels):
  """`count` random smooth fields [V, channels, count], rougher as k grows.

  Random combinations of the cosine fields with a decaying spectrum whose
  cut-off frequency rises with k, weighted towards the front of the head.
  One matrix product for all fields: many small BLAS calls are slow on a
  busy machine.
  """
  dct, freq = _dct_fields(ctx, 8)
  weight = 0.35 + 0.65 * _smoothstep(np.radians(85), np.radians(45),
                                     np.abs(ctx.th))
  cutoff = 3 + (6 * np.arange(count)) // count
  spectrum = (freq[:, None] <= cutoff[None, :]) * np.exp(-0.25 * freq)[:, None]
  coeff = rng.standard_normal((freq.size, channels, count)) * spectrum[:, None]
  fields = (dct @ coeff.reshape(freq.size, -1)).reshape(-1, channels, count)
  return fields * weight[:, None, None]


def _unit_rms(fields):
  """Scales each field [V, C, K] to unit per-vertex RMS."""
  return fields / np.sqrt(np.mean(np.sum(fields**2, axis=1), axis=0))


def _shape_semantic(ctx):
  """Named identity deformations at about one standard deviation ([V, 3])."""
  x, y, z = ctx.mean[:, 0], ctx.mean[:, 1], ctx.mean[:, 2]
  n = ctx.normals
  zeros = np.zeros_like(x)
  face = ctx.front
  lower = _smoothstep(-25.0, -70.0, y)
  mouth = _gauss(x, y, 0.0, _MOUTH_Y, 24.0, 13.0)
  eyes_band = _pair(lambda xx: _gauss(xx, y, -31.0, _EYE_Y, 16.0, 11.0), x)
  nose_zone = _gauss(x, y, 0.0, -4.0, 16.0, 22.0)

  def vec(dx, dy, dz):
    return np.stack([dx + zeros, dy + zeros, dz + zeros], axis=-1)

  def along_normal(d):
    return n * d[:, None]

  return {
      'face_width': vec(0.055 * x, 0, 0),
      'face_height': vec(0, 0.045 * y, 0),
      'face_depth': vec(0, 0, 0.05 * z),
      'jaw_width': vec(0.10 * x * lower, 0, 0),
      'lower_face_length': vec(0, -0.12 * np.minimum(y - _MOUTH_Y + 15.0, 0) -
                               0.07 * lower * 20.0, 0) * face[:, None],
      'midface_length': vec(0, -4.0 * _smoothstep(_NASION_Y, _SUBNASALE_Y, y),
                            0) * face[:, None],
      'nose_protrusion': along_normal(0.22 * ctx.parts['nose']),
      'nose_width': vec(0.14 * x * nose_zone, 0, 0),
      'eye_spacing': vec(2.5 * np.tanh(x / 12.0) * eyes_band, 0, 0),
      'eye_height': vec(0, 2.5 * eyes_band, 0),
      'mouth_width': vec(0.12 * x * mouth, 0, 0),
      'lip_fullness': along_normal(0.3 * np.maximum(ctx.parts['lips'], 0) *
                                   mouth),
      'cheek_fullness': along_normal(4.0 * _pair(
          lambda xx: _gauss(xx, y, -42.0, -25.0, 17.0, 15.0), x) * face),
      'cheekbones': along_normal(0.4 * ctx.parts['cheeks']),
      'brow_ridge': along_normal(0.4 * ctx.parts['brows'] +
                                 0.2 * ctx.parts['eyes']),
      'forehead_slope': vec(0, 0, -0.12 * np.maximum(y - 40.0, 0.0) *
                            np.cos(ctx.th)),
      'chin_protrusion': vec(0, -1.0, 4.0) * _gauss(
          x, y, 0.0, -76.0, 18.0, 12.0)[:, None],
  }


def _orthogonalize(fields, num_leading_drop, names):
  """Gram-Schmidt of the columns of [V, 3, K] fields, sorted by magnitude.

  Each input column is a deformation at one standard deviation; the first
  `num_leading_drop` columns (e.g. rigid motions) are projected out and
  dropped. Output basis columns are orthogonal with unit per-vertex RMS
  (squared norm V); std is the per-vertex RMS of each orthogonalised column
  at one standard deviation. Cholesky-QR: R from the Gram matrix, Q = A R^-1,
  which is much faster than a Householder QR of the tall matrix.

  Returns:
    basis [V, 3, K - drop] float32, std [K - drop] float32, names.
  """
  num_v = fields.shape[0]
  mat = fields.reshape(num_v * 3, -1).astype(np.float32, copy=False)
  # float32 products (fast), float64 factorisation, then one re-projection
  # pass (CholeskyQR2) to restore orthogonality lost to float32 rounding.
  upper = np.linalg.cholesky((mat.T @ mat).astype(np.float64)).T
  q = mat @ np.linalg.inv(upper).astype(np.float32)
  upper2 = np.linalg.cholesky((q.T @ q).astype(np.float64)).T
  magnitude = np.diag(upper2 @ upper)[num_leading_drop:]
  order = np.argsort(-magnitude, kind='stable')
  keep = num_leading_drop + order
  fix = np.linalg.inv(upper2)[:, keep] * np.sqrt(num_v)
  basis = (q @ fix.astype(np.float32)).reshape(num_v, 3, -1)
  std = magnitude[order] / np.sqrt(num_v)
  names = names[num_leading_drop:]
  return basis, std.astype(np.float32), tuple(names[i] for i in order)


def _rigid_fields(ctx):
  """Translations and infinitesimal rotations ([V, 3, 6])."""
  p = ctx.mean
  eye = np.eye(3)
  trans = [np.broadcast_to(eye[i], p.shape) for i in range(3)]
  rots = [np.cross(eye[i], p) for i in range(3)]
  return np.stack(trans + rots, axis=-1)


def _shape_basis(ctx, rng):
  semantic = _shape_semantic(ctx)
  count = _NUM_SHAPE - len(semantic)
  # Identity is mostly symmetric: one random field in four is antisymmetric.
  k = np.arange(count)
  randoms = _symmetrize(_random_smooth_fields(ctx, rng, count, 3),
                        ctx.mirror, np.where(k % 4 == 3, -1.0, 1.0))
  randoms = _unit_rms(randoms) * 2.2 * (1.0 + k / 8.0)**-0.9
  fields = np.concatenate([
      _unit_rms(_rigid_fields(ctx)),
      _symmetrize(np.stack(list(semantic.values()), axis=-1), ctx.mirror),
      randoms], axis=-1, dtype=np.float32)
  names = ['rigid'] * 6 + list(semantic) + [f'random_{i:02d}' for i in k]
  return _orthogonalize(fields, 6, names)


# ----------------------------------------------------------------------------
# Expression basis.


def _expression_fields(ctx):
  """Each action at full strength ([V, 3] mm), keyed by name."""
  x, y, z = ctx.mean[:, 0], ctx.mean[:, 1], ctx.mean[:, 2]
  n = ctx.normals
  zeros = np.zeros_like(x)
  front = ctx.front
  w_mouth = _mouth_width_profile(x)
  below_slit = (y < _MOUTH_Y).astype(np.float64)
  # Lower jaw membership: a hard step across the slit between the corners,
  # a smooth ramp through the cheeks beyond them.
  jaw = w_mouth * below_slit + (1.0 - w_mouth) * _smoothstep(
      _MOUTH_Y + 12.0, _MOUTH_Y - 14.0, y)
  jaw *= _smoothstep(np.radians(85), np.radians(55), np.abs(ctx.th))

  def vec(dx, dy, dz):
    return np.stack([dx + zeros, dy + zeros, dz + zeros], axis=-1)

  # Jaw rotation about the temporomandibular axis (x axis through pivot).
  pivot_y, pivot_z, angle = 5.0, -5.0, 0.2
  ry, rz = y - pivot_y, z - pivot_z
  rot_dy = ry * (np.cos(angle) - 1.0) - rz * np.sin(angle)
  rot_dz = ry * np.sin(angle) + rz * (np.cos(angle) - 1.0)
  jaw_open = vec(0, rot_dy * jaw, rot_dz * jaw)

  def corner(sign_x, sx=11.0, sy=9.0):
    return _gauss(x, y, sign_x * _MOUTH_HALF_WIDTH, _MOUTH_Y, sx, sy)

  def smile_side(s):
    c = corner(s)
    cheek = _gauss(x, y, s * 36.0, -14.0, 14.0, 12.0)
    lid = _gauss(x, y, s * 31.0, _EYE_Y - 6.0, 10.0, 3.5)
    return (vec(s * 4.5 * c, 6.0 * c + 3.0 * cheek + 1.2 * lid, -3.0 * c) +
            n * (3.0 * cheek)[:, None])

  smile = smile_side(-1.0) + smile_side(1.0)
  frown = vec(0, -5.0 * (corner(-1) + corner(1)), -1.0 * (corner(-1) +
                                                           corner(1)))
  lips_zone = _gauss(x, y, 0.0, _MOUTH_Y, 20.0, 11.0)
  pucker = vec(-0.35 * x * lips_zone, 0, 8.0 * lips_zone)
  stretch = vec(6.0 * (corner(1, 14.0) - corner(-1, 14.0)),
                -1.0 * (corner(1) + corner(-1)), -2.0 * (corner(1) +
                                                         corner(-1)))

  def brow_raise_side(s):
    band = _smoothstep(_EYE_Y + 8.0, _EYE_Y + 17.0, y) * (1.0 - 0.6 *
                                                           _smoothstep(
                                                               55.0, 95.0, y))
    lateral = _gauss(x, 0.0, s * 32.0, 0.0, 24.0, 1.0)
    return vec(0, 7.0 * band * lateral, 0.5 * band * lateral)

  brows_raise = brow_raise_side(-1.0) + brow_raise_side(1.0)
  inner = (_gauss(x, y, -17.0, 47.0, 10.0, 8.0) +
           _gauss(x, y, 17.0, 47.0, 10.0, 8.0))
  brows_frown = vec(-3.0 * np.tanh(x / 6.0) * inner, -4.5 * inner,
                    1.0 * inner)

  def eye_close_side(s):
    # s = +1: the subject's left eye (x > 0). The upper lid slides down onto
    # the lower lid margin; the lid skin above follows, fading towards the
    # brow.
    xs = -s * x  # the eye's x in the frame of the x < 0 eye
    along_s, upper, lower = _eye_frame(xs, y)
    gap = upper - lower
    window = np.exp(-(np.maximum(np.maximum(-along_s, along_s - 1.0), 0.0) *
                      (_EYE_OUTER_X - _EYE_INNER_X) / 4.0)**2)
    inside = (y > lower) & (y <= upper)
    above = y > upper
    dy = np.where(inside, -(y - lower) * 0.95, 0.0)
    dy = np.where(above, -gap * 0.95 * np.exp(-((y - upper) / 7.0)**2), dy)
    dy *= window * (xs < -2.0) * (np.abs(x) < 70.0)
    aperture = _eye_aperture(xs, y)
    # The squeezed eyeball surface tucks in behind the closing lid.
    return vec(0, dy, -1.5 * aperture)

  eyes_close = eye_close_side(1.0) + eye_close_side(-1.0)
  cheeks = _pair(lambda xx: _gauss(xx, y, -40.0, -34.0, 15.0, 13.0), x)
  cheek_puff = n * (7.0 * cheeks)[:, None] + vec(0, 0, 1.5 * lips_zone)
  alae = _pair(lambda xx: _gauss(xx, y, -13.0, -11.0, 8.0, 7.0), x)
  nose_wrinkle = vec(-0.8 * np.tanh(x / 6.0) * alae, 3.0 * alae, 0) + vec(
      0, 1.5 * _gauss(x, y, 0.0, _MOUTH_Y + 6.0, 16.0, 5.0), 0)
  upper_lip = _gauss(x, y, 0.0, _MOUTH_Y + 4.0, 15.0, 5.0) * (y > _MOUTH_Y)
  upper_lip_raise = vec(0, 3.5 * upper_lip, 1.5 * upper_lip)
  jaw_sideways = vec(6.0 * jaw, 0, 0)
  lips_all = _gauss(x, y, 0.0, _MOUTH_Y, 22.0, 12.0)
  mouth_sideways = vec(5.0 * lips_all, 0, 0)

  def asym(fields_left, fields_right):
    return fields_left - fields_right

  return {
      'jaw_open': jaw_open * front[:, None],
      'smile': smile,
      'mouth_frown': frown,
      'lip_pucker': pucker,
      'mouth_stretch': stretch,
      'brows_raise': brows_raise,
      'brows_frown': brows_frown,
      'eyes_close': eyes_close,
      'cheek_puff': cheek_puff,
      'nose_wrinkle': nose_wrinkle,
      'upper_lip_raise': upper_lip_raise,
      'smile_asym': asym(smile_side(1.0), smile_side(-1.0)),
      'eyes_close_asym': asym(eye_close_side(1.0), eye_close_side(-1.0)),
      'brows_raise_asym': asym(brow_raise_side(1.0), brow_raise_side(-1.0)),
      'jaw_sideways': jaw_sideways,
      'mouth_sideways': mouth_sideways,
  }


_EXPRESSION_STD = {
    'jaw_open': 0.35, 'smile': 0.45, 'mouth_frown': 0.3, 'lip_pucker': 0.3,
    'mouth_stretch': 0.3, 'brows_raise': 0.4, 'brows_frown': 0.35,
    'eyes_close': 0.3, 'cheek_puff': 0.25, 'nose_wrinkle': 0.25,
    'upper_lip_raise': 0.3, 'smile_asym': 0.2, 'eyes_close_asym': 0.15,
    'brows_raise_asym': 0.2, 'jaw_sideways': 0.2, 'mouth_sideways': 0.2,
}
_EXPRESSION_ANTISYMMETRIC = ('smile_asym', 'eyes_close_asym',
                             'brows_raise_asym', 'jaw_sideways',
                             'mouth_sideways')


def _expression_basis(ctx):
  fields = _expression_fields(ctx)
  sign = np.array([-1.0 if name in _EXPRESSION_ANTISYMMETRIC else 1.0
                   for name in EXPRESSION_NAMES])
  basis = _symmetrize(np.stack([fields[k] for k in EXPRESSION_NAMES], -1),
                      ctx.mirror, sign)
  std = np.array([_EXPRESSION_STD[k] for k in EXPRESSION_NAMES], np.float32)
  return basis.astype(np.float32), std


# ----------------------------------------------------------------------------
# Albedo.

_SKIN = np.array([0.50, 0.31, 0.23])
_LIPS = np.array([0.42, 0.15, 0.13])
_BROWS = np.array([0.10, 0.065, 0.045])
_SCLERA = np.array([0.72, 0.68, 0.64])
_IRIS = np.array([0.16, 0.085, 0.04])
_PUPIL = np.array([0.02, 0.02, 0.02])
_MOUTH_INSIDE = np.array([0.10, 0.025, 0.025])


def _blend(base, colour, weight):
  return base + weight[:, None] * (colour - base)


def _albedo_regions(ctx):
  """Soft masks [V] of the regions with their own colour."""
  x, y = ctx.x, ctx.y
  w = _mouth_width_profile(x)
  up = y - _MOUTH_Y
  lips = w**0.3 * ((up > 0) * _smoothstep(8.0, 6.5, up / np.maximum(
      w, 1e-3)**0.5) + (up <= 0) * _smoothstep(11.0, 9.5, -up / np.maximum(
          w, 1e-3)**0.5))
  pocket = (np.abs(up) < 0.5) * w**0.5
  arch = 48.0 + 3.0 * np.exp(-0.5 * ((np.abs(x) - 32.0) / 15.0)**2)
  brow_y = arch + 1.0 - 0.05 * np.abs(np.abs(x) - 32.0)
  brows = _smoothstep(4.0, 2.5, np.abs(y - brow_y) * (1.0 + 0.6 * _smoothstep(
      35.0, 55.0, np.abs(x)))) * _smoothstep(58.0, 52.0, np.abs(x)) * (
          _smoothstep(11.0, 14.0, np.abs(x)))
  aperture = _pair(_eye_aperture, x, y)
  cx = 0.5 * (_EYE_INNER_X + _EYE_OUTER_X)
  r_iris = np.hypot(np.abs(x) - cx + 0.5, y - _EYE_Y - 0.5)
  iris = _smoothstep(6.0, 5.2, r_iris) * aperture
  pupil = _smoothstep(2.4, 1.8, r_iris) * aperture
  _, upper, _ = _eye_frame(-np.abs(x), y)
  lashes = np.exp(-((y - upper - 0.4) / 0.8)**2) * _smoothstep(
      _EYE_INNER_X + 2.0, _EYE_INNER_X + 6.0, np.abs(x)) * _smoothstep(
          _EYE_OUTER_X + 2.0, _EYE_OUTER_X - 1.0, np.abs(x))
  cheeks = _pair(lambda xx: _gauss(xx, y, -38.0, -8.0, 14.0, 12.0), x)
  nostrils = _pair(lambda xx: _gauss(xx, y, -5.0, -14.5, 2.0, 1.2), x)
  return dict(lips=lips, pocket=pocket, brows=brows, aperture=aperture,
              iris=iris, pupil=pupil, lashes=lashes, cheeks=cheeks,
              nostrils=nostrils)


def _albedo_mean(ctx):
  reg = _albedo_regions(ctx)
  a = np.broadcast_to(_SKIN, ctx.mean.shape).copy()
  a = _blend(a, _SKIN * np.array([1.08, 0.92, 0.92]), 0.6 * reg['cheeks'])
  a = _blend(a, _LIPS, reg['lips'])
  a = _blend(a, _BROWS, 0.85 * reg['brows'])
  a = _blend(a, _SCLERA, reg['aperture'])
  a = _blend(a, _IRIS, reg['iris'])
  a = _blend(a, _PUPIL, reg['pupil'])
  a = _blend(a, _BROWS, 0.8 * reg['lashes'])
  a = _blend(a, _MOUTH_INSIDE, reg['pocket'])
  a = _blend(a, _MOUTH_INSIDE, 0.8 * np.clip(reg['nostrils'], 0, 1))
  return _symmetrize(a, ctx.mirror, 1.0, vector=False)


def _albedo_semantic(ctx, mean):
  reg = _albedo_regions(ctx)
  skin = 1.0 - np.clip(reg['aperture'] + reg['pocket'], 0, 1)
  face = ctx.front
  lower = _smoothstep(-15.0, -40.0, ctx.y) * _smoothstep(
      np.radians(80), np.radians(50), np.abs(ctx.th))
  under_eye = _pair(lambda xx: _gauss(xx, ctx.y, -30.0, _EYE_Y - 9.0, 10.0,
                                      3.5), ctx.x)

  def tint(rgb, mask):
    return np.asarray(rgb)[None, :] * mask[:, None]

  return {
      'skin_tone': mean * skin[:, None] * 0.3,
      'redness': tint([0.035, -0.008, -0.01], skin),
      'yellowness': tint([0.02, 0.015, -0.02], skin),
      'lip_colour': tint([0.06, -0.03, -0.02], reg['lips']),
      'blush': tint([0.06, -0.01, -0.01], reg['cheeks'] * skin),
      'brow_darkness': (_BROWS - mean) * (0.4 * reg['brows'])[:, None],
      'iris_colour': tint([0.04, 0.07, 0.1], reg['iris'] - reg['pupil']),
      'beard_shadow': tint([-0.06, -0.05, -0.035], lower * (
          1.0 - reg['lips']) * skin),
      'under_eye_shadow': tint([-0.04, -0.04, -0.02], under_eye * skin),
      'face_vs_neck': tint([0.03, 0.02, 0.015], (1.0 - face) * skin),
  }


def _albedo_basis(ctx, mean, rng):
  semantic = _albedo_semantic(ctx, mean)
  count = _NUM_ALBEDO - len(semantic)
  k = np.arange(count)
  # Mostly brightness of a skin-like hue, with some change of hue.
  colour = np.array([1.0, 0.7, 0.55])[:, None] * (
      1.0 + 0.12 * rng.standard_normal((3, count)))
  randoms = _symmetrize(_random_smooth_fields(ctx, rng, count, 1) * colour,
                        ctx.mirror, np.where(k % 3 == 2, -1.0, 1.0),
                        vector=False)
  randoms = _unit_rms(randoms) * 0.025 * (1.0 + k / 10.0)**-0.8
  fields = np.concatenate([
      _symmetrize(np.stack(list(semantic.values()), axis=-1), ctx.mirror,
                  vector=False), randoms], axis=-1, dtype=np.float32)
  names = list(semantic) + [f'random_{i:02d}' for i in k]
  return _orthogonalize(fields, 0, names)
