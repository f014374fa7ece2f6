"""The Basel Face Model 2009 with 3DDFA's expression basis and 300W-LP trimming.

Files (see third_party/FORMATS.md; none ship with the project):
  `01_MorphableModel.mat` (BFM 2009): shapeMU [3N, 1], shapePC [3N, 199],
    shapeEV [199, 1], texMU [3N, 1], texPC [3N, 199], texEV [199, 1],
    tl [T, 3] 1-based; N = 53490, xyz interleaved per vertex.
  `model_info.mat` (3DDFA / 300W-LP): trimIndex [53215, 1] 1-based indices
    into the N BFM vertices, tri [3, T] 1-based into the trimmed vertices,
    keypoints [1, 68] 1-based into the trimmed vertices.
  `Model_Expression.mat` (3DDFA; also distributed as `Model_Exp.mat`):
    w_exp [3V, 29], mu_exp [3V, 1], sigma_exp [29, 1] on the trimmed vertices.

Coefficients stay raw, as the files and 300W-LP's `Shape_Para`/`Exp_Para`
use them: `vertices = mean + basis @ coeffs`. BFM's shapePC columns are
orthonormal and shapeEV holds the standard deviations of the coefficients,
which become `shape_std`. Shapes stay in BFM's micrometres so that 300W-LP's
`Pose_Para` scale applies unchanged; albedo is texMU / 255 (texPC scaled
alike, so albedo coefficients stay raw too).
"""

from __future__ import annotations

import numpy as np

from pnccface.facemodel import loading
from pnccface.facemodel.morphable import MorphableModel
from pnccface.facemodel.morphable import make_model
from pnccface.facemodel.morphable import normalized_coordinate_code
from pnccface.facemodel.morphable import NUM_LANDMARKS

# BFM 2009 stores colours in 0..255.
_TEXTURE_RANGE = 255.0


