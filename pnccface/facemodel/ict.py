"""ICT-FaceKit Light ('ict_facekit_light'): a real 3DMM that ships with the package.

ICT-FaceKit (USC Institute for Creative Technologies, MIT licence, see
`third_party/ict_facekit/`) is a morphable model built from light-stage scans:
a generic neutral mesh, 100 identity PCA modes and 53 ARKit-style expression
blendshapes, all as per-vertex offsets of one 26,719-vertex quad mesh, in
centimetres (x right, y up, z towards the viewer: our model frame).

What the package ships (`third_party/ict_facekit/ict_facekit_face.npz`, written
by `convert` / `launch/convert_ict_facekit.py`) is the subset of the release
suited to reconstruction (`KEPT_VERTEX_RANGES`): face, head and neck (the
silhouette up to yaw 90 deg), the mouth socket (an open jaw shows a mouth
inside, not the back of the head) and the eye sockets and eyeballs (the face
mesh has holes at the eyes). Values are the release's, modes rounded to
float16; the quads are split into two triangles each.

`ict_facekit_model()` turns it into a `MorphableModel`:
- units: millimetres (the release's centimetres x `MM_PER_UNIT`), as the
  procedural model, so both have the same size (~180 mm wide head);
- identity: the 100 modes with `shape_std` = 1, because the modes already
  carry their standard deviation (the toolkit samples weights from N(0, 1));
- expression: the 53 blendshapes, weights meant to lie in [0, 1], all listed
  in `nonnegative_expressions`. `expression_std` (`EXPRESSION_STD`) is the
  spread of a typical face: the synthetic sampler draws |N(0, std^2)| for
  every blendshape (so mostly small, occasionally strong actions); MoFa's
  Gaussian prior N(0, std^2) on the weights keeps them small and does not
  forbid negative values (an extrapolated blendshape), which its
  photometric loss then has to justify;
- albedo: our own (`albedo_model`), built from the mesh and its landmarks;
  nothing comes from photos;
- NCC: 3DDFA's definition, per-axis min-max of the neutral over the kept
  vertices;
- landmarks: the toolkit's 68 iBUG vertices (fixed jaw-line vertices, not a
  sliding contour).
"""

from __future__ import annotations

import functools
import json
import lzma
import os
import pathlib
from typing import Mapping, Sequence

import numpy as np

from pnccface.facemodel import loading
from pnccface.facemodel import morphable

MODEL_NAME = 'ict_facekit_light'
MM_PER_UNIT = 10.0  # The release is in centimetres; the package in mm.
NUM_IDENTITY = 100
NUM_EXPRESSION = 53
NUM_VERTICES_ORIGINAL = 26719

# Vertex ranges of the original mesh that the package keeps (see
# ../shared/data/README.md "Real faces, offline" and the toolkit's README).
KEPT_VERTEX_RANGES = (
    ('face', 0, 9409),
    ('head_and_neck', 9409, 11248),
    ('mouth_socket', 11248, 13294),
    ('eye_sockets', 13294, 14062),
    ('eyeballs', 21451, 24591),
)

SHIPPED_PATH = (pathlib.Path(__file__).resolve().parents[2] / 'third_party' /
                'ict_facekit' / 'ict_facekit_face.npz')
_PATH_ENV = 'PNCCFACE_ICT_FACEKIT'

# Spread of the blendshape weights (see the module docstring): strong for the
# actions that dominate real faces' variation, small for the eye-gaze shapes
# (a gaze blendshape moves the lids, which 68 landmarks barely see).
_DEFAULT_EXPRESSION_STD = 0.2
_EXPRESSION_STD_BY_PREFIX = (
    ('jawOpen', 0.35), ('mouthSmile', 0.3), ('eyeBlink', 0.3),
    ('eyeLook', 0.1), ('jawLeft', 0.1), ('jawRight', 0.1),
    ('jawForward', 0.1), ('mouthLeft', 0.1), ('mouthRight', 0.1),
)


def expression_std(names: Sequence[str]) -> np.ndarray:
  """[Ke] float32 prior spread of each blendshape weight (unitless)."""
  out = []
  for name in names:
    std = _DEFAULT_EXPRESSION_STD
    for prefix, value in _EXPRESSION_STD_BY_PREFIX:
      if name.startswith(prefix):
        std = value
    out.append(std)
  return np.asarray(out, np.float32)


