"""The rasterizer's CPU kernels, built on first use.

XLA FFI kernels in `kernels.cc`, for a CPU: the z-buffered visibility of
`rasterize(..., method='native')` with its barycentrics and depth, the
forward value of `interpolate`, and the area-weighted vertex normal sums of
`shading.vertex_normals` with their reverse-mode gradient. They give what
the JAX code gives (identical triangle ids; interpolated values and normal
sums equal up to float rounding of their sums), in one cache-local loop per
image instead of XLA passes, gathers and scatters over all B x T triangles
and B x H x W pixels.

`kernels.cc` is compiled once per source, jaxlib and machine with the
system C++ compiler (`$CXX`, else `c++`) against jaxlib's XLA FFI headers
into a cache folder (`$PNCCFACE_CACHE_DIR`, else `~/.cache/pnccface`), then
registered as an XLA FFI target for the CPU. Nothing is downloaded. Where no
compiler is found, or with PNCCFACE_NATIVE=0 in the environment (e.g. for
forward-mode autodiff through `vertex_normals`, whose kernel has a custom
VJP only), `available()` is False: `rasterizer.default_method()`
falls back to method='scatter' (same triangle ids, slower on a CPU) and
`interpolate` and `vertex_normals` to their JAX code.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

from absl import logging
import jax
import jax.numpy as jnp
import jaxlib

SOURCE = pathlib.Path(__file__).with_name('kernels.cc')
VISIBLE_TRIANGLES = 'pnccface_visible_triangles'
INTERPOLATE = 'pnccface_interpolate'
BARYCENTRICS = 'pnccface_barycentrics'
NORMAL_SUMS = 'pnccface_normal_sums'
NORMAL_SUMS_TRANSPOSE = 'pnccface_normal_sums_transpose'
# -ffp-contract=off: no fused multiply-adds, so every float op rounds as in
# XLA's elementwise code and the keys are bit-identical to method='scatter'.
FLAGS = ('-O3', '-std=c++17', '-shared', '-fPIC', '-ffp-contract=off',
         '-fno-fast-math') + (
             # jaxlib's x86-64 wheels need AVX already; it gives the kernels
             # single-instruction floor and ceil.
             ('-mavx',) if platform.machine() in ('x86_64', 'AMD64') else ())


class BuildError(RuntimeError):
  """The kernel could not be compiled (the message holds the compiler's)."""


def cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get('PNCCFACE_CACHE_DIR') or
                      pathlib.Path.home() / '.cache' / 'pnccface')


def _compiler() -> str | None:
  return shutil.which(os.environ.get('CXX', 'c++'))


def library_path() -> pathlib.Path:
  """Where the kernel for this source, jaxlib and machine is cached."""
  digest = hashlib.sha256()
  for part in (SOURCE.read_bytes(), jaxlib.__version__.encode(),
               platform.machine().encode(), ' '.join(FLAGS).encode()):
    digest.update(part)
  return cache_dir() / f'rasterizer_kernels_{digest.hexdigest()[:16]}.so'


def build() -> pathlib.Path:
  """Compiles the kernel into the cache (once) and returns the library."""
  path = library_path()
  if path.exists():
    return path
  compiler = _compiler()
  if compiler is None:
    raise BuildError('no C++ compiler found (set $CXX or install c++)')
  path.parent.mkdir(parents=True, exist_ok=True)
  # Compile to a private name, then rename: concurrent processes (pmap
  # tests, several launches) never load a half-written library.
  with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
    partial = pathlib.Path(tmp) / path.name
    command = [compiler, *FLAGS, f'-I{jax.ffi.include_dir()}', str(SOURCE),
               '-o', str(partial)]
    result = subprocess.run(command, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
      raise BuildError(f'{" ".join(command)} failed:\n{result.stderr[-4000:]}')
    os.replace(partial, path)
  logging.info('Built the rasterizer kernels: %s', path)
  return path


@functools.cache
def available() -> bool:
  """True when the kernels are built and registered for the CPU."""
  if os.environ.get('PNCCFACE_NATIVE', '1') == '0':
    return False
  try:
    library = ctypes.cdll.LoadLibrary(str(build()))
  except (BuildError, OSError) as error:
    logging.warning("method='native' is unavailable, using 'scatter': %s",
                    error)
    return False
  for name, function in ((VISIBLE_TRIANGLES, library.PnccfaceVisibleTriangles),
                         (INTERPOLATE, library.PnccfaceInterpolate),
                         (BARYCENTRICS, library.PnccfaceBarycentrics),
                         (NORMAL_SUMS, library.PnccfaceNormalSums),
                         (NORMAL_SUMS_TRANSPOSE,
                          library.PnccfaceNormalSumsTranspose)):
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(function),
                                platform='cpu')
  return True


