"""Plumbing shared by the face-model file readers.

Reading arrays out of .mat / .pkl / .npy / .txt files with errors that name the
file, the key and the offending shape; converting MATLAB's 1-based indices
(index bases per `pnccface.geometry`); orienting triangles so that normals
point out of the face, as `MorphableModel` requires.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.io


class FaceFileError(ValueError):
  """A face-model or parameter file lacks a key or holds a wrong shape."""


PathLike = str | os.PathLike


def require_file(path: PathLike, what: str = 'file') -> pathlib.Path:
  """Returns `path` as a Path; raises FileNotFoundError naming it if absent."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'{what} not found: {path}')
  return path


def load_mat(path: PathLike) -> dict[str, Any]:
  """Reads a MATLAB v5 .mat file into a dict (MATLAB's own entries dropped)."""
  path = require_file(path, '.mat file')
  try:
    contents = scipy.io.loadmat(str(path))
  except NotImplementedError as e:  # scipy's answer to v7.3 (HDF5) files.
    raise FaceFileError(
        f'{path}: MATLAB v7.3 (HDF5) files are not supported; re-save it '
        f"with MATLAB's save(..., '-v7')") from e
  except ValueError as e:
    raise FaceFileError(f'{path}: not a readable .mat file ({e})') from e
  return {k: v for k, v in contents.items() if not k.startswith('__')}


def load_pickle(path: PathLike) -> Any:
  """Unpickles a file written by numpy-era Python 2 or 3 (latin1 strings)."""
  path = require_file(path, '.pkl file')
  with open(path, 'rb') as f:
    try:
      return pickle.load(f, encoding='latin1')
    except Exception as e:
      raise FaceFileError(f'{path}: not a readable pickle ({e})') from e


def load_npy(path: PathLike) -> np.ndarray:
  return np.load(require_file(path, '.npy file'), allow_pickle=False)


def load_txt(path: PathLike) -> np.ndarray:
  return np.loadtxt(require_file(path, '.txt file'), dtype=np.float64)


def get_key(contents: Mapping[str, Any], key: str, path: PathLike) -> Any:
  """`contents[key]`; a missing key raises FaceFileError naming file and key."""
  if not isinstance(contents, Mapping):
    raise FaceFileError(
        f'{path}: expected a dict of arrays, got {type(contents).__name__}')
  if key not in contents:
    present = ', '.join(sorted(map(str, contents))) or 'none'
    raise FaceFileError(f'{path}: missing key {key!r} (keys present: '
                        f'{present})')
  return contents[key]


def check_shape(array, shape: Sequence[int | None], key: str,
                path: PathLike) -> np.ndarray:
  """Checks `array.shape` against `shape` (None = any size); returns ndarray."""
  array = np.asarray(array)
  ok = array.ndim == len(shape) and all(
      want is None or want == got for want, got in zip(shape, array.shape))
  if not ok:
    want = tuple('*' if s is None else s for s in shape)
    raise FaceFileError(f'{path}: {key!r} has shape {array.shape}, expected '
                        f'{want}'.replace("'*'", '*'))
  return array


def get_array(contents, key: str, path: PathLike,
              shape: Sequence[int | None] | None = None,
              dtype=np.float32) -> np.ndarray:
  """`contents[key]` as an array of `dtype`, shape-checked when given."""
  array = np.asarray(get_key(contents, key, path))
  if shape is not None:
    array = check_shape(array, shape, key, path)
  return array.astype(dtype, copy=False)


def get_vector(contents, key: str, path: PathLike, size: int | None = None,
               dtype=np.float32) -> np.ndarray:
  """A vector stored as (n,), (n, 1) or (1, n) -> [n]; size-checked."""
  array = np.asarray(get_key(contents, key, path))
  if array.ndim > 2 or (array.ndim == 2 and min(array.shape) != 1):
    raise FaceFileError(f'{path}: {key!r} has shape {array.shape}, expected a '
                        f'vector ({size if size is not None else "n"},)')
  array = array.reshape(-1)
  if size is not None and array.size != size:
    raise FaceFileError(f'{path}: {key!r} has {array.size} entries, expected '
                        f'{size}')
  return array.astype(dtype, copy=False)


