"""The shipped ICT-FaceKit model: file, mesh, landmarks, bases, converter."""

import functools

import jax
import numpy as np
import pytest

from pnccface import facemodel
from pnccface import geometry
from pnccface import render
from pnccface.data import synthesis
from pnccface.facemodel import ict
from tests.conftest import reference_rasterize


@pytest.fixture(scope='module')
def model():
  return facemodel.ict_facekit_model()


def test_shipped_file_is_small_and_licensed():
  path = ict.SHIPPED_PATH
  assert 2e6 < path.stat().st_size < 15e6
  licence = (path.parent / 'LICENSE').read_text()
  assert 'MIT License' in licence and 'USC Institute for Creative' in licence


def test_model_shapes_and_priors(model):
  assert model.name == 'ict_facekit_light'
  assert model.num_shape == 100 and model.num_expression == 53
  np.testing.assert_array_equal(model.shape_std, np.ones(100))
  # Every blendshape is a [0, 1] weight: the sampler draws |z| for all.
  assert model.nonnegative_expressions == tuple(range(53))
  assert (np.asarray(model.expression_std) > 0).all()
  assert (np.asarray(model.expression_std) <= 0.5).all()
  assert model.num_albedo > 10
  albedo = np.asarray(model.albedo_mean)
  assert albedo.min() >= 0 and albedo.max() <= 1
  # print(model) summarises instead of dumping ~40 MB of arrays.
  assert repr(model) == (
      f"MorphableModel('ict_facekit_light': {model.num_vertices} vertices, "
      f'{model.num_triangles} triangles, 100 shape / 53 expression / '
      f'{model.num_albedo} albedo components)')


def test_units_are_millimetres(model):
  # The release is in cm with a ~25 cm wide head (README); we use mm.
  mean = np.asarray(model.mean_shape)
  width = np.ptp(mean[:, 0])
  assert 230 < width < 260
  shipped = ict.load_shipped()
  np.testing.assert_allclose(mean, shipped['neutral'] * 10.0, rtol=1e-6)
  # Identity mode 0 moves vertices by up to 1.3 cm (README).
  assert 12.0 < np.abs(np.asarray(model.shape_basis)[..., 0]).max() < 14.0


def test_ncc_is_min_max_of_the_kept_neutral(model):
  mean = np.asarray(model.mean_shape, np.float64)
  expect = (mean - mean.min(0)) / np.ptp(mean, axis=0)
  np.testing.assert_allclose(model.ncc, expect, atol=1e-6)


def test_triangles_face_outwards(model):
  vertices = np.asarray(model.mean_shape, np.float64)
  tri = np.asarray(model.triangles)
  a, b, c = (vertices[tri[:, k]] for k in range(3))
  normals = np.cross(b - a, c - a)
  centres = (a + b + c) / 3
  # Skin of the face in front of the eyes: normals point towards the viewer.
  lm = vertices[np.asarray(model.landmark_indices)]
  skin = (ict.load_shipped()['vertex_ids'] < 9409)[tri].all(axis=1)
  front = skin & (np.abs(centres[:, 0]) < 30) & (
      np.abs(centres[:, 1] - lm[30, 1]) < 30) & (centres[:, 2] > 50)
  assert front.sum() > 200
  # Area-weighted: the front of the face (lips and lids roll inwards, so
  # some of its triangles do face away).
  total = normals[front].sum(axis=0)
  assert total[2] > 0.9 * np.linalg.norm(total)
  assert np.mean(normals[front, 2] > 0) > 0.8
  # Every kept vertex is used by a triangle; no degenerate triangles.
  assert np.unique(tri).size == len(vertices)
  assert (np.linalg.norm(normals, axis=1) > 0).all()


def test_landmarks_sit_on_semantic_points(model):
  lm = np.asarray(model.mean_shape)[np.asarray(model.landmark_indices)]
  x, y = lm[:, 0], lm[:, 1]
  width = np.ptp(x[:17])  # jaw line width
  # The subject's right eye (outer 36, inner 39) is on the viewer's left.
  assert x[36] < x[39] < 0 < x[42] < x[45]
  assert x[48] < x[51] < x[54]          # mouth corners around the midline
  assert y[8] < y[57] < y[51] < y[33] < y[30] < y[27]  # chin .. nasion
  assert y[30] < y[39] and y[30] < y[42]  # nose tip below the eyes
  assert lm[30, 2] == lm[:, 2].max()    # nose tip: the nearest landmark
  assert y[8] == y.min()                # chin: the lowest
  assert x[0] == x.min() and x[16] == x.max()
  pairs = [(36, 45), (39, 42), (48, 54), (31, 35), (0, 16), (17, 26), (4, 12)]
  for i, j in pairs:
    assert abs(x[i] + x[j]) < 0.01 * width, (i, j)
    assert abs(y[i] - y[j]) < 0.01 * width, (i, j)
  for k in (8, 27, 30, 33, 51, 57):
    assert abs(x[k]) < 0.01 * width, k