def load_bfm2009(model_path: loading.PathLike, *,
                 expression_path: loading.PathLike | None = None,
                 model_info_path: loading.PathLike | None = None,
                 landmark_indices=None,
                 name: str = 'bfm2009') -> MorphableModel:
  """Loads the BFM 2009 as a `MorphableModel`.

  The NCC is that of the neutral (trimmed) shapeMU, before the expression
  mean is added, as 3DDFA's `pncc_code` is.

  Args:
    model_path: `01_MorphableModel.mat`.
    expression_path: optional 3DDFA expression file (w_exp, optional mu_exp
      added to the mean, optional sigma_exp as expression_std). It lives on
      the trimmed vertices, so it needs `model_info_path` (or an untrimmed
      basis of matching size).
    model_info_path: optional `model_info.mat`; trims to its trimIndex and
      takes its `tri` and `keypoints` when present.
    landmark_indices: [68] 0-based vertex indices (after trimming); overrides
      model_info's keypoints. Required when model_info has none.
    name: the model's name.

  Returns:
    A validated `MorphableModel` in micrometres.

  Raises:
    FileNotFoundError: a file is missing.
    loading.FaceFileError: a key is missing or has the wrong shape.
  """
  bfm = loading.load_mat(model_path)
  shape_mean = loading.get_array(bfm, 'shapeMU', model_path, (None, 1),
                                 np.float64)
  num_full = _vertex_count(shape_mean, 'shapeMU', model_path)
  shape_basis = loading.get_array(bfm, 'shapePC', model_path,
                                  (3 * num_full, None), np.float64)
  shape_std = loading.get_vector(bfm, 'shapeEV', model_path,
                                 shape_basis.shape[1])
  tex_mean = loading.get_array(bfm, 'texMU', model_path, (3 * num_full, 1),
                               np.float64)
  tex_basis = loading.get_array(bfm, 'texPC', model_path,
                                (3 * num_full, None), np.float64)
  tex_std = loading.get_vector(bfm, 'texEV', model_path, tex_basis.shape[1])

  keep = np.arange(num_full)
  triangles = None
  info_landmarks = None
  if model_info_path is not None:
    info = loading.load_mat(model_info_path)
    keep = loading.get_vector(info, 'trimIndex', model_info_path,
                              dtype=np.int64) - 1
    if keep.min() < 0 or keep.max() >= num_full:
      raise loading.FaceFileError(
          f'{model_info_path}: trimIndex (1-based) spans [{keep.min() + 1}, '
          f'{keep.max() + 1}], outside the {num_full} vertices of '
          f'{model_path}')
    if 'tri' in info:
      triangles = loading.triangles_from_file(
          info['tri'], 'tri', model_info_path, one_based=True,
          num_vertices=keep.size)
    if 'keypoints' in info:
      info_landmarks = loading.get_vector(
          info, 'keypoints', model_info_path, NUM_LANDMARKS, np.int64) - 1
  if triangles is None:
    full_triangles = loading.triangles_from_file(
        loading.get_key(bfm, 'tl', model_path), 'tl', model_path,
        one_based=True, num_vertices=num_full)
    triangles = _restrict_triangles(full_triangles, keep, num_full)

  def trim(flat, key):
    return loading.interleaved_to_vertices(flat, key, model_path)[keep]

  neutral = trim(shape_mean, 'shapeMU')[..., 0]
  mean_shape = neutral.copy()
  expression_basis = expression_std = None
  if expression_path is not None:
    expression_basis, expression_mean, expression_std = _load_expression(
        expression_path, keep.size)
    if expression_mean is not None:
      mean_shape = mean_shape + expression_mean

  if landmark_indices is None:
    landmark_indices = info_landmarks
  if landmark_indices is None:
    raise ValueError(
        f'{model_path}: no landmark indices; pass landmark_indices or a '
        f'model_info_path whose file has "keypoints"')

  return make_model(
      mean_shape=mean_shape,
      shape_basis=trim(shape_basis, 'shapePC'),
      shape_std=shape_std,
      expression_basis=expression_basis,
      expression_std=expression_std,
      albedo_mean=trim(tex_mean, 'texMU')[..., 0] / _TEXTURE_RANGE,
      albedo_basis=trim(tex_basis, 'texPC') / _TEXTURE_RANGE,
      albedo_std=tex_std,
      triangles=loading.orient_triangles_outward(mean_shape, triangles),
      landmark_indices=np.asarray(landmark_indices, np.int32),
      ncc=normalized_coordinate_code(neutral),
      name=name)


def _vertex_count(flat, key, path) -> int:
  if flat.shape[0] % 3:
    raise loading.FaceFileError(
        f'{path}: {key!r} has {flat.shape[0]} rows, not a multiple of 3 '
        f'(xyz per vertex)')
  return flat.shape[0] // 3


def _restrict_triangles(triangles, keep, num_full) -> np.ndarray:
  """Keeps the triangles whose three vertices survive trimming, renumbered."""
  new_index = np.full((num_full,), -1, np.int64)
  new_index[keep] = np.arange(keep.size)
  mapped = new_index[triangles]
  return mapped[np.all(mapped >= 0, axis=1)].astype(np.int32)


def _load_expression(path, num_vertices):
  """3DDFA's expression file -> ([V, 3, Ke], [V, 3] or None, [Ke] or None)."""
  contents = loading.load_mat(path)
  basis = loading.get_array(contents, 'w_exp', path, (None, None))
  if basis.shape[0] != 3 * num_vertices:
    raise loading.FaceFileError(
        f'{path}: \'w_exp\' has shape {basis.shape}, expected '
        f'({3 * num_vertices}, *) for {num_vertices} vertices (pass the '
        f'model_info.mat whose trimIndex it was built on)')
  mean = std = None
  if 'mu_exp' in contents:
    mean = loading.interleaved_to_vertices(
        loading.get_vector(contents, 'mu_exp', path, 3 * num_vertices),
        'mu_exp', path)
  if 'sigma_exp' in contents:
    std = loading.get_vector(contents, 'sigma_exp', path, basis.shape[1])
  return loading.interleaved_to_vertices(basis, 'w_exp', path), mean, std