# ----------------------------------------------------------------------------
# The shipped model.


def shipped_path() -> pathlib.Path:
  """The shipped file, or `$PNCCFACE_ICT_FACEKIT` when set."""
  return pathlib.Path(os.environ.get(_PATH_ENV, SHIPPED_PATH))


def load_shipped(path: loading.PathLike | None = None) -> dict[str, np.ndarray]:
  """Arrays of the shipped file (see `reduce_to_kept`), checked."""
  path = loading.require_file(shipped_path() if path is None else path,
                              'ICT-FaceKit model file (see third_party/'
                              'ict_facekit/README.md)')
  with np.load(path, allow_pickle=False) as data:
    arrays = {k: data[k] for k in data.files}
  _check_arrays(arrays, path)
  return arrays


def ict_facekit_model(path: loading.PathLike | None = None
                      ) -> morphable.MorphableModel:
  """The ICT-FaceKit Light model as a `MorphableModel` (mm; cached).

  Args:
    path: a file written by `convert`; default the shipped one.
  """
  return _model(None if path is None else str(path))


@functools.lru_cache(maxsize=4)
def _model(path: str | None) -> morphable.MorphableModel:
  arrays = load_shipped(path)
  mean = arrays['neutral'].astype(np.float32) * MM_PER_UNIT
  # [K, V, 3] float16 offsets -> [V, 3, K] float32 bases.
  identity = np.moveaxis(arrays['identity_modes'], 0, -1).astype(
      np.float32) * MM_PER_UNIT
  expression = np.moveaxis(arrays['expression_modes'], 0, -1).astype(
      np.float32) * MM_PER_UNIT
  names = [str(n) for n in arrays['expression_names']]
  albedo_mean, albedo_basis, albedo_std = albedo_model(
      arrays['neutral'], arrays['vertex_ids'], arrays['landmarks68'])
  return morphable.make_model(
      name=MODEL_NAME,
      mean_shape=mean, triangles=arrays['triangles'],
      landmark_indices=arrays['landmarks68'],
      shape_basis=identity, shape_std=np.ones(identity.shape[-1], np.float32),
      expression_basis=expression, expression_std=expression_std(names),
      albedo_mean=albedo_mean, albedo_basis=albedo_basis,
      albedo_std=albedo_std,
      nonnegative_expressions=range(len(names)))


def expression_names(path: loading.PathLike | None = None) -> tuple[str, ...]:
  """Names of the model's expression components, in basis order."""
  return tuple(str(n) for n in load_shipped(path)['expression_names'])


# ----------------------------------------------------------------------------
# From the release's arrays to the shipped ones.


def kept_vertex_ids() -> np.ndarray:
  """[N] int32 original vertex indices the package keeps, in order."""
  return np.concatenate([np.arange(a, b) for _, a, b in KEPT_VERTEX_RANGES]
                        ).astype(np.int32)


def split_quads(quads: np.ndarray) -> np.ndarray:
  """[P, 4] polygons (triangles padded with -1) -> [T, 3] triangles.

  Quad (a, b, c, d) becomes (a, b, c) and (a, c, d): the same diagonal for
  every quad, keeping the winding (counter-clockwise seen from outside).
  """
  quads = np.asarray(quads)
  is_quad = quads[:, 3] >= 0
  first = quads[:, :3]
  second = quads[is_quad][:, [0, 2, 3]]
  # Interleave so that the two halves of a quad stay next to each other.
  out = np.empty((len(quads) + len(second), 3), np.int32)
  slot = np.arange(len(quads)) + np.concatenate([[0], np.cumsum(is_quad)[:-1]])
  out[slot] = first
  out[slot[is_quad] + 1] = second
  return out