def test_quads_split_consistently():
  quads = np.array([[0, 1, 2, 3], [4, 5, 6, -1], [7, 8, 9, 10]])
  np.testing.assert_array_equal(
      ict.split_quads(quads),
      [[0, 1, 2], [0, 2, 3], [4, 5, 6], [7, 8, 9], [7, 9, 10]])


def test_albedo_regions_have_their_colours(model):
  albedo = np.asarray(model.albedo_mean)
  lm = np.asarray(model.landmark_indices)
  shipped = ict.load_shipped()
  ids = shipped['vertex_ids']
  skin = albedo[lm[30]]  # nose tip
  lips = albedo[lm[51]]
  sclera = albedo[ids >= 21451].max(axis=0)
  assert skin[0] > skin[1] > skin[2]
  assert lips[0] / lips[1] > skin[0] / skin[1]  # redder than skin
  assert sclera.min() > 0.6
  # The basis is orthogonal with unit per-vertex RMS.
  basis = np.asarray(model.albedo_basis).reshape(-1, model.num_albedo)
  gram = basis.T @ basis / model.num_vertices
  np.testing.assert_allclose(gram, np.eye(model.num_albedo), atol=1e-4)


def test_missing_file_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='ICT-FaceKit model file'):
    ict.load_shipped(tmp_path / 'absent.npz')
  bad = tmp_path / 'bad.npz'
  np.savez(bad, neutral=np.zeros((3, 3)))
  with pytest.raises(facemodel.FaceFileError, match='missing arrays'):
    ict.load_shipped(bad)


def test_shipped_arrays_match_the_release(shared_data):
  release = dict(np.load(shared_data / 'ict_facekit' /
                         'ict_facekit_light.npz'))
  shipped = ict.load_shipped()
  ids = shipped['vertex_ids']
  np.testing.assert_array_equal(shipped['neutral'], release['neutral'][ids])
  np.testing.assert_array_equal(shipped['identity_modes'],
                                release['identity_modes'][:, ids])
  np.testing.assert_array_equal(shipped['expression_modes'],
                                release['expression_modes'][:, ids])
  np.testing.assert_array_equal(ids[shipped['landmarks68']],
                                release['landmarks68'])
  # Each kept triangle is half of a release polygon, same winding.
  polygons = {tuple(np.roll(q[q >= 0], -np.argmin(q[q >= 0])))
              for q in release['quads'][:2000]}
  corners = ids[shipped['triangles'][:1000]]
  halves = 0
  for t in corners:
    for q in polygons:
      if set(t) <= set(q):
        halves += 1
        break
  assert halves > 900


def test_converter_reproduces_the_shipped_arrays(shared_data, tmp_path):
  folder = shared_data / 'ict_facekit' / 'original_sample'
  release = ict.read_release(folder, identity_indices=[0],
                             expression_names_to_read=['jawOpen'])
  converted = ict.reduce_to_kept(release)
  shipped = ict.load_shipped()
  np.testing.assert_array_equal(converted['neutral'], shipped['neutral'])
  np.testing.assert_array_equal(converted['triangles'], shipped['triangles'])
  np.testing.assert_array_equal(converted['landmarks68'],
                                shipped['landmarks68'])
  np.testing.assert_array_equal(converted['vertex_ids'], shipped['vertex_ids'])
  jaw = list(shipped['expression_names']).index('jawOpen')
  for got, want in ((converted['identity_modes'][0],
                     shipped['identity_modes'][0]),
                    (converted['expression_modes'][0],
                     shipped['expression_modes'][jaw])):
    # float16 rounding of offsets computed in float32 vs float64: one ulp.
    np.testing.assert_allclose(got.astype(np.float32),
                               want.astype(np.float32), rtol=1e-3, atol=1e-6)


