"""Face models from the files published with 3DDFA and 3DDFA_V2.

All live on the 53,215-vertex topology of the BFM as trimmed for 300W-LP (or
3DDFA_V2's 38,365-vertex neck-free subset of it), in BFM micrometres, with
xyz interleaved per vertex in the flat files. Coefficients are raw, as in
300W-LP's `Shape_Para[:40]` / `Exp_Para[:10]`; the standard deviations, when
available, come from `param_whitening.pkl` (the spread of the training
set's parameters, which is what 3DDFA's network regresses against).
See third_party/FORMATS.md.
"""

from __future__ import annotations

import pathlib

import numpy as np

from pnccface.facemodel import loading
from pnccface.facemodel.morphable import MorphableModel
from pnccface.facemodel.morphable import make_model
from pnccface.facemodel.morphable import NUM_LANDMARKS

NUM_PARAMS = 62
# Layout of the 62 parameters: 12 pose, then 40 shape, then 10 expression.
_SHAPE_SLICE = slice(12, 52)
_EXPRESSION_SLICE = slice(52, 62)


def read_param_whitening(path) -> tuple[np.ndarray, np.ndarray]:
  """3DDFA's `param_whitening.pkl` -> (mean [62], std [62]) float32.

  Accepts 3DDFA's keys (param_mean, param_std) and 3DDFA_V2's (mean, std).
  """
  contents = loading.load_pickle(path)
  keys = (('param_mean', 'param_std') if isinstance(contents, dict) and
          'param_mean' in contents else ('mean', 'std'))
  return tuple(
      loading.get_vector(contents, k, path, NUM_PARAMS) for k in keys)


def load_3ddfa_mean_model(directory, name: str = '3ddfa_mean'
                         ) -> MorphableModel:
  """The dense mean face of 3DDFA, without bases.

  Files in `directory`: u_shp.npy, u_exp.npy ([3V, 1] each; the mean face
  is their sum), tri.mat (key tri, [3, T] 1-based), keypoints_sim.npy
  ([204] into the interleaved vector), pncc_code.npy ([3, V], the NCC).

  Returns:
    A `MorphableModel` with V = 53215, T = 105840, empty bases; its NCC is
    3DDFA's pncc_code (the NCC of u_shp alone, which differs from that of
    u_shp + u_exp by up to 0.004).
  """
  d = pathlib.Path(directory)
  mean_shape = _mean_shape(d)
  num_v = mean_shape.shape[0]
  tri_path = d / 'tri.mat'
  triangles = loading.triangles_from_file(
      loading.get_key(loading.load_mat(tri_path), 'tri', tri_path), 'tri',
      tri_path, one_based=True, num_vertices=num_v)
  return make_model(
      mean_shape=mean_shape,
      triangles=loading.orient_triangles_outward(mean_shape, triangles),
      landmark_indices=_landmarks(d),
      ncc=_ncc(d / 'pncc_code.npy', num_v),
      name=name)


def load_3ddfa_noneck_model(directory, name: str = '3ddfa_noneck'
                           ) -> MorphableModel:
  """3DDFA_V2's neck-free subset of the mean face, without bases.

  Files in `directory`: those of `load_3ddfa_mean_model` except tri.mat and
  pncc_code.npy, plus indices_noneck.npy ([38365] 0-based into the 53215
  vertices), tri_noneck.pkl ([3, T] 0-based into the subset) and
  ncc_code_noneck.npy ([3, 38365]: the NCC renormalised over the subset).
  """
  d = pathlib.Path(directory)
  full = _mean_shape(d)
  indices_path = d / 'indices_noneck.npy'
  indices = loading.load_npy(indices_path).reshape(-1).astype(np.int64)
  if indices.min() < 0 or indices.max() >= full.shape[0]:
    raise loading.FaceFileError(
        f'{indices_path}: indices span [{indices.min()}, {indices.max()}], '
        f'outside the {full.shape[0]} vertices of the mean face')
  mean_shape = full[indices]
  tri_path = d / 'tri_noneck.pkl'
  triangles = loading.triangles_from_file(
      loading.load_pickle(tri_path), 'tri', tri_path, one_based=False,
      num_vertices=indices.size)
  new_index = np.full((full.shape[0],), -1, np.int64)
  new_index[indices] = np.arange(indices.size)
  landmarks = new_index[_landmarks(d)]
  if np.any(landmarks < 0):
    raise loading.FaceFileError(
        f'{indices_path}: drops landmark vertices '
        f'{_landmarks(d)[landmarks < 0].tolist()}')
  return make_model(
      mean_shape=mean_shape,
      triangles=loading.orient_triangles_outward(mean_shape, triangles),
      landmark_indices=landmarks,
      ncc=_ncc(d / 'ncc_code_noneck.npy', indices.size),
      name=name)


