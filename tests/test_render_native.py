"""The CPU kernels of `pnccface.render.native` against the JAX code.

method='native' must give the triangle ids of method='scatter' bit for bit
(same keys, same tie rule), `rasterize`'s barycentrics and depth, and
`interpolate`'s value, with `interpolate`'s gradient unchanged; the vertex
normal sums and their gradient (the kernel's transpose) must match JAX's,
under vmap too. The brute-force comparisons are in test_render.py,
parametrised over methods.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnccface import render
from pnccface.render import meshes
from pnccface.render import native
from pnccface.render import rasterizer
from pnccface.render import shading
from tests.test_render import fit_to_image
from tests.test_render import load_3ddfa_face


@pytest.fixture(autouse=True)
def _needs_kernels():
  # Only a missing compiler skips: a kernel that no longer builds fails.
  if native._compiler() is None:  # pylint: disable=protected-access
    pytest.skip('no C++ compiler: the native kernels cannot build')
  assert native.available(), 'the native kernels did not build (see log)'


def rotation(yaw, pitch, roll):
  """Degrees -> [3, 3] rotation (yaw about y, pitch about x, roll about z)."""
  y, p, r = np.deg2rad([yaw, pitch, roll])
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0],
                 [-np.sin(y), 0, np.cos(y)]])
  rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)],
                 [0, np.sin(p), np.cos(p)]])
  rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0],
                 [0, 0, 1]])
  return rz @ rx @ ry


def posed_faces(vertices, size, poses):
  return jnp.asarray(np.stack([
      fit_to_image(vertices @ rotation(*pose).T, size, 0.8 * size)
      for pose in poses]))


POSES = ((0, 0, 0), (35, -10, 5), (-62, 15, -20), (85, 5, 0), (-80, -25, 30))


def test_3ddfa_face_ids_barycentrics_depth_match_scatter(shared_data):
  vertices, triangles, _ = load_3ddfa_face(shared_data)
  size = 160
  screen = posed_faces(vertices, size, POSES)
  rasters = {
      method: jax.jit(lambda v, m=method: render.rasterize(
          v, triangles, size, size, method=m))(screen)
      for method in ('scatter', 'native')}
  ids = np.asarray(rasters['native'].triangle_id)
  assert 0.2 < (ids >= 0).mean() < 0.8
  # Bit-identical keys: the same winner at every pixel, ties included.
  np.testing.assert_array_equal(ids, rasters['scatter'].triangle_id)
  np.testing.assert_allclose(rasters['native'].barycentrics,
                             rasters['scatter'].barycentrics, atol=1e-6)
  np.testing.assert_allclose(rasters['native'].depth,
                             rasters['scatter'].depth, rtol=1e-6, atol=1e-4)
  # Barycentrics of covered pixels are a partition of one, inside [0, 1].
  bary = np.asarray(rasters['native'].barycentrics)[ids >= 0]
  np.testing.assert_allclose(bary.sum(-1), 1.0, atol=1e-5)
  assert bary.min() > -1e-5 and bary.max() < 1 + 1e-5


def test_interpolate_value_and_gradient_match_jax():
  vertices, triangles = render_mesh()
  size = 40
  screen = posed_faces(vertices, size, POSES[:3])
  raster = render.rasterize(screen, triangles, size, size, method='native')
  rng = np.random.default_rng(0)
  shared = jnp.asarray(rng.uniform(size=(len(vertices), 3)), jnp.float32)
  batched = jnp.asarray(rng.uniform(size=(3, len(vertices), 2)), jnp.float32)
  for attributes in (shared, batched):
    value = render.interpolate(attributes, raster, screen, triangles)
    reference = rasterizer._interpolate_jax(  # pylint: disable=protected-access
        attributes, screen, raster.triangle_id, jnp.asarray(triangles))
    assert value.shape == reference.shape
    np.testing.assert_allclose(value, reference, atol=1e-6)
    assert float(jnp.abs(value).sum()) > 0

  target = jnp.asarray(rng.uniform(size=(3, size, size, 3)), jnp.float32)

  def loss(interpolate_fn, v, a):
    image = interpolate_fn(a, raster, v, triangles)
    return jnp.sum((image - target)**2)

  def jax_interpolate(a, r, v, t):
    return rasterizer._interpolate_jax(  # pylint: disable=protected-access
        a, v, r.triangle_id, jnp.asarray(t))

  grads = jax.grad(lambda v, a: loss(render.interpolate, v, a),
                   argnums=(0, 1))(screen, shared)
  expected = jax.grad(lambda v, a: loss(jax_interpolate, v, a),
                      argnums=(0, 1))(screen, shared)
  for got, want in zip(grads, expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(grads[0][..., :2]).sum()) > 0  # x, y get gradient


def render_mesh():
  return meshes.uv_sphere(20, 30)


def test_vmap_and_empty_images():
  vertices, triangles = render_mesh()
  size = 24
  screen = posed_faces(vertices, size, POSES[:2])
  # Off-screen meshes cover nothing: -1 ids, zero barycentrics and depth.
  away = screen.at[1, :, 0].add(10 * size)
  stacked = jnp.stack([screen, away])  # [2, B, V, 3]
  per_item = jax.vmap(lambda v: render.rasterize(
      v, triangles, size, size, method='native').triangle_id)(stacked)
  np.testing.assert_array_equal(per_item[0], render.rasterize(
      screen, triangles, size, size, method='scatter').triangle_id)
  assert np.all(np.asarray(per_item[1, 1]) == -1)
  raster = render.rasterize(away, triangles, size, size, method='native')
  assert np.all(np.asarray(raster.barycentrics[1]) == 0)
  assert np.all(np.asarray(raster.depth[1]) == 0)


def test_default_on_cpu_and_fallback_without_compiler(tmp_path):
  assert jax.default_backend() == 'cpu'
  assert render.default_method() == 'native'
  # Without the kernels everything is JAX again, forward-mode autodiff
  # through the shaded renderer included.
  script = textwrap.dedent('''
      import jax, jax.numpy as jnp
      from pnccface import render
      from pnccface.render import meshes, native
      assert not native.available()
      assert render.default_method() == 'scatter', render.default_method()
      v, t = meshes.uv_sphere(8, 10)
      screen = jnp.asarray(v)[None] * 8 + jnp.asarray([12.0, 12.0, 0.0])
      image, mask = render.render_pncc(screen, t, v * 0.5 + 0.5, 24, 24)
      assert float(mask.mean()) > 0.1
      shade = lambda s: render.render_shaded(
          s, t, jnp.full(v.shape, 0.5), render.ambient_sh_coefficients(1),
          24, 24)[0].sum()
      _, tangent = jax.jvp(shade, (screen,), (jnp.ones_like(screen),))
      print('fell back', float(tangent))
  ''')
  for name, value in (('CXX', str(tmp_path / 'no-such-compiler')),
                      ('PNCCFACE_NATIVE', '0')):
    env = dict(os.environ, PNCCFACE_CACHE_DIR=str(tmp_path / 'cache'))
    env[name] = value
    result = subprocess.run([sys.executable, '-c', script], env=env,
                            capture_output=True, text=True, timeout=300,
                            cwd=pathlib.Path(__file__).resolve().parents[1],
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'fell back' in result.stdout
    if name == 'CXX':  # a missing compiler is said once; the switch is quiet
      assert "method='native' is unavailable, using 'scatter'" in (
          result.stderr)
      assert 'no C++ compiler found' in result.stderr
    else:
      assert 'unavailable' not in result.stderr


def test_build_error_names_the_command_and_the_compiler_message(tmp_path,
                                                                 monkeypatch):
  failing = tmp_path / 'bad-cxx'
  failing.write_text('#!/bin/sh\necho "kernels.cc:1: error: nope" >&2\n'
                     'exit 1\n')
  failing.chmod(0o755)
  monkeypatch.setenv('CXX', str(failing))
  monkeypatch.setenv('PNCCFACE_CACHE_DIR', str(tmp_path / 'cache'))
  with pytest.raises(native.BuildError, match='error: nope') as error:
    native.build()
  assert str(failing) in str(error.value)
  assert not list((tmp_path / 'cache').glob('*.so'))  # nothing half-written


def test_vertex_normals_value_and_gradient_match_jax():
  vertices, triangles = render_mesh()
  rng = np.random.default_rng(1)
  # [2, 3, V, 3]: leading dims are flattened for the kernel.
  batch = jnp.asarray(vertices[None, None] * rng.uniform(
      0.5, 2.0, (2, 3, 1, 3)) + rng.normal(0, 0.02, (2, 3) + vertices.shape),
                      jnp.float32)
  assert native.use_for(batch)
  sums = shading._normal_sums_native(  # pylint: disable=protected-access
      batch.reshape(-1, *vertices.shape), jnp.asarray(triangles))
  reference = shading._normal_sums_jax(batch, jnp.asarray(triangles))  # pylint: disable=protected-access
  np.testing.assert_allclose(sums.reshape(batch.shape), reference, rtol=1e-5,
                             atol=1e-6)
  normals = render.vertex_normals(batch, triangles)
  assert normals.shape == batch.shape

  weights = jnp.asarray(rng.normal(size=batch.shape), jnp.float32)

  def loss(sums_fn, v):
    return jnp.sum(weights * sums_fn(v))

  native_sums = lambda v: shading._normal_sums_native(  # pylint: disable=protected-access
      v.reshape(-1, *vertices.shape), jnp.asarray(triangles)).reshape(v.shape)
  jax_sums = lambda v: shading._normal_sums_jax(v, jnp.asarray(triangles))  # pylint: disable=protected-access
  # Reverse mode: the kernel's transpose.
  got = jax.jit(jax.grad(lambda v: loss(native_sums, v)))(batch)
  want = jax.grad(lambda v: loss(jax_sums, v))(batch)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert float(jnp.abs(want).max()) > 1e-2
  # Through the whole normalised normals, under vmap and jit.
  unit = lambda v: jnp.sum(weights[0] * render.vertex_normals(v, triangles))
  got = jax.jit(jax.vmap(jax.grad(unit)))(batch)
  want = jax.vmap(jax.grad(lambda v: jnp.sum(weights[0] * (
      jax_sums(v) / jnp.sqrt(jnp.sum(jax_sums(v)**2, -1, keepdims=True) +
                             1e-20)))))(batch)
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_non_finite_vertices_cover_nothing_and_do_not_crash():
  vertices, triangles = render_mesh()
  size = 24
  screen = np.array(posed_faces(vertices, size, POSES[:1]))
  bad = screen.copy()
  bad[0, :40] = np.nan  # a diverged model's output, in part
  bad[0, 40:80, 0] = np.inf
  ids = {m: np.asarray(render.rasterize(bad, triangles, size, size,
                                        method=m).triangle_id)
         for m in ('scatter', 'native')}
  np.testing.assert_array_equal(ids['native'], ids['scatter'])
  touched = np.isin(triangles, np.arange(80)).any(-1)
  assert not np.isin(ids['native'], np.flatnonzero(touched)).any()
  assert (ids['native'] >= 0).any()


def test_only_float32_goes_to_the_kernels():
  vertices, triangles = render_mesh()
  single = jnp.asarray(vertices, jnp.float32)
  assert native.use_for(single, single)
  half = single.astype(jnp.bfloat16)
  assert not native.use_for(single, half)
  # bfloat16 stays in JAX: its dtype and precision are JAX's.
  assert render.vertex_normals(half, triangles).dtype == jnp.bfloat16
  with jax.enable_x64(True):
    double = jnp.asarray(vertices, jnp.float64)
    assert not native.use_for(double)
    normals = render.vertex_normals(double, triangles)
    assert normals.dtype == jnp.float64
    np.testing.assert_allclose(
        normals, render.vertex_normals(single, triangles), atol=1e-5)
