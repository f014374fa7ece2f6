"""Rasterizer, interpolation, shading: against a brute-force NumPy reference."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from pnccface import geometry
from pnccface import render
from pnccface.render import meshes
from pnccface.render import native
from tests.conftest import reference_rasterize

# 'native' needs a C++ compiler to build its kernel; without one it is left
# out (test_render_native.py fails if a compiler is there and the build fails).
HAVE_COMPILER = native._compiler() is not None  # pylint: disable=protected-access
RUNNABLE = [m for m in render.METHODS if m != 'native' or HAVE_COMPILER]
METHODS = [pytest.param(m, marks=pytest.mark.skipif(
    m not in RUNNABLE, reason='no C++ compiler for the native kernel'))
           for m in render.METHODS]


def random_soup(rng, height, width, num_small=300, num_medium=30,
                num_large=6):
  """Independent triangles: tiny, medium and a few huge, overlapping."""
  parts = []
  for count, size, near in ((num_small, 1.5, 0), (num_medium, 12.0, 2),
                            (num_large, 1.5 * max(height, width), 4)):
    centre = rng.uniform([0, 0], [width, height], (count, 1, 2))
    xy = centre + rng.normal(0, size, (count, 3, 2))
    depth = rng.uniform(near, near + 6, (count, 1, 1)) + rng.normal(
        0, 0.5, (count, 3, 1))
    parts.append(np.concatenate([xy, depth], -1))
  vertices = np.concatenate(parts).reshape(-1, 3).astype(np.float32)
  triangles = np.arange(len(vertices), dtype=np.int32).reshape(-1, 3)
  return vertices, triangles


def fit_to_image(vertices, size, fill):
  """Model-frame vertices -> screen vertices filling `fill` pixels, centred."""
  lo, hi = vertices.min(0), vertices.max(0)
  scale = fill / (hi - lo)[:2].max()
  centre = (lo + hi) / 2
  return np.stack([(vertices[:, 0] - centre[0]) * scale + size / 2,
                   -(vertices[:, 1] - centre[1]) * scale + size / 2,
                   -(vertices[:, 2] - centre[2]) * scale], -1).astype(
                       np.float32)


def load_3ddfa_face(shared_data):
  folder = shared_data / '3ddfa'
  vertices = (np.load(folder / 'u_shp.npy') +
              np.load(folder / 'u_exp.npy')).reshape(-1, 3)
  triangles = scipy.io.loadmat(folder / 'tri.mat')['tri'].T.astype(
      np.int32) - 1
  colours = np.load(folder / 'pncc_code.npy').T.astype(np.float32)
  return vertices, triangles, colours


def rasterize_ids(vertices, triangles, height, width, method):
  fn = jax.jit(lambda v: render.rasterize(v, triangles, height, width,
                                          method=method).triangle_id)
  return np.asarray(fn(jnp.asarray(vertices)[None])[0])


# ----------------------------------------------------------------------------
# Visibility.


@pytest.mark.parametrize('method', METHODS)
def test_random_soup_matches_reference(method):
  rng = np.random.default_rng(0)
  height, width = 48, 64
  vertices, triangles = random_soup(rng, height, width)
  ids = rasterize_ids(vertices, triangles, height, width, method)
  ref_ids, _ = reference_rasterize(vertices, triangles, height, width)
  assert (ref_ids >= 0).mean() > 0.9  # the huge triangles cover the image
  assert len(np.unique(ref_ids)) > 180  # and small ones stay visible
  assert np.mean(ids == ref_ids) >= 0.999


def test_full_screen_quad_and_many_large_triangles():
  height, width = 40, 56
  quad = np.array([[-3, -3, 5], [width + 3, -3, 5], [width + 3, height + 3, 5],
                   [-3, height + 3, 5]], np.float32)
  quad_tris = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
  for method in RUNNABLE:
    ids = rasterize_ids(quad, quad_tris, height, width, method)
    ref_ids, _ = reference_rasterize(quad, quad_tris, height, width)
    assert np.all(ids >= 0)
    np.testing.assert_array_equal(ids, ref_ids)
  # 23 screen-filling triangles at random depths: several while-loop chunks
  # of the large tier (4 per chunk), and a pixel-exact nearest surface.
  rng = np.random.default_rng(1)
  count = 23
  xy = rng.uniform(-2 * width, 3 * width, (count, 3, 2))
  depth = rng.uniform(1, 9, (count, 3, 1))
  vertices = np.concatenate([xy, depth], -1).reshape(-1, 3).astype(np.float32)
  triangles = np.arange(3 * count, dtype=np.int32).reshape(-1, 3)
  ref_ids, _ = reference_rasterize(vertices, triangles, height, width)
  assert len(np.unique(ref_ids[ref_ids >= 0])) >= 3
  for method in RUNNABLE:
    ids = rasterize_ids(vertices, triangles, height, width, method)
    assert np.mean(ids == ref_ids) >= 0.999


def grid_mesh(height, width, step, depths):
  """Triangles of a grid whose vertices are pixel centres, `step` apart.

  Each cell is two triangles, triangle t at the flat depth depths[t].
  Returns [3 * T, 3] vertices, unshared (triangle t is rows 3t .. 3t + 2).
  """
  corners = []
  for r in range(0, height - step, step):
    for c in range(0, width - step, step):
      a, b = (c + 0.5, r + 0.5), (c + step + 0.5, r + 0.5)
      d, e = (c + 0.5, r + step + 0.5), (c + step + 0.5, r + step + 0.5)
      corners += [(a, b, e), (a, e, d)]
  return np.asarray([[x, y, depths[t]] for t, tri in enumerate(corners)
                     for x, y in tri], np.float32)


@pytest.mark.parametrize('method', METHODS)
def test_tiers_exact_on_centres_and_depth_ties(method):
  # Every vertex on a pixel centre and every centre on edges shared by
  # several triangles at equal depth: ties go to the smaller id. Step-1
  # cells have a 2-centre span (the 2x2 tier, which skips the first tier's
  # centre and takes its offsets one at a time); step-3 cells span 4 centres
  # (the 4x4 tier), at depth 0 or 1 so that they tie with, or hide, the
  # step-1 grid at depth 1 (flat triangles: exact depths in the key).
  height, width = 14, 17
  fine = grid_mesh(height, width, 1, np.ones(1000))
  coarse = grid_mesh(height, width, 3,
                     np.random.default_rng(4).choice([0.0, 1.0], 1000))
  # Either grid first in id order: ties go to the fine grid, then the coarse.
  for vertices in (np.concatenate([fine, coarse]),
                   np.concatenate([coarse, fine])):
    triangles = np.arange(len(vertices), dtype=np.int32).reshape(-1, 3)
    ref_ids, _ = reference_rasterize(vertices, triangles, height, width)
    ids = rasterize_ids(vertices, triangles, height, width, method)
    np.testing.assert_array_equal(ids, ref_ids)
    assert len(np.unique(ref_ids)) > 60


def test_methods_identical_and_batched():
  rng = np.random.default_rng(2)
  height, width = 32, 40
  soups = [random_soup(rng, height, width, 200, 20, 3)[0] for _ in range(3)]
  _, triangles = random_soup(rng, height, width, 200, 20, 3)
  batch = jnp.asarray(np.stack(soups))
  by_method = {
      m: np.asarray(jax.jit(lambda v, m=m: render.rasterize(
          v, triangles, height, width, method=m).triangle_id)(batch))
      for m in RUNNABLE}
  np.testing.assert_array_equal(by_method['scatter'], by_method['sort'])
  if 'native' in by_method:
    np.testing.assert_array_equal(by_method['scatter'], by_method['native'])
  for b, soup in enumerate(soups):  # batch entries are independent
    ref_ids, _ = reference_rasterize(soup, triangles, height, width)
    assert np.mean(by_method['scatter'][b] == ref_ids) >= 0.999


def test_sphere_mesh_and_interpolation():
  vertices, triangles = meshes.uv_sphere(70, 150)  # ~21k triangles
  assert len(triangles) > 20000
  size = 128
  screen = fit_to_image(vertices, size, 110)
  raster = jax.jit(lambda v: render.rasterize(v, triangles, size, size))(
      jnp.asarray(screen)[None])
  ref_ids, ref_bary = reference_rasterize(screen, triangles, size, size)
  ids = np.asarray(raster.triangle_id[0])
  assert np.mean(ids == ref_ids) >= 0.999
  same = (ids == ref_ids) & (ids >= 0)
  np.testing.assert_allclose(np.asarray(raster.barycentrics[0])[same],
                             ref_bary[same], atol=1e-4)
  colours = np.random.default_rng(3).uniform(size=vertices.shape).astype(
      np.float32)
  image = np.asarray(render.interpolate(colours, raster, screen[None],
                                        triangles)[0])
  expected = np.einsum('pk,pkc->pc', ref_bary[same],
                       colours[triangles[ref_ids[same]]])
  np.testing.assert_allclose(image[same], expected, atol=1e-4)
  assert np.all(image[ids < 0] == 0)
  # Depth: nearest surface (front of the sphere, depth < centre depth 0).
  depth = np.asarray(raster.depth[0])
  assert np.all(depth[ids >= 0] <= 1e-3)


@pytest.mark.parametrize('method', METHODS)
def test_3ddfa_face_matches_reference(shared_data, method):
  vertices, triangles, colours = load_3ddfa_face(shared_data)
  size = 224
  screen = fit_to_image(vertices, size, 200)
  pncc, mask = jax.jit(lambda v: render.render_pncc(
      v, triangles, colours, size, size, method=method))(
          jnp.asarray(screen)[None])
  raster = jax.jit(lambda v: render.rasterize(
      v, triangles, size, size, method=method))(jnp.asarray(screen)[None])
  ids = np.asarray(raster.triangle_id[0])
  ref_ids, ref_bary = reference_rasterize(screen, triangles, size, size)
  assert 0.3 < (ref_ids >= 0).mean() < 0.9
  assert np.mean(ids == ref_ids) >= 0.999
  np.testing.assert_array_equal(np.asarray(mask[0, ..., 0]), ids >= 0)
  same = (ids == ref_ids) & (ids >= 0)
  expected = np.einsum('pk,pkc->pc', ref_bary[same],
                       colours[triangles[ref_ids[same]]])
  np.testing.assert_allclose(np.asarray(pncc[0])[same], expected, atol=1e-4)
  assert np.all(np.asarray(pncc[0])[ids < 0] == 0)


def test_3ddfa_noneck_topology_indexes_the_subset(shared_data):
  folder = shared_data / '3ddfa'
  with open(folder / 'tri_noneck.pkl', 'rb') as f:
    triangles = np.asarray(pickle.load(f)).T
  indices = np.load(folder / 'indices_noneck.npy')
  assert triangles.shape == (76073, 3)
  assert triangles.min() == 0 and triangles.max() == len(indices) - 1


def test_rejects_bad_shapes_and_method():
  with pytest.raises(ValueError, match=r'\[B, V, 3\]'):
    render.rasterize(jnp.zeros((4, 3)), np.zeros((1, 3), np.int32), 8, 8)
  with pytest.raises(ValueError, match=r'\[T, 3\]'):
    render.rasterize(jnp.zeros((1, 4, 3)), np.zeros((3,), np.int32), 8, 8)
  with pytest.raises(ValueError, match='method'):
    render.rasterize(jnp.zeros((1, 4, 3)), np.zeros((1, 3), np.int32), 8, 8,
                     method='magic')


# ----------------------------------------------------------------------------
# Gradients (interior: no pixel centre crosses an edge under the
# perturbation; checked explicitly).


def _small_scene():
  vertices, triangles = meshes.uv_sphere(6, 10)
  screen = fit_to_image(vertices, 24, 20)
  rng = np.random.default_rng(4)
  screen = screen + rng.normal(0, 0.3, screen.shape).astype(np.float32)
  albedo = rng.uniform(0.2, 0.9, vertices.shape).astype(np.float32)
  sh = np.asarray(render.ambient_sh_coefficients()) + rng.normal(
      0, 0.3, 27).astype(np.float32)
  weights = rng.normal(size=(1, 24, 24, 3))
  return screen, triangles, albedo, sh, weights


def test_gradients_match_finite_differences():
  screen, triangles, albedo, sh, weights = _small_scene()
  size = 24
  with jax.enable_x64(True):
    weights = jnp.asarray(weights, jnp.float64)

    def loss(vertices, albedo, sh):
      image, _ = render.render_shaded(vertices[None], triangles, albedo,
                                      sh[None], size, size)
      return jnp.sum(weights * image)

    args = [jnp.asarray(a, jnp.float64) for a in (screen, albedo, sh)]
    loss = jax.jit(loss)
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    ids = jax.jit(lambda v: render.rasterize(
        v[None], triangles, size, size).triangle_id)
    rng = np.random.default_rng(5)
    # Small enough that no pixel centre crosses an edge (asserted below).
    eps = 1e-6
    for i in range(3):
      direction = rng.normal(size=args[i].shape)
      plus = list(args)
      minus = list(args)
      plus[i] = args[i] + eps * direction
      minus[i] = args[i] - eps * direction
      if i == 0:  # the perturbation must not change visibility
        np.testing.assert_array_equal(ids(plus[0]), ids(args[0]))
        np.testing.assert_array_equal(ids(minus[0]), ids(args[0]))
      numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
      analytic = np.sum(np.asarray(grads[i]) * direction)
      assert abs(analytic) > 1e-3
      np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-6)


def test_interpolate_gradient_ignores_visibility():
  screen, triangles, albedo, _, _ = _small_scene()
  raster = jax.jit(lambda v: render.rasterize(v, triangles, 24, 24))(
      jnp.asarray(screen)[None])

  def total(vertices):
    return jnp.sum(render.interpolate(albedo, raster, vertices[None],
                                      triangles))

  grad = np.asarray(jax.jit(jax.grad(total))(jnp.asarray(screen)))
  assert np.all(np.isfinite(grad))
  visible = np.unique(np.asarray(triangles)[
      np.asarray(raster.triangle_id[0])[np.asarray(raster.triangle_id[0]) >=
                                        0]])
  hidden = np.setdiff1d(np.arange(len(screen)), visible)
  assert len(hidden) > 0
  # Vertices of no visible triangle get no gradient; depth never does.
  assert np.all(grad[hidden] == 0)
  assert np.all(grad[:, 2] == 0)


# ----------------------------------------------------------------------------
# Shading, PNCC, compositing, landmarks.


def test_sh_basis_hand_values():
  basis = np.asarray(render.sh_basis(jnp.array([[0.0, 0.0, 1.0],
                                                [1.0, 0.0, 0.0]])))
  # A_0 Y_00 = pi * 0.2820948; A_1 Y_1 = 2 pi / 3 * 0.4886025;
  # A_2 Y_20 (3 - 1) = pi / 4 * 0.3153916 * 2; A_2 Y_22 = pi / 4 * 0.5462742.
  expect_z = [0.8862269, 0, 1.0233267, 0, 0, 0, 0.4954159, 0, 0]
  expect_x = [0.8862269, 0, 0, 1.0233267, 0, 0, -0.2477080, 0, 0.4290428]
  np.testing.assert_allclose(basis, [expect_z, expect_x], atol=1e-6)
  ambient = render.sh_shading(jnp.array([[[0.3, -0.4, 0.866]]]),
                              render.ambient_sh_coefficients(1))
  np.testing.assert_allclose(ambient, np.ones((1, 1, 3)), atol=1e-6)


def test_vertex_normals_point_out_of_the_mesh():
  vertices, triangles = meshes.uv_sphere(12, 20)
  normals = np.asarray(render.vertex_normals(vertices, triangles))
  np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-5)
  assert np.min(np.sum(normals * vertices, -1)) > 0.98
  # One front-facing triangle, counter-clockwise seen from +z: normal +z.
  tri_normal = render.vertex_normals(
      jnp.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), jnp.array([[0, 1, 2]]))
  np.testing.assert_allclose(tri_normal, [[0, 0, 1]] * 3, atol=1e-6)


def test_render_shaded_composites_and_normals_face_camera():
  vertices, triangles = meshes.uv_sphere(20, 30)
  size = 32
  camera = geometry.WeakPerspective(
      geometry.euler_to_rotation(0.1, 0.3, 0.0), jnp.float32(12.0),
      jnp.array([16.0, 16.0, 0.0]))
  screen = geometry.weak_perspective_to_screen(vertices, camera, size)[None]
  background = jnp.full((1, size, size, 3), 0.25)
  # Light from the camera (+z): brighter where the normal faces the viewer.
  sh = np.zeros((3, 9), np.float32)
  sh[:, 0] = 0.5
  sh[:, 2] = 1.0
  image, mask = jax.jit(lambda v: render.render_shaded(
      v, triangles, np.full((len(vertices), 3), 0.8), sh[None], size, size,
      background=background))(screen)
  image, mask = np.asarray(image[0]), np.asarray(mask[0, ..., 0])
  assert 0.3 < mask.mean() < 0.9
  np.testing.assert_array_equal(image[mask == 0], 0.25)
  centre_row, centre_col = np.argwhere(mask > 0).mean(0).astype(int)
  normals = np.asarray(render.screen_normals(screen, triangles))[0]
  raster = jax.jit(lambda v: render.rasterize(v, triangles, size, size))(
      screen)
  id_centre = int(raster.triangle_id[0, centre_row, centre_col])
  assert np.all(normals[triangles[id_centre]][:, 2] > 0.8)
  rim = (mask > 0) & (np.asarray(raster.depth[0]) > -6.0)
  assert rim.sum() > 10
  assert image[centre_row, centre_col, 0] > image[rim][:, 0].mean()


def test_render_pncc_background_and_broadcast():
  vertices, triangles = meshes.uv_sphere(10, 16)
  screen = np.stack([fit_to_image(vertices, 20, 10),
                     fit_to_image(vertices, 20, 16)])
  ncc = np.asarray(render.vertex_normals(vertices, triangles)) * 0.5 + 0.5
  pncc_fn = jax.jit(lambda v, c: render.render_pncc(v, triangles, c, 20, 20))
  pncc, mask = pncc_fn(screen, ncc)
  pncc_b, _ = pncc_fn(screen, np.stack([ncc, ncc]))
  np.testing.assert_allclose(pncc, pncc_b)
  assert pncc.shape == (2, 20, 20, 3) and mask.shape == (2, 20, 20, 1)
  assert np.all(np.asarray(pncc)[np.asarray(mask[..., 0]) == 0] == 0)
  assert mask[0].sum() < mask[1].sum()


def test_project_landmarks():
  screen = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3)
  landmarks = render.project_landmarks(screen, np.array([4, 0]))
  np.testing.assert_array_equal(landmarks, np.asarray(screen)[:, [4, 0], :2])


def test_vertex_normals_batched_match_numpy_and_gradient():
  vertices, triangles = meshes.uv_sphere(8, 20)
  rng = np.random.default_rng(6)
  batch = (vertices[None] * rng.uniform(0.5, 2.0, (2, 1, 3))).astype(
      np.float32)
  reference = []
  for v in batch.astype(np.float64):  # np.add.at: one image at a time
    a, b, c = (v[triangles[:, k]] for k in range(3))
    face = np.cross(b - a, c - a)
    summed = np.zeros_like(v)
    for k in range(3):
      np.add.at(summed, triangles[:, k], face)
    reference.append(summed / np.linalg.norm(summed, axis=-1, keepdims=True))
  normals = render.vertex_normals(jnp.asarray(batch), triangles)
  np.testing.assert_allclose(normals, np.stack(reference), atol=1e-5)
  weights = rng.normal(size=batch.shape)
  with jax.enable_x64(True):
    loss = jax.jit(lambda v: jnp.sum(weights * render.vertex_normals(
        v, triangles)))
    v64 = jnp.asarray(batch, jnp.float64)
    direction = rng.normal(size=batch.shape)
    eps = 1e-6
    numeric = (loss(v64 + eps * direction) - loss(v64 - eps * direction)) / (
        2 * eps)
    analytic = np.sum(np.asarray(jax.grad(loss)(v64)) * direction)
    assert abs(analytic) > 1e-2
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


def test_directional_sh_coefficients_give_ambient_plus_cosine():
  normals = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]],
                     np.float32)
  direction = np.array([0.6, 0.0, 0.8])
  sh = render.directional_sh_coefficients([0.5, 0.7, 0.9], direction, 0.3)
  irradiance = np.asarray(render.sh_shading(normals[None], sh[None]))[0]
  expected = (np.array([0.5, 0.7, 0.9])[None, :] +
              0.3 * (normals @ direction)[:, None])
  np.testing.assert_allclose(irradiance, expected, atol=1e-5)