def test_convert_writes_a_loadable_file(shared_data, tmp_path, monkeypatch):
  # The sample holds one identity and one expression: convert with those.
  sample = shared_data / 'ict_facekit' / 'original_sample'
  real_read = ict.read_release
  monkeypatch.setattr(ict, 'read_release', lambda folder: real_read(
      folder, identity_indices=[0], expression_names_to_read=['jawOpen']))
  out = ict.convert(sample, tmp_path / 'model.npz')
  arrays = ict.load_shipped(out)
  assert arrays['identity_modes'].shape == (1, 17202, 3)
  assert list(arrays['expression_names']) == ['jawOpen']
  model = facemodel.ict_facekit_model(out)
  assert model.num_shape == 1 and model.num_expression == 1


def test_convert_names_a_missing_mesh(shared_data, tmp_path):
  with pytest.raises(FileNotFoundError, match='identity001.obj'):
    ict.read_release(shared_data / 'ict_facekit' / 'original_sample',
                     identity_indices=[0, 1])


@functools.partial(jax.jit, static_argnums=5)
def _render_all(screen, tri, ncc, albedo, sh, size):
  pncc, mask = render.render_pncc(screen, tri, ncc, size, size)
  shaded, _ = render.render_shaded(screen, tri, albedo, sh, size, size)
  ids = render.rasterize(screen, tri, size, size).triangle_id
  return pncc, mask, shaded, ids


@pytest.mark.parametrize('yaw_degrees', [0.0, 45.0, 90.0])
def test_mean_face_renders_as_the_brute_force_reference(model, yaw_degrees):
  """PNCC and shaded images of the mean face vs float64 NumPy references."""
  size = 128
  mean = np.asarray(model.mean_shape, np.float64)
  scale = 0.8 * size / np.ptp(mean[:, 1])
  pose = np.array([[0.1, np.radians(yaw_degrees), -0.05, size / 2,
                    size / 2, 0.0, scale]], np.float32)
  screen = synthesis.face_vertices_screen(model, None, None, pose, size)
  tri = np.asarray(model.triangles)
  # Light linear in the normal (bands 0 and 1) so the reference is exact:
  # irradiance = c0 A0 Y0 + A1 Y1 (c_y n_y + c_z n_z + c_x n_x).
  sh = np.zeros((1, 3, 9), np.float32)
  sh[0, :, 0] = [0.8, 0.7, 0.6]
  sh[0, :, 1:4] = [0.2, 0.3, -0.1]
  pncc, mask, shaded, ids = _render_all(screen, tri, model.ncc,
                                        model.albedo_mean, sh, size)
  ref_ids, ref_bary = reference_rasterize(np.asarray(screen[0]), tri, size,
                                          size)
  ids = np.asarray(ids[0])
  assert 0.15 < (ref_ids >= 0).mean() < 0.8
  assert np.mean(ids == ref_ids) >= 0.999
  np.testing.assert_array_equal(np.asarray(mask[0, ..., 0]), ids >= 0)
  same = (ids == ref_ids) & (ids >= 0)
  corners = tri[ref_ids[same]]
  bary = ref_bary[same]
  np.testing.assert_allclose(
      np.asarray(pncc[0])[same],
      np.einsum('pk,pkc->pc', bary, np.asarray(model.ncc)[corners]),
      atol=1e-4)
  # Reference vertex normals: area-weighted in the model frame, rotated.
  a, b, c = (mean[tri[:, k]] for k in range(3))
  face_normals = np.cross(b - a, c - a)
  normals = np.zeros_like(mean)
  for k in range(3):
    np.add.at(normals, tri[:, k], face_normals)
  rotation = np.asarray(geometry.euler_to_rotation(*pose[0, :3]), np.float64)
  normals = normals @ rotation.T
  normals /= np.linalg.norm(normals, axis=1, keepdims=True)
  irradiance = 0.8862269 * sh[0, :, 0] + 1.0233267 * (
      normals[:, 1:2] * sh[0, :, 1] + normals[:, 2:3] * sh[0, :, 2] +
      normals[:, 0:1] * sh[0, :, 3])
  colours = np.asarray(model.albedo_mean, np.float64) * irradiance
  np.testing.assert_allclose(
      np.asarray(shaded[0])[same],
      np.einsum('pk,pkc->pc', bary, colours[corners]), atol=2e-3)