def load_3ddfa_sparse_model(directory, name: str = '3ddfa_sparse'
                           ) -> MorphableModel:
  """The 68-landmark model of 3DDFA: the bases at the landmarks only.

  Files in `directory`: u_base.txt [204], w_shp_base.txt [204, 40],
  w_exp_base.txt [204, 10] (rows xyz-interleaved per landmark); optional
  param_whitening.pkl for the coefficient stds (else ones) and optional
  pncc_code.npy + keypoints_sim.npy for the landmarks' NCC (else the NCC of
  the 68 points themselves).

  Returns:
    A `MorphableModel` with V = 68, no triangles ([0, 3]),
    landmark_indices = arange(68), 40 shape and 10 expression components.
  """
  d = pathlib.Path(directory)
  size = 3 * NUM_LANDMARKS
  mean = loading.load_txt(d / 'u_base.txt')
  mean = loading.check_shape(mean.reshape(-1), (size,), 'u_base',
                             d / 'u_base.txt')
  shape_basis = loading.check_shape(
      loading.load_txt(d / 'w_shp_base.txt'), (size, None), 'w_shp_base',
      d / 'w_shp_base.txt')
  expression_basis = loading.check_shape(
      loading.load_txt(d / 'w_exp_base.txt'), (size, None), 'w_exp_base',
      d / 'w_exp_base.txt')
  shape_std = expression_std = None
  if (d / 'param_whitening.pkl').is_file():
    _, std = read_param_whitening(d / 'param_whitening.pkl')
    shape_std = std[_SHAPE_SLICE][:shape_basis.shape[1]]
    expression_std = std[_EXPRESSION_SLICE][:expression_basis.shape[1]]
  ncc = None
  if (d / 'pncc_code.npy').is_file() and (d / 'keypoints_sim.npy').is_file():
    ncc = _ncc(d / 'pncc_code.npy')[_landmarks(d)]
  return make_model(
      mean_shape=loading.interleaved_to_vertices(mean, 'u_base', d),
      shape_basis=loading.interleaved_to_vertices(shape_basis, 'w_shp_base',
                                                  d),
      shape_std=shape_std,
      expression_basis=loading.interleaved_to_vertices(
          expression_basis, 'w_exp_base', d),
      expression_std=expression_std,
      triangles=np.zeros((0, 3), np.int32),
      landmark_indices=np.arange(NUM_LANDMARKS),
      ncc=ncc,
      name=name)


