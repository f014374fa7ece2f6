"""Tests of the embedded procedural face model (pnccface.facemodel.procedural).

References are brute-force numpy computations on the model's own arrays:
triangle sets, edge counts, face normals, landmark coordinates in the model
frame (x to the viewer's right, y up, z towards the viewer).
"""

import subprocess
import sys
import time

import numpy as np
import pytest

from pnccface import facemodel
from pnccface.facemodel import procedural


@pytest.fixture(scope='module')
def model():
  return procedural.default_model()


@pytest.fixture(scope='module')
def info():
  return procedural.model_info()


@pytest.fixture(scope='module')
def arrays(model):
  return {k: np.asarray(getattr(model, k)) for k in (
      'mean_shape', 'triangles', 'landmark_indices', 'shape_basis',
      'shape_std', 'expression_basis', 'expression_std', 'albedo_mean',
      'albedo_basis', 'albedo_std', 'ncc')}


def _flip_x(v):
  return v * np.array([-1.0, 1.0, 1.0], np.float32)


def _edges(triangles):
  e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]],
                      triangles[:, [2, 0]]])
  return np.sort(e, axis=1)


def _face_normals(vertices, triangles):
  a, b, c = (vertices[triangles[:, k]] for k in range(3))
  return np.cross(b - a, c - a)


def test_exported_from_package(model):
  # Not `is model`: other tests here clear the builder's cache, and this one
  # must not depend on the order they run in.
  assert facemodel.procedural_model is procedural.default_model
  assert facemodel.procedural_model() is facemodel.procedural_model()
  assert model.name == procedural.MODEL_NAME


def test_counts_and_units(model, arrays, info):
  assert 20_000 <= model.num_vertices <= 60_000
  rows, cols = info.grid_shape
  assert rows * cols == model.num_vertices
  assert model.num_triangles == 2 * (rows - 1) * (cols - 1)
  assert model.num_shape >= 40
  assert model.num_expression >= 10
  assert model.num_albedo >= 40
  assert len(info.shape_names) == model.num_shape
  assert len(info.expression_names) == model.num_expression
  assert len(info.albedo_names) == model.num_albedo
  lm = arrays['mean_shape'][arrays['landmark_indices']]
  # Millimetres: brow to chin about 12-16 cm, face width 13-16 cm.
  face_height = lm[19, 1] - lm[8, 1]
  face_width = lm[16, 0] - lm[0, 0]
  assert 120.0 < face_height < 160.0, face_height
  assert 120.0 < face_width < 160.0, face_width
  # The origin sits inside the head (rotations about it look natural).
  lo, hi = arrays['mean_shape'].min(0), arrays['mean_shape'].max(0)
  assert (lo < 0).all() and (hi > 0).all()
  assert abs(lo[0] + hi[0]) < 1e-3