def interleaved_to_vertices(flat, key: str, path: PathLike) -> np.ndarray:
  """[3V] or [3V, K] xyz-interleaved per vertex -> [V, 3] or [V, 3, K]."""
  flat = np.asarray(flat)
  if flat.shape[0] % 3:
    raise FaceFileError(f'{path}: {key!r} has {flat.shape[0]} rows, not a '
                        f'multiple of 3 (xyz per vertex)')
  return flat.reshape((flat.shape[0] // 3, 3) + flat.shape[1:])


def triangles_from_file(tri, key: str, path: PathLike, one_based: bool,
                        num_vertices: int) -> np.ndarray:
  """Triangles stored (T, 3) or (3, T) -> [T, 3] int32, 0-based, range-checked.

  A (3, 3) array is taken as (T, 3).
  """
  tri = np.asarray(tri)
  if tri.ndim != 2 or 3 not in tri.shape:
    raise FaceFileError(f'{path}: {key!r} has shape {tri.shape}, expected '
                        f'(T, 3) or (3, T)')
  if tri.shape[1] != 3:
    tri = tri.T
  tri = tri.astype(np.int64) - (1 if one_based else 0)
  if tri.size and (tri.min() < 0 or tri.max() >= num_vertices):
    base = '1-based' if one_based else '0-based'
    raise FaceFileError(
        f'{path}: {key!r} ({base}) indexes vertices '
        f'[{tri.min() + one_based}, {tri.max() + one_based}] outside a mesh '
        f'of {num_vertices} vertices')
  return np.ascontiguousarray(tri, dtype=np.int32)


def landmarks_from_interleaved(keypoints, key: str,
                               path: PathLike) -> np.ndarray:
  """3DDFA's (204,) indices into the xyz-interleaved vector -> [68] vertices.

  Each landmark contributes the triple (3k, 3k + 1, 3k + 2) for vertex k.
  """
  keypoints = np.asarray(keypoints).reshape(-1).astype(np.int64)
  triples = keypoints.reshape(-1, 3) if keypoints.size % 3 == 0 else None
  if triples is None or np.any(triples[:, 0] % 3) or np.any(
      triples - triples[:, :1] != np.arange(3)):
    raise FaceFileError(
        f'{path}: {key!r} must hold (3k, 3k+1, 3k+2) triples of indices into '
        f'the interleaved xyz vector; got shape {keypoints.shape}')
  return (triples[:, 0] // 3).astype(np.int32)


def orient_triangles_outward(vertices, triangles) -> np.ndarray:
  """Flips the winding of all triangles when the mesh's normals point inward.

  `MorphableModel` wants normals out of the face, i.e. towards +z for the
  frontal face of the model frame. An open face mesh has no inside, but the
  area-weighted sum of its normals is its projected area along the viewing
  direction: +z when outward. BFM's and 3DDFA's triangle lists are stored with
  the opposite winding (on 3DDFA's tri.mat, 97% of triangles face the mesh's
  centroid), so they get flipped here.

  Args:
    vertices: [V, 3] model frame.
    triangles: [T, 3] int, 0-based.

  Returns:
    [T, 3] int32.
  """
  triangles = np.asarray(triangles, np.int32)
  if not triangles.size:
    return triangles.reshape(0, 3)
  v = np.asarray(vertices, np.float64)
  a, b, c = (v[triangles[:, i]] for i in range(3))
  if np.cross(b - a, c - a)[:, 2].sum() < 0:
    triangles = triangles[:, [0, 2, 1]]
  return np.ascontiguousarray(triangles)