def load_3ddfa_v2_bfm(path, *, tri_path=None, whitening_path=None,
                      shape_dim: int = 40, exp_dim: int = 10,
                      name: str = '3ddfa_v2_bfm') -> MorphableModel:
  """3DDFA_V2's `bfm_noneck_v3.pkl` (or `bfm_noneck.pkl`) as a model.

  The pickle is a dict: u [3V, 1], w_shp [3V, >=shape_dim],
  w_exp [3V, >=exp_dim], tri [3, T] or [T, 3] 0-based, keypoints [204]
  into the interleaved vector. 3DDFA_V2 replaces the v3 file's `tri` by
  configs/tri.pkl ([3, T], 0-based): pass that as `tri_path`.

  Args:
    path: the pickle.
    tri_path: optional pickle of a [3, T] / [T, 3] array replacing `tri`.
    whitening_path: optional param_whitening.pkl for the coefficient stds.
    shape_dim, exp_dim: leading components to keep (3DDFA_V2 uses 40, 10).
    name: the model's name.
  """
  bfm = loading.load_pickle(path)
  mean = loading.get_array(bfm, 'u', path, (None, 1))[:, 0]
  num_v = mean.size // 3
  shape_basis = loading.get_array(bfm, 'w_shp', path, (mean.size, None))
  expression_basis = loading.get_array(bfm, 'w_exp', path, (mean.size, None))
  for key, basis, dim in (('w_shp', shape_basis, shape_dim),
                          ('w_exp', expression_basis, exp_dim)):
    if basis.shape[1] < dim:
      raise loading.FaceFileError(
          f'{path}: {key!r} has {basis.shape[1]} components, fewer than the '
          f'{dim} requested')
  if tri_path is None:
    triangles = loading.triangles_from_file(
        loading.get_key(bfm, 'tri', path), 'tri', path, one_based=False,
        num_vertices=num_v)
  else:
    triangles = loading.triangles_from_file(
        loading.load_pickle(tri_path), 'tri', tri_path, one_based=False,
        num_vertices=num_v)
  landmarks = loading.landmarks_from_interleaved(
      loading.get_key(bfm, 'keypoints', path), 'keypoints', path)
  if landmarks.size != NUM_LANDMARKS:
    raise loading.FaceFileError(
        f'{path}: \'keypoints\' names {landmarks.size} landmarks, expected '
        f'{NUM_LANDMARKS}')
  shape_std = expression_std = None
  if whitening_path is not None:
    _, std = read_param_whitening(whitening_path)
    if shape_dim <= 40 and exp_dim <= 10:
      shape_std = std[_SHAPE_SLICE][:shape_dim]
      expression_std = std[_EXPRESSION_SLICE][:exp_dim]
  mean_shape = loading.interleaved_to_vertices(mean, 'u', path)
  return make_model(
      mean_shape=mean_shape,
      shape_basis=loading.interleaved_to_vertices(
          shape_basis[:, :shape_dim], 'w_shp', path),
      shape_std=shape_std,
      expression_basis=loading.interleaved_to_vertices(
          expression_basis[:, :exp_dim], 'w_exp', path),
      expression_std=expression_std,
      triangles=loading.orient_triangles_outward(mean_shape, triangles),
      landmark_indices=landmarks,
      name=name)


def _mean_shape(d: pathlib.Path) -> np.ndarray:
  """u_shp + u_exp -> [V, 3] float64."""
  flat = []
  for stem in ('u_shp', 'u_exp'):
    path = d / f'{stem}.npy'
    array = loading.load_npy(path)
    if array.ndim > 2 or (array.ndim == 2 and array.shape[1] != 1):
      raise loading.FaceFileError(
          f'{path}: shape {array.shape}, expected (3V, 1)')
    flat.append(array.reshape(-1).astype(np.float64))
  if flat[0].shape != flat[1].shape:
    raise loading.FaceFileError(
        f'{d}: u_shp.npy has {flat[0].size} entries, u_exp.npy {flat[1].size}')
  return loading.interleaved_to_vertices(flat[0] + flat[1], 'u_shp', d)


def _landmarks(d: pathlib.Path) -> np.ndarray:
  path = d / 'keypoints_sim.npy'
  landmarks = loading.landmarks_from_interleaved(loading.load_npy(path),
                                                 'keypoints_sim', path)
  if landmarks.size != NUM_LANDMARKS:
    raise loading.FaceFileError(
        f'{path}: names {landmarks.size} landmarks, expected {NUM_LANDMARKS}')
  return landmarks


def _ncc(path: pathlib.Path, num_vertices: int | None = None) -> np.ndarray:
  """A [3, V] NCC file -> [V, 3]; V is checked when given."""
  code = loading.check_shape(loading.load_npy(path), (3, num_vertices), 'ncc',
                             path)
  return code.T.astype(np.float32)
