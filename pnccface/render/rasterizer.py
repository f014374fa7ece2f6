"""Triangle rasterizer: z-buffered visibility and differentiable interpolation.

Screen-space vertices, pixel centres and depth follow `pnccface.geometry`.

Coverage and the tie rule (stated here once): pixel (i, j) is covered by a
triangle when its centre (j + 0.5, i + 0.5) lies inside the triangle or on its
boundary, for either winding (two-sided); zero-area triangles cover nothing.
Among the triangles covering a centre the one with the smallest depth there
wins. Ties -- equal depths, which is what a centre exactly on an edge shared
by two triangles gives, and depths closer than the quantisation step below --
go to the smaller triangle id.

Method (static shapes, jittable, no O(pixels x triangles) work). The batch is
flattened: its B * T triangles write into one B * H * W z-buffer.
  1. Per triangle, the range of pixel centres inside its screen bounding box,
     clipped to the image; its span = max(rows, cols) of that range.
  2. Tiers, `tiers=((w0, None), (w1, c1), ..., (None, cL))`, default
     `DEFAULT_TIERS` = 1x1, 2x2, 4x4, 16x16, whole image. First tier: every
     triangle tests the w0 x w0 centres at the top-left of its box (face-mesh
     triangles are about a pixel wide: at 224x224 the 76k-triangle 3DDFA
     face has 80% of its triangles covering at most one centre, so a single
     test settles them; a 2x2 first window would quadruple the work). It
     runs over chunks of the triangles in a loop (`_FIRST_TIER_CANDIDATES`
     triangles x images per iteration), which also records each triangle's
     tier.
     Tier k >= 1 holds the triangles with w(k-1) < span <= wk; they are
     grouped by tier once (a prefix count and one scatter, or one `lax.sort`
     for method='sort'), then a `lax.while_loop` takes them ck at a time, each
     testing a wk x wk window (the whole image for the last tier) less the
     w0 x w0 centres the first tier tested. Each chunk's per-triangle
     constants are computed once, then an inner loop tests the window's
     centres a group at a time (about `_PASS_CANDIDATES` candidates per
     pass). The loops run ceil(count / ck) times, so there is no capacity
     limit: any number of large triangles (e.g. a 2-triangle full-screen
     quad) is rasterised exactly, at the cost of more iterations.
  3. Visibility: each covering (pixel, triangle) candidate gets an int32 key
     `quantised_depth << id_bits | triangle_id`, with id_bits = bit length
     of T (17 for 76k-110k triangles) and depth quantised to the remaining
     31 - id_bits bits over the image's vertex-depth range (2^14 levels for a
     face); the per-pixel minimum key wins. `method='scatter'` takes it with a
     scatter-min; `method='sort'` (for TPU, where XLA lowers scatter to a slow
     serial loop) sorts candidates by (pixel, key) with `lax.sort` and reads
     each pixel's first entry through `searchsorted`. `method='native'`
     (the default on a CPU) runs steps 1-3 in one C++ loop per image, an XLA
     FFI kernel built on first use (`pnccface.render.native`): every
     triangle tests the centres of its box with the same float32 key, so a
     face mesh's XLA passes over all B x T triangles become one cache-local
     loop. All three give identical maps.

Gradients (`interpolate`): the triangle ids are piecewise constant and carry
no gradient; barycentrics are recomputed differentiably from the gathered
screen-space vertices, so gradients flow to vertex x, y (and to attributes)
through the visible triangles only. Visibility changes -- a silhouette edge
or occlusion boundary moving across a pixel -- are ignored. Barycentrics are
screen-space linear (exact for weak perspective; for a perspective camera
this is affine, not perspective-correct, interpolation).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from pnccface.render import native

Array = jnp.ndarray

METHODS = ('scatter', 'sort', 'native')
_NO_HIT = jnp.iinfo(jnp.int32).max  # key of an empty pixel: all 31 bits set


class Raster(NamedTuple):
  """Per-pixel visibility.

  triangle_id: [B, H, W] int32, the visible triangle, -1 on background.
  barycentrics: [B, H, W, 3] float32 weights of the triangle's 3 vertices at
    the pixel centre (screen-space linear); 0 on background.
  depth: [B, H, W] float32 screen depth of the visible surface at the pixel
    centre; 0 on background.
  """
  triangle_id: Array
  barycentrics: Array
  depth: Array

  @property
  def mask(self) -> Array:
    """[B, H, W, 1] float32, 1 where a triangle is visible."""
    return (self.triangle_id >= 0)[..., None].astype(jnp.float32)


def default_method() -> str:
  """'sort' on TPU (scatter is a serial loop there), 'native' on a CPU where
  its kernel builds, else 'scatter'."""
  backend = jax.default_backend()
  if backend == 'tpu':
    return 'sort'
  if backend == 'cpu' and native.available():
    return 'native'
  return 'scatter'


# (window side in pixels or None for the whole image, triangles per
# while-loop iteration or None for all triangles at once); see the module
# docstring. Chunks hold ~32k-64k candidate pixels.
DEFAULT_TIERS = ((1, None), (2, 16384), (4, 4096), (16, 256), (None, 4))


def rasterize(vertices_screen, triangles, height: int, width: int, *,
              method: str | None = None, tiers=DEFAULT_TIERS) -> Raster:
  """Z-buffered rasterization of a batch of meshes sharing one topology.

  Not differentiable (see `interpolate` for gradients). Jit it with
  `height`, `width`, `method` and `tiers` static.

  Args:
    vertices_screen: [B, V, 3] float, (x, y, depth) in image-frame pixels.
    triangles: [T, 3] int, 0-based vertex indices.
    height, width: image size in pixels.
    method: 'scatter' or 'sort' (see the module docstring); None picks
      `default_method()`.
    tiers: ((window, chunk), ...) with increasing windows (pixels), the first
      with chunk None (all triangles), the last with window None (whole
      image); chunk = triangles per while-loop iteration. Affects speed only.

  Returns:
    `Raster` with [B, H, W] leading dims.
  """
  method = default_method() if method is None else method
  if method not in METHODS:
    raise ValueError(f'method must be one of {METHODS}, got {method!r}')
  _check_tiers(tiers)
  vertices_screen = jnp.asarray(vertices_screen)
  triangles = jnp.asarray(triangles, jnp.int32)
  if vertices_screen.ndim != 3 or vertices_screen.shape[-1] != 3:
    raise ValueError('vertices_screen must have shape [B, V, 3], got '
                     f'{vertices_screen.shape}')
  if triangles.ndim != 2 or triangles.shape[-1] != 3:
    raise ValueError(f'triangles must have shape [T, 3], got {triangles.shape}')
  vertices = lax.stop_gradient(vertices_screen).astype(jnp.float32)
  triangle_id = _visible_triangles(vertices, triangles, height, width, method,
                                   tiers)
  if method == 'native':
    barycentrics, depth = native.barycentrics(triangle_id, vertices, triangles)
    return Raster(triangle_id, barycentrics, depth)
  tri_vertices = _gather_pixel_triangles(vertices, triangles, triangle_id)
  barycentrics = _pixel_barycentrics(tri_vertices, height, width)
  covered = (triangle_id >= 0)[..., None]
  barycentrics = jnp.where(covered, barycentrics, 0.0)
  depth = jnp.sum(barycentrics * tri_vertices[..., 2], axis=-1)
  return Raster(triangle_id, barycentrics, depth)


def _check_tiers(tiers):
  ok = (len(tiers) >= 1 and tiers[0][1] is None and tiers[-1][0] is None and
        all(c is not None and c > 0 for _, c in tiers[1:]) and
        all(w is not None and w > 0 for w, _ in tiers[:-1]))
  windows = [w for w, _ in tiers[:-1]]
  if not ok or windows != sorted(windows):
    raise ValueError('tiers must be ((window, None), (window, chunk), ..., '
                     f'(None, chunk)) with increasing windows, got {tiers}')


def interpolate(attributes, raster: Raster, vertices_screen,
                triangles) -> Array:
  """Per-pixel barycentric interpolation of vertex attributes.

  Differentiable w.r.t. `attributes` and the x, y of `vertices_screen`: the
  barycentrics are recomputed from the gathered vertices of each pixel's
  visible triangle. The triangle ids are held fixed (stop_gradient), so the
  gradient ignores visibility changes -- silhouette edges and occlusion
  boundaries moving across pixel centres. Interpolation is screen-space
  linear (not perspective-corrected). On a CPU the value of float32 inputs
  comes from the native kernel (`pnccface.render.native`), the gradient
  from the same JAX code as elsewhere.

  Args:
    attributes: [B, V, C] or [V, C] (shared by the batch) float.
    raster: `rasterize(vertices_screen, triangles, ...)`.
    vertices_screen: [B, V, 3], the vertices `raster` was computed from.
    triangles: [T, 3] int.

  Returns:
    [B, H, W, C]; 0 on background.
  """
  triangle_id = lax.stop_gradient(raster.triangle_id)
  batch, height, width = triangle_id.shape
  triangles = jnp.asarray(triangles, jnp.int32)
  attributes = jnp.asarray(attributes)
  vertices_screen = jnp.asarray(vertices_screen)
  shared = attributes.ndim == 2
  if attributes.ndim not in (2, 3) or attributes.shape[-2] != (
      vertices_screen.shape[1]) or (not shared and
                                    attributes.shape[0] != batch):
    raise ValueError('attributes must have shape [B, V, C] or [V, C] with '
                     f'B = {batch}, V = {vertices_screen.shape[1]}, got '
                     f'{attributes.shape}')
  if native.use_for(vertices_screen, attributes):
    return _interpolate_native(attributes, vertices_screen, triangle_id,
                               triangles)
  return _interpolate_jax(attributes, vertices_screen, triangle_id, triangles)


def _interpolate_jax(attributes, vertices_screen, triangle_id, triangles):
  """`interpolate` in JAX ops: its value off the CPU, its gradient anywhere."""
  height, width = triangle_id.shape[1:]
  covered = (triangle_id >= 0)[..., None]
  vertex_ids = triangles[jnp.maximum(triangle_id, 0)]  # [B, H, W, 3]
  rows = _batch_rows(vertex_ids, vertices_screen.shape[1])
  tri_vertices = _take_rows(vertices_screen, rows)  # [B, H, W, 3, 3]
  # Shared attributes are read from their [V, C] table by vertex id: no
  # [B, V, C] copy.
  tri_attributes = (attributes[vertex_ids] if attributes.ndim == 2 else
                    _take_rows(attributes, rows))  # [B, H, W, 3, C]
  barycentrics = _pixel_barycentrics(tri_vertices, height, width)
  values = jnp.einsum('bhwk,bhwkc->bhwc', barycentrics, tri_attributes)
  return jnp.where(covered, values, 0.0)


@jax.custom_jvp
def _interpolate_native(attributes, vertices_screen, triangle_id, triangles):
  """`interpolate`'s value from the CPU kernel; its JVP is `_interpolate_jax`'s.

  The per-pixel gathers of the JAX version were ~3 ms of a 224 px image's
  ~7 ms PNCC forward on one core; forward-only renders (PNCC targets,
  annotation, figures) now skip them, and gradients are unchanged.
  """
  values = native.interpolate(triangle_id, vertices_screen, triangles,
                              attributes)
  return values.astype(jnp.result_type(vertices_screen, attributes))


@_interpolate_native.defjvp
def _interpolate_native_jvp(primals, tangents):
  return jax.jvp(_interpolate_jax, primals, tangents)


# ----------------------------------------------------------------------------
# Barycentrics.


def _edge(ax, ay, bx, by, px, py):
  """Twice the signed area of (a, b, p); > 0 when p is right of a->b (y down)."""
  return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def _edge_functions(tri_vertices, px, py):
  """Edge functions of points against triangles.

  Args:
    tri_vertices: [..., 3, >=2] (x, y of vertices a, b, c).
    px, py: [...] point coordinates, broadcast against the leading dims.

  Returns:
    (w [..., 3], area [...]) with w[k] = edge function of the edge opposite
    vertex k, so w / area are the barycentrics and sum(w) = area.
  """
  ax, ay = tri_vertices[..., 0, 0], tri_vertices[..., 0, 1]
  bx, by = tri_vertices[..., 1, 0], tri_vertices[..., 1, 1]
  cx, cy = tri_vertices[..., 2, 0], tri_vertices[..., 2, 1]
  w = jnp.stack([_edge(bx, by, cx, cy, px, py), _edge(cx, cy, ax, ay, px, py),
                 _edge(ax, ay, bx, by, px, py)], axis=-1)
  return w, _edge(ax, ay, bx, by, cx, cy)


def _pixel_barycentrics(tri_vertices, height, width):
  """[B, H, W, 3, 3] per-pixel triangles -> [B, H, W, 3] barycentrics."""
  py = jnp.arange(height, dtype=tri_vertices.dtype)[:, None] + 0.5
  px = jnp.arange(width, dtype=tri_vertices.dtype)[None, :] + 0.5
  w, area = _edge_functions(tri_vertices, px, py)
  # Covered pixels have area != 0; the guard keeps background gradients finite.
  safe_area = jnp.where(area == 0, 1.0, area)
  return w / safe_area[..., None]


def _gather_pixel_triangles(vertices, triangles, triangle_id):
  vertex_ids = triangles[jnp.maximum(triangle_id, 0)]
  return _take_rows(vertices, _batch_rows(vertex_ids, vertices.shape[1]))


def _batch_rows(vertex_ids, num_vertices):
  """[B, ...] vertex ids -> rows of the flattened [B * V, C] vertex table.

  One flat index per entry: a batched (vmap) gather would build a
  (batch, vertex) index pair per entry instead.
  """
  batch = vertex_ids.shape[0]
  offsets = jnp.arange(batch, dtype=jnp.int32) * num_vertices
  return vertex_ids + offsets.reshape((batch,) + (1,) * (vertex_ids.ndim - 1))


def _take_rows(values, rows):
  """values [B, V, C], rows [B, ...] from `_batch_rows` -> [B, ..., C]."""
  return values.reshape(-1, values.shape[-1])[rows]


# ----------------------------------------------------------------------------
# Visibility of one image.


def _visible_triangles(vertices, triangles, height, width, method, tiers):
  """[B, V, 3] screen vertices -> [B, H, W] int32 visible ids (-1: none).

  The batch is flattened: B * T triangles write into a B * H * W z-buffer,
  so each chunked tier pools its triangles over the batch.
  """
  batch = vertices.shape[0]
  num_triangles = triangles.shape[0]
  num_pixels = height * width
  id_bits = max(int(num_triangles).bit_length(), 1)
  if id_bits > 24:
    raise ValueError(f'too many triangles for the int32 key: {num_triangles}')
  depth_bits = 31 - id_bits
  # Depth in quantisation steps, per vertex: 0 .. 2^depth_bits - 1 over the
  # image's vertex-depth range. Interpolating it is interpolating the depth
  # (an affine map), and it leaves no per-image constant to gather per
  # candidate.
  depth = vertices[..., 2]
  depth_lo = jnp.min(depth, axis=1, keepdims=True)
  depth_scale = (2.0**depth_bits - 1) / jnp.maximum(
      jnp.max(depth, axis=1, keepdims=True) - depth_lo, 1e-12)
  # A select, not a concatenate: XLA:CPU's concatenate is a slow
  # per-element branch.
  vertices = jnp.where(jnp.arange(3) == 2, (vertices - depth_lo[..., None]) *
                       depth_scale[..., None], vertices)
  if method == 'native':
    return native.visible_triangles(vertices, triangles, height, width)
  flat_vertices = vertices.reshape(-1, 3)

  def triangles_of(flat_ids):
    """Corners, meta and boxes of flat (triangle-major) ids, [K] each."""
    # Row gathers from the sources: far cheaper on CPU than one gather per
    # precomputed [T * B] array.
    tri_id, image = flat_ids // batch, flat_ids % batch
    vertex_rows = image[:, None] * vertices.shape[1] + triangles[tri_id]
    corner_xyz = flat_vertices[vertex_rows]  # [K, 3, 3]
    chunk_corners = tuple(corner_xyz[:, k, axis] for k in range(3)
                          for axis in range(3))
    chunk_meta = _TriangleMeta(tri_id, image * num_pixels)
    return (chunk_corners, chunk_meta,
            _pixel_boxes(chunk_corners, height, width))

  keys_of = functools.partial(_candidate_keys, height=height, width=width,
                              id_bits=id_bits, depth_bits=depth_bits)
  first_window = min(tiers[0][0], height, width)
  # The other tiers: windows clipped to the image; a tier whose window covers
  # the image takes every remaining triangle and ends the list.
  chunked = []
  for window, chunk in tiers[1:]:
    if window is None or (window >= height and window >= width):
      chunked.append((None, height, width, chunk))
      break
    chunked.append((window, min(window, height), min(window, width), chunk))

  def tier_of(boxes):
    """[T', B] tier of each triangle: k >= 1 for chunked tier k, else 0."""
    row0, row1, col0, col1 = boxes
    span = jnp.maximum(row1 - row0, col1 - col0) + 1
    tier = jnp.zeros_like(span)
    lower = first_window
    for k, (window, _, _, _) in enumerate(chunked, start=1):
      upper = span > lower if window is None else (span > lower) & (
          span <= window)
      tier = jnp.where(upper, k, tier)
      lower = window
    return tier

  # First tier, `first_chunk` triangles (of every image) per loop iteration.
  # Structure of arrays: one [T', B] array per corner coordinate, taken as
  # slices of one gather of whole [3, B] rows per corner from the [V, 3, B]
  # table. The loop makes that table an operand, computed once: at top level
  # XLA:CPU fused the transpose into each gather, which then read 16 strided
  # elements per row. Flat triangle index: t * B + b.
  by_vertex = jnp.transpose(vertices, (1, 2, 0))  # [V, 3, B]
  first_chunk = max(1, min(num_triangles, _FIRST_TIER_CANDIDATES // batch))
  num_chunks = -(-num_triangles // first_chunk)
  # Padding triangles (vertex 0 three times) are marked invalid: their ids
  # do not fit the key.
  padding = num_chunks * first_chunk - num_triangles
  padded = jnp.pad(triangles, ((0, padding), (0, 0)))
  first_offsets = _window_offsets(first_window, first_window)

  def first_tier(c, state):
    zbuffer, tier = state
    start = c * first_chunk
    chunk_triangles = lax.dynamic_slice_in_dim(padded, start, first_chunk)
    rows = [by_vertex[chunk_triangles[:, k]] for k in range(3)]  # [T', 3, B]
    corners = tuple(row[:, axis] for row in rows for axis in range(3))
    meta = _TriangleMeta(
        tri_id=start + jnp.arange(first_chunk, dtype=jnp.int32)[:, None],
        pixel_offset=jnp.arange(batch, dtype=jnp.int32)[None, :] *
        num_pixels)
    boxes = _pixel_boxes(corners, height, width)
    valid = meta.tri_id < num_triangles if padding else None
    pixels, keys = keys_of(_triangle_setup(corners, meta, boxes, valid),
                           first_offsets)
    zbuffer = _zbuffer_min(zbuffer, pixels, keys, method)
    if chunked:
      tier = lax.dynamic_update_slice_in_dim(
          tier, tier_of(boxes).reshape(-1), start * batch, axis=0)
    return zbuffer, tier

  zbuffer = jnp.full((batch * num_pixels,), _NO_HIT, jnp.int32)
  tier = jnp.zeros((num_chunks * first_chunk * batch,), jnp.int32)
  zbuffer, tier = lax.fori_loop(0, num_chunks, first_tier, (zbuffer, tier))

  if chunked:
    order, starts = _group_by_tier(tier[:num_triangles * batch],
                                   len(chunked), method)
    for k, (_, window_h, window_w, chunk) in enumerate(chunked, start=1):
      zbuffer = _chunked_tier(zbuffer, order, starts[k - 1], starts[k],
                              triangles_of,
                              _window_offsets(window_h, window_w,
                                              skip=first_window),
                              min(chunk, batch * num_triangles), keys_of,
                              method)
  id_mask = (1 << id_bits) - 1
  triangle_id = jnp.where(zbuffer == _NO_HIT, -1, zbuffer & id_mask)
  return triangle_id.reshape(batch, height, width)


class _TriangleMeta(NamedTuple):
  """Per-triangle data of the flattened batch, each [K] or broadcasting to
  the triangles' [T, B]."""
  tri_id: Array  # id within its mesh
  pixel_offset: Array  # b * H * W


def _pixel_boxes(corners, height, width):
  """Rows/cols of the first and last pixel centres in each triangle's box.

  Args:
    corners: (ax, ay, az, bx, by, bz, cx, cy, cz), each [T].

  Returns:
    (row0, row1, col0, col1), each [T] int32, clipped to the image; an empty
    range has row1 < row0 or col1 < col0.
  """
  ax, ay, _, bx, by, _, cx, cy, _ = corners

  def centre_range(lo, hi, size):
    # Centres are at k + 0.5; clip first so that huge or non-finite
    # coordinates convert to int safely.
    first = jnp.ceil(jnp.clip(lo, -2.0, size + 2.0) - 0.5)
    last = jnp.floor(jnp.clip(hi, -2.0, size + 2.0) - 0.5)
    first = jnp.maximum(first, 0).astype(jnp.int32)
    last = jnp.minimum(last, size - 1).astype(jnp.int32)
    return first, last

  col0, col1 = centre_range(jnp.minimum(jnp.minimum(ax, bx), cx),
                            jnp.maximum(jnp.maximum(ax, bx), cx), width)
  row0, row1 = centre_range(jnp.minimum(jnp.minimum(ay, by), cy),
                            jnp.maximum(jnp.maximum(ay, by), cy), height)
  return row0, row1, col0, col1


def _window_offsets(window_h, window_w, skip=0):
  """Static (di, dj) offsets of a window's centres, as two int32 [N] arrays.

  Offsets with di < skip and dj < skip are left out: the first tier has
  tested those (its skip x skip window at the same box origin) for every
  triangle already, so a later tier need not repeat them. NumPy arrays:
  `_chunked_tier` groups them at trace time.
  """
  di, dj = np.meshgrid(np.arange(window_h), np.arange(window_w),
                       indexing='ij')
  keep = ~((di < skip) & (dj < skip))
  return di[keep].astype(np.int32), dj[keep].astype(np.int32)


class _Setup(NamedTuple):
  """Per-triangle constants of `_candidate_keys`, each [K] (or [T, B])."""
  edges: tuple  # 3 x (ex, ey, base): w = base + ex * di - ey * dj
  depths: tuple  # (az, bz, cz) in quantisation steps
  scale: Array  # 1 / |area| (0 for zero area)
  row0: Array  # box origin, rows and columns (int32)
  col0: Array
  last_row: Array  # last row / column offset in the box; -1 when the
  last_col: Array  # triangle covers nothing (zero area, invalid)
  tri_id: Array
  pixel_offset: Array


def _triangle_setup(corners, meta, boxes, valid=None):
  """Per-triangle constants of the coverage and depth tests.

  Args:
    corners: 9 x [K] (or [T, B]) vertex coordinates (see `_pixel_boxes`),
      depth in quantisation steps.
    meta: `_TriangleMeta`; boxes: 4 x [K] (or [T, B]) int32.
    valid: optional bool, [K] or broadcasting; invalid triangles produce no
      candidate.

  Returns:
    `_Setup`.
  """
  ax, ay, az, bx, by, bz, cx, cy, cz = corners
  row0, row1, col0, col1 = boxes
  area = _edge(ax, ay, bx, by, cx, cy)
  # Flip clockwise triangles so that inside means all edge functions >= 0.
  sign = jnp.where(area < 0, -1.0, 1.0)
  inv_area = jnp.where(area == 0, 0.0, 1.0 / jnp.where(area == 0, 1.0, area))
  # Offsets of the window origin's centre from each vertex: small numbers,
  # so the edge functions below keep their precision far from the origin.
  x0 = col0.astype(jnp.float32) + 0.5
  y0 = row0.astype(jnp.float32) + 0.5
  edges = []
  for (px, py), (qx, qy) in (((bx, by), (cx, cy)), ((cx, cy), (ax, ay)),
                             ((ax, ay), (bx, by))):
    # w(p) = (q - p) x (pixel - p) = ex * (y0 + di - py) - ey * (x0 + dj - px)
    ex, ey = sign * (qx - px), sign * (qy - py)
    edges.append((ex, ey, ex * (y0 - py) - ey * (x0 - px)))
  covers = area != 0
  if valid is not None:
    covers &= valid
  return _Setup(tuple(edges), (az, bz, cz), sign * inv_area, row0, col0,
                jnp.where(covers, row1 - row0, -1),
                jnp.where(covers, col1 - col0, -1), meta.tri_id,
                meta.pixel_offset)


def _candidate_keys(setup, offsets, *, height, width, id_bits, depth_bits):
  """Covering (pixel, key) pairs of triangles at offsets from their box origin.

  Args:
    setup: `_Setup` of K triangles ([K], or [T, B] broadcasting).
    offsets: (di, dj), int32 [N] each (`_window_offsets` or a group of it).

  Returns:
    pixels [N * K] int32 (K = T * B for [T, B] inputs), flat pixel index
    into the batch's z-buffer, and keys (the packed depth|id, `_NO_HIT`
    where not covered).
  """
  rank = (1,) * setup.row0.ndim  # candidates are [N, *triangles]
  di, dj = (d.reshape((-1,) + rank) for d in offsets)
  fdi, fdj = di.astype(jnp.float32), dj.astype(jnp.float32)
  w = [base + ex * fdi - ey * fdj for ex, ey, base in setup.edges]
  covered = ((w[0] >= 0) & (w[1] >= 0) & (w[2] >= 0) &
             (di <= setup.last_row) & (dj <= setup.last_col))
  # w were scaled by sign, so scale = sign / area = 1 / |area| normalises
  # them. Depth is already in quantisation steps (see `_visible_triangles`).
  az, bz, cz = setup.depths
  depth = (w[0] * az + w[1] * bz + w[2] * cz) * setup.scale
  quantised = jnp.clip(jnp.floor(depth), 0, 2.0**depth_bits - 1)
  keys = (quantised.astype(jnp.int32) << id_bits) | setup.tri_id
  keys = jnp.where(covered, keys, _NO_HIT)
  # Uncovered candidates keep an in-range pixel: their `_NO_HIT` key leaves
  # the minimum unchanged, and the pixel index then needs no edge functions.
  rows = jnp.minimum(setup.row0 + di, height - 1)
  cols = jnp.minimum(setup.col0 + dj, width - 1)
  pixels = setup.pixel_offset + rows * width + cols
  pixels = jnp.broadcast_to(pixels, keys.shape)
  return pixels.reshape(-1), keys.reshape(-1)


def _zbuffer_min(zbuffer, pixels, keys, method):
  """zbuffer[p] = min(zbuffer[p], min of keys at p); pixels >= len dropped."""
  num_pixels = zbuffer.shape[0]
  if method == 'scatter':
    return zbuffer.at[pixels].min(keys, mode='drop')
  sorted_pixels, sorted_keys = lax.sort((pixels, keys), num_keys=2)
  targets = jnp.arange(num_pixels, dtype=pixels.dtype)
  first = jnp.searchsorted(sorted_pixels, targets, side='left')
  first = jnp.minimum(first, pixels.shape[0] - 1)
  hit = sorted_pixels[first] == targets
  return jnp.minimum(zbuffer, jnp.where(hit, sorted_keys[first], _NO_HIT))


# Rows of `_group_by_tier`'s blocked prefix count: a column counts at most
# this many members per tier, which fits the byte it is packed into.
_GROUP_ROWS = 64


def _group_by_tier(tier, num_tiers, method):
  """Triangle indices grouped by chunked tier, without sorting on CPU.

  Args:
    tier: [N] int32 in [0, num_tiers]; 0 = handled by the first tier only.

  Returns:
    order: [N] int32; order[starts[k - 1]:starts[k]] are the triangles of
      tier k (k = 1..num_tiers), each once (the order within a tier is
      irrelevant to the z-buffer minimum); the rest is padding.
    starts: [num_tiers + 1] int32, starts[0] = 0.
  """
  num = tier.shape[0]
  indices = jnp.arange(num, dtype=jnp.int32)
  if method == 'sort':
    counts = jnp.stack([jnp.sum(tier == k, dtype=jnp.int32)
                        for k in range(1, num_tiers + 1)])
    starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(counts)])
    key = jnp.where(tier == 0, num_tiers + 1, tier)
    _, order = lax.sort((key, indices), num_keys=1, is_stable=True)
    return order, starts
  # Rank within the tier by a blocked prefix count, then one scatter. The
  # flags are laid out [_GROUP_ROWS, columns] and counted down the rows
  # (associative_scan over whole rows: log2(64) vectorised passes instead of
  # log2(N) strided ones), four tiers packed a byte each into one int32; the
  # per-column totals are then prefix-counted (N / 64 entries), whose last
  # entry is the tier's size. Members are ranked column by column. Only the
  # padded `blocked` copy of `tier` is read: `tier` itself is computed from
  # the triangles' corners, and XLA would recompute it in each reader.
  columns = -(-num // _GROUP_ROWS)
  blocked = jnp.pad(tier, (0, _GROUP_ROWS * columns - num)).reshape(
      _GROUP_ROWS, columns)
  position = jnp.full_like(blocked, num)  # tier 0 and padding: dropped
  starts = [jnp.zeros((), jnp.int32)]
  for first in range(1, num_tiers + 1, 4):
    word = range(first, min(first + 4, num_tiers + 1))
    packed = sum(jnp.where(blocked == k, 1 << 8 * (k - first), 0)
                 for k in word)
    in_column = lax.associative_scan(jnp.add, packed, axis=0)
    for k in word:
      count = (in_column >> 8 * (k - first)) & 0xFF  # inclusive, per column
      through = lax.associative_scan(jnp.add, count[-1])  # inclusive
      rank = through - count[-1] + count  # 1-based within the tier
      position = jnp.where(blocked == k, starts[-1] + rank - 1, position)
      starts.append(starts[-1] + through[-1])
  position = position.reshape(-1)[:num]
  order = jnp.zeros((num,), jnp.int32).at[position].set(
      indices, mode='drop', unique_indices=True)
  return order, jnp.stack(starts)


# Candidates per pass of a chunked tier: window offsets per pass x chunk.
_PASS_CANDIDATES = 16384
# Candidates per iteration of the first tier: triangles x images.
_FIRST_TIER_CANDIDATES = 65536


def _chunked_tier(zbuffer, order, start, stop, triangles_of, offsets, chunk,
                  keys_of, method):
  """Rasterizes triangles order[start:stop], `chunk` at a time, at offsets."""
  last = order.shape[0] - 1
  di, dj = offsets
  group = max(1, min(len(di), _PASS_CANDIDATES // chunk))
  passes = -(-len(di) // group)
  # Padding offsets lie past every member's box (its span is at most the
  # window): they cover nothing.
  beyond = int(max(di.max(), dj.max())) + 1 if len(di) else 1
  di, dj = (jnp.asarray(np.pad(d, (0, passes * group - len(d)),
                               constant_values=beyond).reshape(passes, group))
            for d in (di, dj))

  def body(state):
    offset, zbuffer = state
    positions = offset + jnp.arange(chunk, dtype=jnp.int32)
    corners, meta, boxes = triangles_of(order[jnp.minimum(positions, last)])
    setup = _triangle_setup(corners, meta, boxes, valid=positions < stop)

    def one_pass(i, zbuffer):
      pixels, keys = keys_of(setup, (di[i], dj[i]))
      return _zbuffer_min(zbuffer, pixels, keys, method)

    # The setup enters the inner loop as an operand, so XLA computes it once
    # per chunk; XLA:CPU fuses (recomputes) it into every candidate of an
    # [offsets, chunk] pass (6-10% of the single-core forward at 224 px).
    zbuffer = lax.fori_loop(0, passes, one_pass, zbuffer)
    return offset + chunk, zbuffer

  _, zbuffer = lax.while_loop(lambda state: state[0] < stop, body,
                              (start, zbuffer))
  return zbuffer