def reduce_to_kept(release: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The release's arrays (the layout of ict_facekit_light.npz) -> shipped ones.

  Args:
    release: neutral [26719, 3], identity_modes [100, 26719, 3],
      expression_modes [53, 26719, 3], expression_names [53], quads [P, 4]
      (-1 padded), landmarks68 [68] (0-based); modes may hold fewer rows.

  Returns:
    dict with neutral [N, 3] float32 (cm), identity_modes [Ki, N, 3] and
    expression_modes [Ke, N, 3] float16, expression_names [Ke] str,
    triangles [T, 3] int32 over the kept vertices (polygons with all corners
    kept, quads split by `split_quads`), landmarks68 [68] int32 and
    vertex_ids [N] int32 (original index of each kept vertex).
  """
  neutral = np.asarray(release['neutral'], np.float32)
  if neutral.shape != (NUM_VERTICES_ORIGINAL, 3):
    raise loading.FaceFileError(
        f'ICT-FaceKit neutral mesh has shape {neutral.shape}, expected '
        f'({NUM_VERTICES_ORIGINAL}, 3)')
  ids = kept_vertex_ids()
  new_index = np.full(NUM_VERTICES_ORIGINAL + 1, -1, np.int64)  # [-1] -> -1
  new_index[ids] = np.arange(len(ids))
  quads = np.asarray(release['quads'], np.int64)
  remapped = np.where(quads >= 0, new_index[quads], -2)  # -2: padding
  keep = (remapped[:, :3] >= 0).all(axis=1) & (remapped[:, 3] != -1)
  remapped = np.where(remapped == -2, -1, remapped)[keep]
  landmarks = new_index[np.asarray(release['landmarks68'], np.int64)]
  if (landmarks < 0).any():
    raise loading.FaceFileError('ICT-FaceKit landmarks68 refer to vertices '
                                'outside the kept ranges')
  return {
      'neutral': neutral[ids],
      'identity_modes': np.asarray(release['identity_modes'])[:, ids].astype(
          np.float16),
      'expression_modes': np.asarray(
          release['expression_modes'])[:, ids].astype(np.float16),
      'expression_names': np.asarray(release['expression_names'], str),
      'triangles': split_quads(remapped),
      'landmarks68': landmarks.astype(np.int32),
      'vertex_ids': ids,
  }


def _check_arrays(arrays: Mapping[str, np.ndarray], path) -> None:
  want = ('neutral', 'identity_modes', 'expression_modes', 'expression_names',
          'triangles', 'landmarks68', 'vertex_ids')
  missing = [k for k in want if k not in arrays]
  if missing:
    raise loading.FaceFileError(f'{path}: missing arrays {missing}')
  num_v = arrays['neutral'].shape[0]
  for key in ('identity_modes', 'expression_modes'):
    if arrays[key].shape[1:] != (num_v, 3):
      raise loading.FaceFileError(
          f'{path}: {key} has shape {arrays[key].shape}, expected '
          f'(K, {num_v}, 3)')
  if arrays['expression_names'].shape != arrays['expression_modes'].shape[:1]:
    raise loading.FaceFileError(f'{path}: expression_names and '
                                'expression_modes disagree in length')


# ----------------------------------------------------------------------------
# The release's OBJ folder.


def read_obj(path: loading.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Vertices [V, 3] float64 and polygons [P, 4] int32 (0-based, -1 padded).

  Reads the release's OBJ files (`v` and `f` records; texture indices after
  '/' ignored), plain or xz-compressed (`.obj.xz`).
  """
  path = loading.require_file(path, 'OBJ file')
  opener = lzma.open if path.suffix == '.xz' else open
  vertices, polygons = [], []
  with opener(path, 'rt') as f:
    for line in f:
      if line.startswith('v '):
        vertices.append(line.split()[1:4])
      elif line.startswith('f '):
        corners = [int(c.split('/')[0]) - 1 for c in line.split()[1:]]
        if len(corners) not in (3, 4):
          raise loading.FaceFileError(
              f'{path}: a face with {len(corners)} corners; only triangles '
              'and quads are supported')
        polygons.append(corners + [-1] * (4 - len(corners)))
  if not vertices:
    raise loading.FaceFileError(f'{path}: no vertices')
  return (np.asarray(vertices, np.float64),
          np.asarray(polygons, np.int32).reshape(-1, 4))


def _find_obj(folder: pathlib.Path, stem: str) -> pathlib.Path:
  for name in (f'{stem}.obj', f'{stem}.obj.xz'):
    if (folder / name).is_file():
      return folder / name
  raise FileNotFoundError(f'{stem}.obj (or .obj.xz) not found in {folder}')


def read_release(folder: loading.PathLike,
                 identity_indices: Sequence[int] | None = None,
                 expression_names_to_read: Sequence[str] | None = None
                 ) -> dict[str, np.ndarray]:
  """Reads the release's model folder (ICT-FaceKit's `FaceXModel/`).

  It holds `generic_neutral_mesh.obj`, `identity000.obj` ...
  `identity099.obj`, one OBJ per expression (named as in
  `vertex_indices.json`'s "expressions") and `vertex_indices.json` (whose
  "idx_to_landmark_verts" are the 68 landmarks). OBJs may be xz-compressed.

  Args:
    folder: the folder.
    identity_indices: which identity modes to read (default all 100).
    expression_names_to_read: which expressions (default all in the json).

  Returns:
    The layout `reduce_to_kept` takes: modes as offsets from the neutral.
  """
  folder = pathlib.Path(folder)
  info_path = loading.require_file(folder / 'vertex_indices.json',
                                   'ICT-FaceKit vertex_indices.json')
  info = json.loads(info_path.read_text())
  neutral, quads = read_obj(_find_obj(folder, 'generic_neutral_mesh'))
  if identity_indices is None:
    identity_indices = range(NUM_IDENTITY)
  names = list(info['expressions'] if expression_names_to_read is None else
               expression_names_to_read)

  def offsets(stem):
    vertices, _ = read_obj(_find_obj(folder, stem))
    if vertices.shape != neutral.shape:
      raise loading.FaceFileError(
          f'{stem}: {vertices.shape[0]} vertices, the neutral mesh has '
          f'{neutral.shape[0]}')
    return vertices - neutral

  def stack(stems):
    return np.stack([offsets(s) for s in stems]) if stems else np.zeros(
        (0,) + neutral.shape)

  # Offsets in float64, as the text holds them, before any rounding.
  return {
      'neutral': neutral.astype(np.float32),
      'identity_modes': stack([f'identity{k:03d}' for k in identity_indices]),
      'expression_modes': stack(names),
      'expression_names': np.asarray(names, str),
      'quads': quads,
      'landmarks68': np.asarray(info['idx_to_landmark_verts'], np.int32),
  }


def convert(folder: loading.PathLike, output: loading.PathLike) -> pathlib.Path:
  """Release folder -> the shipped file (`np.savez_compressed`)."""
  arrays = reduce_to_kept(read_release(folder))
  output = pathlib.Path(output)
  output.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(output, **arrays)
  return output


# ----------------------------------------------------------------------------
# Albedo: our own, from the mesh and its landmarks.

# Linear RGB reflectances.
_SKIN = np.array([0.50, 0.31, 0.23])
_LIPS = np.array([0.42, 0.15, 0.13])
_BROWS = np.array([0.10, 0.065, 0.045])
_HAIR = np.array([0.08, 0.055, 0.04])
_SCLERA = np.array([0.72, 0.68, 0.64])
_IRIS = np.array([0.16, 0.085, 0.04])
_PUPIL = np.array([0.02, 0.02, 0.02])
_MOUTH_INSIDE = np.array([0.10, 0.025, 0.025])
_EYE_SOCKET = np.array([0.35, 0.15, 0.13])

_NUM_SMOOTH = 30


def _smoothstep(edge0, edge1, x):
  t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def _region_masks(vertex_ids: np.ndarray) -> dict[str, np.ndarray]:
  return {name: (vertex_ids >= a) & (vertex_ids < b)
          for name, a, b in KEPT_VERTEX_RANGES}


def _polygon_signed_distance(points, polygon):
  """Distance [N] of 2D points to a closed polygon [P, 2], negative inside."""
  a = polygon
  b = np.roll(polygon, -1, axis=0)
  ab = b - a
  ap = points[:, None, :] - a[None]
  t = np.clip(np.sum(ap * ab, -1) / np.sum(ab * ab, -1), 0.0, 1.0)
  dist = np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(axis=1)
  # Even-odd rule for inside.
  crosses = ((a[None, :, 1] > points[:, None, 1]) !=
             (b[None, :, 1] > points[:, None, 1])) & (
                 points[:, None, 0] < a[None, :, 0] + ab[None, :, 0] *
                 (points[:, None, 1] - a[None, :, 1]) /
                 np.where(ab[None, :, 1] == 0, 1e-12, ab[None, :, 1]))
  inside = crosses.sum(axis=1) % 2 == 1
  return np.where(inside, -dist, dist)


def _polyline_distance(points, line):
  a, b = line[:-1], line[1:]
  ab = b - a
  ap = points[:, None, :] - a[None]
  t = np.clip(np.sum(ap * ab, -1) / np.sum(ab * ab, -1), 0.0, 1.0)
  return np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(axis=1)


def _albedo_regions(neutral, vertex_ids, landmarks):
  """Soft masks [V] in [0, 1] of the regions with their own colour (cm)."""
  regions = _region_masks(vertex_ids)
  face = regions['face']
  lm = neutral[landmarks]
  xy = neutral[:, :2]
  # Only the front of the face can hold lips or brows.
  front = face & (neutral[:, 2] > lm[:, 2].min() - 1.0)
  lips = _smoothstep(0.12, -0.08, _polygon_signed_distance(
      xy, lm[48:60, :2])) * front
  brows = np.zeros(len(neutral))
  for line in (lm[17:22, :2], lm[22:27, :2]):
    brows = np.maximum(brows, _smoothstep(
        0.45, 0.25, _polyline_distance(xy, line + [0.0, 0.15])))
  brows *= front
  cheeks = np.zeros(len(neutral))
  for side in ((2, 31, 41), (14, 35, 46)):
    centre = lm[list(side), :2].mean(axis=0)
    cheeks = np.maximum(cheeks, np.exp(-0.5 * np.sum(
        (xy - centre)**2, -1) / 1.3**2))
  cheeks *= front
  # Chin, jaw and upper lip: where a beard grows.
  below_nose = _smoothstep(lm[33, 1], lm[33, 1] - 1.0, neutral[:, 1])
  beard = below_nose * (face | regions['head_and_neck']) * (
      neutral[:, 1] > lm[8, 1] - 3.0) * (1.0 - lips)
  # Scalp: above the brows and behind the forehead.
  top = lm[19, 1] + 4.5
  scalp = _smoothstep(top, top + 1.5, neutral[:, 1]) * (
      face | regions['head_and_neck']) + (
          _smoothstep(lm[:, 2].min() - 2.0, lm[:, 2].min() - 6.0,
                      neutral[:, 2]) * _smoothstep(lm[27, 1] - 1.0,
                                                   lm[27, 1] + 2.0,
                                                   neutral[:, 1]) *
          regions['head_and_neck'])
  scalp = np.clip(scalp, 0.0, 1.0)
  # Eyeballs: the iris and pupil are discs around each eye's front-most point.
  eyeballs = regions['eyeballs']
  iris = np.zeros(len(neutral))
  pupil = np.zeros(len(neutral))
  for sign in (-1.0, 1.0):
    eye = eyeballs & (np.sign(neutral[:, 0]) == sign)
    apex = neutral[eye][np.argmax(neutral[eye, 2])]
    r = np.linalg.norm(xy - apex[:2], axis=-1)
    forward = neutral[:, 2] > apex[2] - 0.8
    iris += eye * forward * _smoothstep(0.62, 0.55, r)
    pupil += eye * forward * _smoothstep(0.25, 0.2, r)
  return dict(face=face.astype(float),
              head_and_neck=regions['head_and_neck'].astype(float),
              mouth_socket=regions['mouth_socket'].astype(float),
              eye_sockets=regions['eye_sockets'].astype(float),
              eyeballs=eyeballs.astype(float), lips=lips, brows=brows,
              cheeks=cheeks, beard=beard, scalp=scalp, iris=iris, pupil=pupil)


def _blend(base, colour, weight):
  return base + weight[:, None] * (colour - base)


def albedo_model(neutral, vertex_ids, landmarks
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Our albedo model on the ICT surface: mean, basis, std.

  A skin colour with lips, brows, cheeks, a darker scalp, sclera/iris/pupil on
  the eyeballs and a dark mouth inside, placed by the 68 landmarks and the
  release's vertex ranges; then named components (skin tone, redness,
  yellowness, lip colour, blush, brow and hair darkness, iris colour, beard
  shadow, face vs neck) and `_NUM_SMOOTH` smooth low-frequency skin-hued
  fields (cosines of the normalised coordinates), orthogonalised with unit
  per-vertex RMS. Deterministic; nothing comes from photographs.

  Args:
    neutral: [V, 3] the neutral mesh (any units: only ratios to the
      landmarks' extent matter, positions are taken in cm-sized offsets).
    vertex_ids: [V] original vertex index of each vertex (`kept_vertex_ids`).
    landmarks: [68] vertex indices.

  Returns:
    albedo_mean [V, 3], albedo_basis [V, 3, Ka], albedo_std [Ka], float32
    linear RGB reflectance.
  """
  neutral = np.asarray(neutral, np.float64)
  reg = _albedo_regions(neutral, np.asarray(vertex_ids), np.asarray(landmarks))
  num_v = len(neutral)
  skin = 1.0 - np.clip(reg['eyeballs'] + reg['mouth_socket'] +
                       reg['eye_sockets'], 0.0, 1.0)
  mean = np.broadcast_to(_SKIN, (num_v, 3)).copy()
  mean = _blend(mean, _SKIN * np.array([1.08, 0.92, 0.92]), 0.6 * reg['cheeks'])
  mean = _blend(mean, _LIPS, reg['lips'])
  mean = _blend(mean, _BROWS, 0.85 * reg['brows'])
  mean = _blend(mean, _HAIR, 0.9 * reg['scalp'])
  mean = _blend(mean, _MOUTH_INSIDE, reg['mouth_socket'])
  mean = _blend(mean, _EYE_SOCKET, reg['eye_sockets'])
  mean = _blend(mean, _SCLERA, reg['eyeballs'])
  mean = _blend(mean, _IRIS, reg['iris'])
  mean = _blend(mean, _PUPIL, reg['pupil'])

  def tint(rgb, mask):
    return np.asarray(rgb)[None, :] * mask[:, None]

  bare_skin = skin * (1.0 - reg['scalp'])
  semantic = [
      mean * bare_skin[:, None] * 0.3,                           # skin tone
      tint([0.035, -0.008, -0.01], bare_skin),                   # redness
      tint([0.02, 0.015, -0.02], bare_skin),                     # yellowness
      tint([0.06, -0.03, -0.02], reg['lips']),                   # lip colour
      tint([0.06, -0.01, -0.01], reg['cheeks']),                 # blush
      (_BROWS - mean) * (0.4 * reg['brows'])[:, None],           # brows
      (_SKIN - _HAIR) * (0.5 * reg['scalp'])[:, None],           # hair
      tint([0.04, 0.07, 0.1], reg['iris'] - reg['pupil']),       # iris
      tint([-0.06, -0.05, -0.035], reg['beard'] * bare_skin),    # beard
      tint([0.03, 0.02, 0.015], reg['head_and_neck'] * bare_skin),
  ]
  lo, hi = neutral.min(axis=0), neutral.max(axis=0)
  u = (neutral - lo) / (hi - lo)  # NCC-like coordinates in [0, 1]
  hue = np.array([1.0, 0.7, 0.55])
  smooth = []
  freqs = [(p, q, r) for p in range(4) for q in range(4) for r in range(3)
           if 0 < p + q + r <= 4][:_NUM_SMOOTH]
  for k, (p, q, r) in enumerate(freqs):
    field = (np.cos(np.pi * p * u[:, 0]) * np.cos(np.pi * q * u[:, 1]) *
             np.cos(np.pi * r * u[:, 2]))
    amplitude = 0.025 * (1.0 + k / 10.0)**-0.8
    smooth.append(amplitude * field[:, None] * hue[None, :] * skin[:, None])
  fields = np.stack(semantic + smooth, axis=-1)  # [V, 3, K]
  basis, std = _orthogonalize(fields)
  return (np.clip(mean, 0.0, 1.0).astype(np.float32), basis, std)


def _orthogonalize(fields):
  """Orthogonalises [V, 3, K] fields -> unit per-vertex-RMS basis, std [K].

  Each column is a variation at one standard deviation; the orthogonalised
  column keeps its magnitude as std (per-vertex RMS, RGB norm). Cholesky-QR
  twice (R from the K x K Gram matrix): a Householder QR of the tall matrix
  takes seconds on a busy CPU, this takes milliseconds.
  """
  num_v = fields.shape[0]
  q = fields.reshape(num_v * 3, -1)
  diag = np.ones(q.shape[1])
  for _ in range(2):
    upper = np.linalg.cholesky(q.T @ q).T
    q = q @ np.linalg.inv(upper)
    diag = diag * np.diag(upper)
  basis = (q * np.sqrt(num_v)).reshape(num_v, 3, -1)
  return basis.astype(np.float32), (diag / np.sqrt(num_v)).astype(np.float32)