def test_deterministic_across_processes(arrays):
  procedural._build.cache_clear()
  procedural._model.cache_clear()
  try:
    again = procedural.default_model()
    np.testing.assert_array_equal(np.asarray(again.mean_shape),
                                  arrays['mean_shape'])
    np.testing.assert_array_equal(np.asarray(again.shape_basis),
                                  arrays['shape_basis'])
    np.testing.assert_array_equal(np.asarray(again.albedo_basis),
                                  arrays['albedo_basis'])
  finally:
    procedural._build.cache_clear()
    procedural._model.cache_clear()
  code = ('import numpy as np; from pnccface.facemodel import procedural as p;'
          'm = p.default_model();'
          'print(float(np.asarray(m.mean_shape, np.float64).sum()),'
          ' float(np.abs(np.asarray(m.shape_basis, np.float64)).sum()))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True).stdout.split()
  np.testing.assert_allclose(
      [float(t) for t in out],
      [arrays['mean_shape'].astype(np.float64).sum(),
       np.abs(arrays['shape_basis'].astype(np.float64)).sum()], rtol=1e-6)


def test_builds_fast():
  procedural._build.cache_clear()
  procedural._model.cache_clear()
  start = time.perf_counter()
  procedural.default_model()
  elapsed = time.perf_counter() - start
  # ~0.5 s on a quiet 2-core machine; multi-threaded BLAS on an
  # oversubscribed one can take several seconds, hence the generous bound,
  # which still catches dense V x V algebra or Python loops over vertices.
  assert elapsed < 20.0, elapsed


def test_mirror_symmetry_of_vertices_and_triangles(arrays, info):
  mirror = info.mirror_index
  v = arrays['mean_shape']
  assert sorted(mirror.tolist()) == list(range(v.shape[0]))
  np.testing.assert_array_equal(mirror[mirror], np.arange(v.shape[0]))
  np.testing.assert_allclose(v[mirror], _flip_x(v), atol=1e-4)
  tri = arrays['triangles']
  mirrored = mirror[tri][:, ::-1]   # mirroring reverses the winding
  as_set = {tuple(t) for t in np.sort(tri, axis=1).tolist()}
  assert {tuple(t) for t in np.sort(mirrored, axis=1).tolist()} == as_set
  # Same winding after the mirror: normal of mirrored triangle = flipped one.
  n = _face_normals(v, tri)
  n_mirrored = _face_normals(v, mirrored)
  big = np.linalg.norm(n, axis=1) > 1e-2
  np.testing.assert_allclose(n_mirrored[big], _flip_x(n[big]), atol=1e-2)


def test_landmark_mirror_maps_to_mirrored_vertices(arrays, info):
  lm = arrays['landmark_indices']
  perm = info.landmark_mirror
  assert sorted(perm.tolist()) == list(range(68))
  np.testing.assert_array_equal(perm[perm], np.arange(68))
  np.testing.assert_array_equal(info.mirror_index[lm], lm[perm])


def test_mesh_is_manifold_and_not_degenerate(arrays):
  tri, v = arrays['triangles'], arrays['mean_shape']
  assert tri.min() >= 0 and tri.max() < v.shape[0]
  assert (tri[:, 0] != tri[:, 1]).all() and (tri[:, 1] != tri[:, 2]).all()
  _, counts = np.unique(_edges(tri), axis=0, return_counts=True)
  assert counts.max() <= 2
  area = 0.5 * np.linalg.norm(_face_normals(v, tri), axis=1)
  # mm^2; the thinnest slivers sit in the crease under the chin.
  assert area.min() > 1e-4, area.min()
  assert np.median(area) > 0.3
  # Every vertex is used.
  assert np.unique(tri).size == v.shape[0]


def test_normals_point_out_of_the_face(arrays, info):
  v, tri = arrays['mean_shape'], arrays['triangles']
  n = _face_normals(v, tri)
  centre = v[tri].mean(axis=1)
  in_face = info.face_mask[tri].all(axis=1)
  assert in_face.sum() > 0.3 * tri.shape[0]
  assert n[in_face, 2].mean() > 0
  assert (n[in_face, 2] > 0).mean() > 0.9
  outward = np.einsum('tc,tc->t', n, centre - v.mean(axis=0))
  assert (outward > 0).mean() > 0.9


def test_landmark_semantics(arrays):
  lm_idx = arrays['landmark_indices']
  assert lm_idx.shape == (68,) and np.unique(lm_idx).size == 68
  lm = arrays['mean_shape'][lm_idx]
  x, y, z = lm[:, 0], lm[:, 1], lm[:, 2]
  assert np.argmax(z) == 30                           # nose tip
  assert np.argmin(y) == 8                            # chin
  assert abs(x[8]) < 1e-4 and all(abs(x[i]) < 1e-4 for i in (27, 30, 33,
                                                              51, 57, 62, 66))
  assert x[36] < x[39] < x[42] < x[45]                # eye corners
  assert x[0] < 0 < x[16]                # iBUG 0 = subject's right = -x
  np.testing.assert_allclose(lm[16], _flip_x(lm[0]), atol=1e-4)
  np.testing.assert_allclose(lm[54], _flip_x(lm[48]), atol=1e-4)
  assert y[51] > y[62] > y[66] > y[57]               # lips top to bottom
  assert x[48] < x[60] < x[64] < x[54]
  # Brows above eyes, eyes above nose tip, nose above mouth above chin.
  assert y[17:27].min() > y[36:48].max()
  assert y[36:48].min() > y[30] > y[33] > y[51]
  assert (np.diff(y[27:31]) < 0).all()               # bridge runs down
  assert (np.diff(z[27:31]) > 0).all()               # and forward
  for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
    assert y[upper] > y[lower]
  assert (np.diff(x[0:9]) > 0).all() and (np.diff(y[0:9]) < 0).all()
  assert (np.diff(x[17:27]) > 0).all()


def test_shape_basis_orthogonal_and_smooth(arrays, info, model):
  basis = arrays['shape_basis'].astype(np.float64)
  num_v = basis.shape[0]
  flat = basis.reshape(num_v * 3, -1)
  gram = flat.T @ flat / num_v
  np.testing.assert_allclose(gram, np.eye(flat.shape[1]), atol=2e-3)
  std = arrays['shape_std']
  assert (std > 0).all() and (np.diff(std) <= 1e-6).all()
  assert 1.0 < std[0] < 6.0                          # mm RMS
  # Rigid motions are projected out: translation along each axis.
  for axis in range(3):
    assert np.abs(basis[:, axis, :].mean(axis=0)).max() < 1e-3
  # Smooth: neighbouring vertices move alike.
  e = np.unique(_edges(arrays['triangles']), axis=0)
  step = np.linalg.norm(basis[e[:, 0]] - basis[e[:, 1]], axis=1)
  assert step.mean(axis=0).max() < 0.15, step.mean(axis=0).max()
  # Each component is mirror-symmetric or antisymmetric.
  mirror = info.mirror_index
  for k in range(flat.shape[1]):
    b = basis[..., k]
    flipped = _flip_x(b[mirror])
    assert min(np.abs(flipped - b).max(), np.abs(flipped + b).max()) < 1e-4
  assert info.shape_names[0] != 'rigid' and 'rigid' not in info.shape_names
  assert 'face_width' in info.shape_names


def test_mouth_open_and_smile(model, arrays, info):
  names = list(info.expression_names)
  lm_idx = arrays['landmark_indices']

  def landmarks(name, amount=1.0):
    e = np.zeros(model.num_expression, np.float32)
    e[names.index(name)] = amount
    return np.asarray(model.vertices(None, e))[lm_idx]

  neutral = arrays['mean_shape'][lm_idx]
  gap = lambda lm: np.linalg.norm(lm[62] - lm[66])
  opened = landmarks('jaw_open')
  assert gap(opened) > gap(neutral) + 10.0          # mm
  assert opened[8, 1] < neutral[8, 1] - 10.0        # chin drops
  np.testing.assert_allclose(opened[27:36], neutral[27:36], atol=1e-4)
  smile = landmarks('smile')
  raise_corner = (smile[[48, 54], 1] - neutral[[48, 54], 1]).mean()
  raise_centre = (smile[[51, 57], 1] - neutral[[51, 57], 1]).mean()
  assert raise_corner > raise_centre + 2.0
  assert smile[54, 0] - smile[48, 0] > neutral[54, 0] - neutral[48, 0]
  closed = landmarks('eyes_close')
  for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
    assert abs(closed[upper, 1] - closed[lower, 1]) < 1.0
  brows = landmarks('brows_raise')
  assert (brows[17:27, 1] - neutral[17:27, 1]).min() > 2.0
  # Asymmetric versions: + means the subject's left (x > 0) does more.
  asym = landmarks('smile_asym')
  assert asym[54, 1] - neutral[54, 1] > 2.0 > asym[48, 1] - neutral[48, 1]
  wink = landmarks('eyes_close_asym')
  assert wink[44, 1] < neutral[44, 1] - 3.0
  assert wink[37, 1] >= neutral[37, 1]


def test_expression_basis_independent_and_symmetric(arrays, info):
  basis = arrays['expression_basis'].astype(np.float64)
  flat = basis.reshape(-1, basis.shape[-1])
  flat = flat / np.linalg.norm(flat, axis=0)
  singular = np.linalg.svd(flat, compute_uv=False)
  assert singular.min() > 0.05, singular
  mirror = info.mirror_index
  for k, name in enumerate(info.expression_names):
    flipped = _flip_x(basis[mirror, :, k])
    sign = -1.0 if name.endswith('_asym') or 'sideways' in name else 1.0
    np.testing.assert_allclose(flipped, sign * basis[..., k], atol=1e-4,
                               err_msg=name)
  assert (arrays['expression_std'] > 0).all()
  assert info.expression_nonnegative[info.expression_names.index('jaw_open')]


def test_albedo_range_and_colours(model, arrays):
  mean = arrays['albedo_mean']
  assert mean.min() >= 0.0 and mean.max() <= 1.0
  lm_idx = arrays['landmark_indices']
  cheek = mean[lm_idx[2]]
  # Skin is reddish; lips redder and darker than the cheek; brows dark.
  assert cheek[0] > cheek[1] > cheek[2]
  lip = mean[lm_idx[57]]
  assert lip[0] / lip[1] > cheek[0] / cheek[1]
  assert mean[lm_idx[19]].sum() < 0.7 * cheek.sum()
  basis, std = arrays['albedo_basis'], arrays['albedo_std']
  for k in range(basis.shape[-1]):
    for sign in (-2.0, 2.0):
      sample = mean + sign * std[k] * basis[..., k]
      inside = ((sample >= 0.0) & (sample <= 1.0)).mean()
      assert inside > 0.97, (k, sign, inside)
  flat = basis.reshape(-1, basis.shape[-1]).astype(np.float64)
  np.testing.assert_allclose(flat.T @ flat / basis.shape[0],
                             np.eye(basis.shape[-1]), atol=2e-3)


def test_ncc_is_normalised_mean(model, arrays):
  np.testing.assert_allclose(
      arrays['ncc'],
      facemodel.normalized_coordinate_code(arrays['mean_shape']), atol=1e-6)
  assert arrays['ncc'].min() == 0.0 and arrays['ncc'].max() == 1.0


def test_face_mask_covers_landmarks_but_not_everything(arrays, info):
  mask = info.face_mask
  assert mask.dtype == bool and mask.shape == (arrays['mean_shape'].shape[0],)
  assert 0.25 < mask.mean() < 0.8
  assert mask[arrays['landmark_indices'][17:]].all()
