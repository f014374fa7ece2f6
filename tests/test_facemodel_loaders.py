"""Tests of the BFM 2009 and 3DDFA loaders.

The BFM and 3DDFA_V2 loaders run on tiny files written here in the real
formats and keys; the 3DDFA mean/sparse loaders run on the real files in
../shared/data/3ddfa.
"""

import glob
import pickle

import numpy as np
import pytest
import scipy.io

from pnccface.facemodel import bfm
from pnccface.facemodel import ddfa
from pnccface.facemodel import loading
from pnccface.facemodel.morphable import normalized_coordinate_code

# A square pyramid with its apex towards +z, in trimmed-vertex order.
PYRAMID = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0, 0, 1]],
                   np.float64) * 1e4
# Outward (normals towards +z) triangles of the pyramid, 0-based.
OUTWARD = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
# Stored as BFM/3DDFA store them: the opposite winding.
INWARD = OUTWARD[:, [0, 2, 1]]
# 1-based BFM vertices kept by the trimming, in trimmed order; BFM vertex 4
# (1-based) is dropped.
TRIM_INDEX = np.array([6, 2, 3, 5, 1])
NUM_FULL = 6
LANDMARKS = np.arange(68) % 5


def _normals_z(vertices, triangles):
  a, b, c = (np.asarray(vertices)[np.asarray(triangles)[:, i]]
             for i in range(3))
  return np.cross(b - a, c - a)[:, 2]


# ----------------------------------------------------------------------------
# BFM 2009.


@pytest.fixture
def bfm_files(tmp_path):
  rng = np.random.default_rng(0)
  full = np.zeros((NUM_FULL, 3))
  full[TRIM_INDEX - 1] = PYRAMID
  full[3] = [5e4, 5e4, 5e4]
  to_full = TRIM_INDEX - 1
  model = {
      'shapeMU': full.reshape(-1, 1),
      'shapePC': rng.normal(size=(3 * NUM_FULL, 3)),
      'shapeEV': np.array([[3e4], [2e4], [1e4]]),
      'texMU': rng.uniform(0, 255, (3 * NUM_FULL, 1)),
      'texPC': rng.normal(size=(3 * NUM_FULL, 2)),
      'texEV': np.array([[50.0], [20.0]]),
      # 1-based over the full mesh; the last triangle uses the dropped vertex.
      'tl': np.concatenate([to_full[INWARD], [[0, 1, 3]]]) + 1.0,
  }
  info = {
      'trimIndex': TRIM_INDEX.reshape(-1, 1).astype(np.float64),
      'tri': (INWARD.T + 1).astype(np.float64),
      'keypoints': (LANDMARKS + 1).reshape(1, -1).astype(np.float64),
  }
  expression = {
      'w_exp': rng.normal(size=(15, 2)),
      'mu_exp': rng.normal(size=(15, 1)) * 10,
      'sigma_exp': np.array([[1.5], [0.5]]),
  }
  paths = {}
  for stem, contents in (('01_MorphableModel', model), ('model_info', info),
                         ('Model_Expression', expression)):
    paths[stem] = tmp_path / f'{stem}.mat'
    scipy.io.savemat(str(paths[stem]), contents)
  return paths, model, info, expression


def _trimmed_rows():
  """MATLAB's [3t-2, 3t-1, 3t](:) for 1-based t, as 0-based rows."""
  return np.stack([3 * TRIM_INDEX - 3, 3 * TRIM_INDEX - 2,
                   3 * TRIM_INDEX - 1], axis=1).reshape(-1)