def use_for(*arrays) -> bool:
  """Whether the kernels serve these inputs: a CPU backend where they built,
  and float32 arrays. Other dtypes (float64 finite-difference checks,
  bfloat16) stay in JAX, which keeps their precision and output dtype."""
  if jax.default_backend() != 'cpu':
    return False
  if any(jnp.result_type(a) != jnp.float32 for a in arrays):
    return False
  return available()


def _require():
  if not available():
    raise BuildError('the native rasterizer kernels did not build (see the '
                     'warning above)')


def visible_triangles(vertices, triangles, height: int, width: int):
  """[B, V, 3] float32 (depth in key steps), [T, 3] int32 -> [B, H, W] ids.

  See `kernels.cc`; -1 marks background. CPU only.
  """
  _require()
  batch = vertices.shape[0]
  call = jax.ffi.ffi_call(
      VISIBLE_TRIANGLES, jax.ShapeDtypeStruct((batch, height, width), jnp.int32),
      vmap_method='sequential')
  return call(vertices.astype(jnp.float32), triangles.astype(jnp.int32))


def barycentrics(triangle_id, vertices, triangles):
  """Barycentrics [B, H, W, 3] and depth [B, H, W] of the visible triangles.

  `rasterize`'s (same float ops), 0 on background. CPU only.
  """
  _require()
  batch, height, width = triangle_id.shape
  call = jax.ffi.ffi_call(
      BARYCENTRICS,
      (jax.ShapeDtypeStruct((batch, height, width, 3), jnp.float32),
       jax.ShapeDtypeStruct((batch, height, width), jnp.float32)),
      vmap_method='sequential')
  return call(triangle_id.astype(jnp.int32), vertices.astype(jnp.float32),
              triangles.astype(jnp.int32))


def interpolate(triangle_id, vertices, triangles, attributes):
  """`rasterizer.interpolate`'s value (no gradient rule of its own). CPU only.

  Args:
    triangle_id: [B, H, W] int32, -1 on background.
    vertices: [B, V, >=2] float screen vertices (x, y used).
    triangles: [T, 3] int.
    attributes: [B, V, C] or [V, C] float.

  Returns:
    [B, H, W, C] float32, 0 on background.
  """
  _require()
  batch, height, width = triangle_id.shape
  if attributes.ndim == 2:
    attributes = attributes[None]  # shared by the batch: [1, V, C]
  call = jax.ffi.ffi_call(
      INTERPOLATE,
      jax.ShapeDtypeStruct((batch, height, width, attributes.shape[-1]),
                           jnp.float32), vmap_method='sequential')
  return call(triangle_id.astype(jnp.int32),
              vertices[..., :3].astype(jnp.float32),
              triangles.astype(jnp.int32), attributes.astype(jnp.float32))


def normal_sums(vertices, triangles):
  """[N, V, 3] float32 vertices -> [N, V, 3] area-weighted face-normal sums.

  `shading.vertex_normals`' sum before normalisation. CPU only.
  """
  _require()
  call = jax.ffi.ffi_call(
      NORMAL_SUMS, jax.ShapeDtypeStruct(vertices.shape, jnp.float32),
      vmap_method='sequential')
  return call(vertices.astype(jnp.float32), triangles.astype(jnp.int32))


def normal_sums_transpose(vertices, triangles, cotangent):
  """The vector-Jacobian product of `normal_sums` at `vertices`. CPU only."""
  _require()
  call = jax.ffi.ffi_call(
      NORMAL_SUMS_TRANSPOSE, jax.ShapeDtypeStruct(vertices.shape, jnp.float32),
      vmap_method='sequential')
  return call(vertices.astype(jnp.float32), triangles.astype(jnp.int32),
              cotangent.astype(jnp.float32))