def test_bfm2009_with_trimming_and_expression(bfm_files):
  paths, raw, info, expression = bfm_files
  model = bfm.load_bfm2009(paths['01_MorphableModel'],
                           expression_path=paths['Model_Expression'],
                           model_info_path=paths['model_info'])
  assert (model.num_vertices, model.num_shape, model.num_expression,
          model.num_albedo) == (5, 3, 2, 2)
  rows = _trimmed_rows()
  alpha, beta = np.array([0.5, -1.0, 2.0]), np.array([0.3, -0.7])
  want = (raw['shapeMU'][rows, 0] + expression['mu_exp'][:, 0] +
          raw['shapePC'][rows] @ alpha + expression['w_exp'] @ beta)
  np.testing.assert_allclose(model.vertices(alpha, beta),
                             want.reshape(-1, 3), rtol=1e-5, atol=1e-2)
  gamma = np.array([0.2, -0.1])
  want_albedo = (raw['texMU'][rows, 0] + raw['texPC'][rows] @ gamma) / 255
  np.testing.assert_allclose(model.albedo(gamma),
                             np.clip(want_albedo.reshape(-1, 3), 0, 1),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(model.shape_std, [3e4, 2e4, 1e4])
  np.testing.assert_allclose(model.expression_std, [1.5, 0.5])
  np.testing.assert_allclose(model.albedo_std, [50.0, 20.0])
  np.testing.assert_array_equal(model.landmark_indices, LANDMARKS)
  # Same triangles as the file, 0-based, re-wound to face out of the face.
  np.testing.assert_array_equal(model.triangles, OUTWARD)
  assert np.all(_normals_z(model.mean_shape, model.triangles) > 0)
  # NCC of the neutral trimmed shapeMU, as 3DDFA's pncc_code.
  np.testing.assert_allclose(model.ncc, normalized_coordinate_code(PYRAMID),
                             atol=1e-6)


def test_bfm2009_untrimmed_needs_landmarks(bfm_files):
  paths, raw, _, _ = bfm_files
  with pytest.raises(ValueError, match='landmark'):
    bfm.load_bfm2009(paths['01_MorphableModel'])
  model = bfm.load_bfm2009(paths['01_MorphableModel'],
                           landmark_indices=np.arange(68) % 6)
  assert model.num_vertices == NUM_FULL and model.num_expression == 0
  np.testing.assert_allclose(model.mean_shape,
                             raw['shapeMU'].reshape(-1, 3), rtol=1e-6)
  assert model.num_triangles == 5


def test_bfm2009_trims_bfm_triangles_without_model_info_tri(bfm_files,
                                                            tmp_path):
  paths, _, info, _ = bfm_files
  info_path = tmp_path / 'info_no_tri.mat'
  scipy.io.savemat(str(info_path), {'trimIndex': info['trimIndex']})
  model = bfm.load_bfm2009(paths['01_MorphableModel'],
                           model_info_path=info_path,
                           landmark_indices=LANDMARKS)
  # tl's triangle through the dropped vertex is gone; the rest renumbered.
  np.testing.assert_array_equal(model.triangles, OUTWARD)


@pytest.mark.parametrize('key', ['shapeMU', 'shapePC', 'shapeEV', 'texMU',
                                 'texPC', 'texEV', 'tl'])
def test_bfm2009_missing_key_names_file_and_key(bfm_files, tmp_path, key):
  _, raw, _, _ = bfm_files
  path = tmp_path / 'broken_bfm.mat'
  scipy.io.savemat(str(path), {k: v for k, v in raw.items() if k != key})
  with pytest.raises(loading.FaceFileError, match=key) as info:
    bfm.load_bfm2009(path, landmark_indices=LANDMARKS)
  assert 'broken_bfm.mat' in str(info.value)


def test_bfm2009_wrong_shapes(bfm_files, tmp_path):
  paths, raw, _, _ = bfm_files
  path = tmp_path / 'bad_pc.mat'
  scipy.io.savemat(str(path), dict(raw, shapePC=raw['shapePC'][:-3]))
  with pytest.raises(loading.FaceFileError, match=r"shapePC.*\(15, 3\)"):
    bfm.load_bfm2009(path, landmark_indices=LANDMARKS)
  path = tmp_path / 'bad_ev.mat'
  scipy.io.savemat(str(path), dict(raw, shapeEV=raw['shapeEV'][:2]))
  with pytest.raises(loading.FaceFileError, match='shapeEV'):
    bfm.load_bfm2009(path, landmark_indices=LANDMARKS)
  # The expression basis lives on trimmed vertices: without the trimming it
  # does not fit, and the error says so.
  with pytest.raises(loading.FaceFileError, match='w_exp') as info:
    bfm.load_bfm2009(paths['01_MorphableModel'],
                     expression_path=paths['Model_Expression'],
                     landmark_indices=LANDMARKS)
  assert 'Model_Expression.mat' in str(info.value)


def test_bfm2009_bad_trim_index_and_missing_file(bfm_files, tmp_path):
  paths, _, _, _ = bfm_files
  info_path = tmp_path / 'bad_info.mat'
  scipy.io.savemat(str(info_path), {'trimIndex': np.array([[1.0], [7.0]])})
  with pytest.raises(loading.FaceFileError, match='trimIndex'):
    bfm.load_bfm2009(paths['01_MorphableModel'], model_info_path=info_path,
                     landmark_indices=np.zeros(68, int))
  with pytest.raises(FileNotFoundError, match='absent.mat'):
    bfm.load_bfm2009(tmp_path / 'absent.mat')


# ----------------------------------------------------------------------------
# 3DDFA_V2's bfm_noneck_v3.pkl.


@pytest.fixture
def v2_pickle(tmp_path):
  rng = np.random.default_rng(1)
  contents = {
      'u': PYRAMID.reshape(-1, 1).astype(np.float32),
      'w_shp': rng.normal(size=(15, 4)).astype(np.float32),
      'w_exp': rng.normal(size=(15, 3)).astype(np.float32),
      'tri': INWARD.T.astype(np.int32),
      'keypoints': (3 * LANDMARKS[:, None] + np.arange(3)).reshape(-1),
  }
  path = tmp_path / 'bfm_noneck_v3.pkl'
  with open(path, 'wb') as f:
    pickle.dump(contents, f)
  return path, contents


def _load_v2(path, **kwargs):
  return ddfa.load_3ddfa_v2_bfm(path, shape_dim=4, exp_dim=3, **kwargs)


def _dump(path, obj):
  with open(path, 'wb') as f:
    pickle.dump(obj, f)
  return path


def test_3ddfa_v2_pickle(v2_pickle, tmp_path):
  path, raw = v2_pickle
  model = ddfa.load_3ddfa_v2_bfm(path, shape_dim=2, exp_dim=2)
  assert (model.num_vertices, model.num_shape,
          model.num_expression) == (5, 2, 2)
  alpha, beta = np.array([1.0, -2.0]), np.array([0.5, 0.25])
  want = (raw['u'][:, 0] + raw['w_shp'][:, :2] @ alpha +
          raw['w_exp'][:, :2] @ beta)
  np.testing.assert_allclose(model.vertices(alpha, beta), want.reshape(-1, 3),
                             rtol=1e-5, atol=1e-2)
  np.testing.assert_array_equal(model.landmark_indices, LANDMARKS)
  np.testing.assert_array_equal(model.triangles, OUTWARD)
  # (T, 3) triangles and a separate tri.pkl are read alike.
  flat = _dump(tmp_path / 'flat.pkl', dict(raw, tri=INWARD))
  np.testing.assert_array_equal(_load_v2(flat).triangles, OUTWARD)
  tri_path = _dump(tmp_path / 'tri.pkl', OUTWARD[:2].T.astype(np.int32))
  np.testing.assert_array_equal(
      _load_v2(path, tri_path=tri_path).triangles, OUTWARD[:2])


def test_3ddfa_v2_pickle_whitening_stds(v2_pickle, tmp_path):
  path, _ = v2_pickle
  std = np.arange(1, 63, dtype=np.float32)
  whitening = _dump(tmp_path / 'param_whitening.pkl',
                    {'param_mean': np.zeros(62, np.float32), 'param_std': std})
  model = ddfa.load_3ddfa_v2_bfm(path, whitening_path=whitening, shape_dim=4,
                                 exp_dim=3)
  np.testing.assert_array_equal(model.shape_std, std[12:16])
  np.testing.assert_array_equal(model.expression_std, std[52:55])


@pytest.mark.parametrize('key', ['u', 'w_shp', 'w_exp', 'tri', 'keypoints'])
def test_3ddfa_v2_pickle_missing_key(v2_pickle, tmp_path, key):
  _, raw = v2_pickle
  path = _dump(tmp_path / 'broken.pkl',
               {k: v for k, v in raw.items() if k != key})
  with pytest.raises(loading.FaceFileError, match=repr(key)) as info:
    _load_v2(path)
  assert 'broken.pkl' in str(info.value)


@pytest.mark.parametrize('override, message', [
    ({'u': np.zeros((15, 2))}, "'u' has shape"),
    ({'w_shp': np.zeros((12, 4))}, "'w_shp' has shape"),
    ({'keypoints': np.arange(204) + 1}, 'keypoints'),
    ({'tri': np.array([[0, 1, 9]])}, 'tri'),
])
def test_3ddfa_v2_pickle_bad_contents(v2_pickle, tmp_path, override, message):
  _, raw = v2_pickle
  path = _dump(tmp_path / 'bad.pkl', dict(raw, **override))
  with pytest.raises(loading.FaceFileError, match=message):
    _load_v2(path)


def test_3ddfa_v2_pickle_too_few_components(v2_pickle):
  # 3DDFA_V2's defaults: 40 shape and 10 expression components.
  with pytest.raises(loading.FaceFileError, match="'w_shp'.*fewer than"):
    ddfa.load_3ddfa_v2_bfm(v2_pickle[0])


# ----------------------------------------------------------------------------
# The real 3DDFA files.


def test_3ddfa_mean_model(shared_data):
  d = shared_data / '3ddfa'
  model = ddfa.load_3ddfa_mean_model(d)
  assert (model.num_vertices, model.num_triangles) == (53215, 105840)
  assert model.num_shape == 0 and model.num_expression == 0
  flat = np.load(d / 'u_shp.npy') + np.load(d / 'u_exp.npy')
  np.testing.assert_allclose(model.mean_shape, flat.reshape(-1, 3))
  keypoints = np.load(d / 'keypoints_sim.npy')
  np.testing.assert_array_equal(model.landmark_indices, keypoints[::3] // 3)
  np.testing.assert_array_equal(model.ncc, np.load(d / 'pncc_code.npy').T)
  tri = scipy.io.loadmat(d / 'tri.mat')['tri'].T.astype(np.int64) - 1
  np.testing.assert_array_equal(np.sort(model.triangles, axis=1),
                                np.sort(tri, axis=1))
  # Front faces: normals out of the face, i.e. away from the mesh centroid
  # for almost all triangles (the file stores the opposite winding).
  v = np.asarray(model.mean_shape, np.float64)
  t = np.asarray(model.triangles)
  a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
  outward = np.einsum('ti,ti->t', np.cross(b - a, c - a),
                      (a + b + c) / 3 - v.mean(0))
  assert np.mean(outward > 0) > 0.95
  # The model frame: face looking along +z, y up (chin below the forehead).
  nose, chin = v[model.landmark_indices[30]], v[model.landmark_indices[8]]
  assert nose[2] > v[:, 2].mean() and chin[1] < nose[1]


def test_pncc_code_is_ncc_of_neutral_mean(shared_data):
  """Finding: pncc_code.npy is the NCC of u_shp alone, not u_shp + u_exp."""
  d = shared_data / '3ddfa'
  pncc = np.load(d / 'pncc_code.npy').T
  u_shp = np.load(d / 'u_shp.npy').reshape(-1, 3)
  u_mean = u_shp + np.load(d / 'u_exp.npy').reshape(-1, 3)
  assert np.abs(pncc - normalized_coordinate_code(u_shp)).max() < 1e-6
  assert np.abs(pncc - normalized_coordinate_code(u_mean)).max() > 1e-3
  assert np.abs(pncc - normalized_coordinate_code(u_mean)).max() < 1e-2


def test_3ddfa_noneck_model(shared_data):
  d = shared_data / '3ddfa'
  dense = ddfa.load_3ddfa_mean_model(d)
  model = ddfa.load_3ddfa_noneck_model(d)
  assert (model.num_vertices, model.num_triangles) == (38365, 76073)
  np.testing.assert_array_equal(model.landmarks(model.mean_shape),
                                dense.landmarks(dense.mean_shape))
  # Its NCC is renormalised over the subset of the (u_shp + u_exp) mean.
  np.testing.assert_allclose(model.ncc,
                             normalized_coordinate_code(model.mean_shape),
                             atol=1e-6)
  assert _normals_z(model.mean_shape, model.triangles).sum() > 0


def test_3ddfa_sparse_model(shared_data):
  d = shared_data / '3ddfa'
  model = ddfa.load_3ddfa_sparse_model(d)
  assert (model.num_vertices, model.num_triangles) == (68, 0)
  assert (model.num_shape, model.num_expression) == (40, 10)
  np.testing.assert_array_equal(model.landmark_indices, np.arange(68))
  dense = ddfa.load_3ddfa_mean_model(d)
  np.testing.assert_allclose(model.mean_shape,
                             dense.landmarks(dense.mean_shape), atol=0.01)
  np.testing.assert_array_equal(model.ncc, dense.landmarks(dense.ncc))
  whitening = ddfa.read_param_whitening(d / 'param_whitening.pkl')
  np.testing.assert_array_equal(model.shape_std, whitening[1][12:52])
  np.testing.assert_array_equal(model.expression_std, whitening[1][52:62])
  # Raw coefficients from an AFLW2000-3D fit, against the text files.
  path = sorted(glob.glob(str(shared_data / 'aflw2000_3d_sample' / '*.mat')))[5]
  fit = scipy.io.loadmat(path)
  shape, expression = fit['Shape_Para'][:40, 0], fit['Exp_Para'][:10, 0]
  want = (np.loadtxt(d / 'u_base.txt') +
          np.loadtxt(d / 'w_shp_base.txt') @ shape +
          np.loadtxt(d / 'w_exp_base.txt') @ expression)
  np.testing.assert_allclose(model.vertices(shape, expression),
                             want.reshape(68, 3), rtol=1e-4, atol=5.0)


def test_3ddfa_missing_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='u_shp.npy'):
    ddfa.load_3ddfa_mean_model(tmp_path)
  with pytest.raises(FileNotFoundError, match='u_base.txt'):
    ddfa.load_3ddfa_sparse_model(tmp_path)
