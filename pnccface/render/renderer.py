"""Renderers built on the rasterizer: PNCC images, SH-shaded faces, landmarks.

Inputs are screen-space vertices ([B, V, 3] = image-frame x, y in pixels and
depth, `pnccface.geometry`), e.g. from `geometry.weak_perspective_to_screen`
or `geometry.PerspectiveCamera.to_screen`.
"""

from __future__ import annotations

import jax.numpy as jnp

from pnccface.render import rasterizer
from pnccface.render import shading

Array = jnp.ndarray


def render_pncc(vertices_screen, triangles, ncc, height: int, width: int, *,
                method: str | None = None) -> tuple[Array, Array]:
  """The PNCC image: the z-buffered mesh coloured by its NCC.

  Args:
    vertices_screen: [B, V, 3] screen-space vertices (pixels, depth).
    triangles: [T, 3] int, 0-based.
    ncc: [V, 3] or [B, V, 3] normalised coordinate code in [0, 1].
    height, width: image size in pixels.
    method: visibility method, see `rasterizer.rasterize`.

  Returns:
    pncc: [B, H, W, 3] float32, 0 on background.
    mask: [B, H, W, 1] float32, 1 where the face is visible.
  """
  raster = rasterizer.rasterize(vertices_screen, triangles, height, width,
                                method=method)
  pncc = rasterizer.interpolate(ncc, raster, vertices_screen, triangles)
  return pncc, raster.mask


def screen_normals(vertices_screen, triangles) -> Array:
  """Vertex normals in the camera frame's axes from screen-space vertices.

  (x, -y, -depth) is the camera frame up to a positive scale and a shift under
  weak perspective (exact normals there); under perspective it is the
  projectively distorted surface (an approximation).

  Returns:
    [B, V, 3] unit normals (x right, y up, z towards the viewer).
  """
  flipped = vertices_screen * jnp.asarray([1.0, -1.0, -1.0],
                                          vertices_screen.dtype)
  return shading.vertex_normals(flipped, triangles)


def render_shaded(vertices_screen, triangles, albedo, sh_coefficients,
                  height: int, width: int, *, background=None, normals=None,
                  method: str | None = None) -> tuple[Array, Array]:
  """Lambertian SH-shaded rendering, composited over a background.

  Colours are shaded per vertex (albedo x irradiance, as in MoFa) and
  interpolated. Differentiable w.r.t. vertices (through barycentrics and
  normals), albedo, SH coefficients and background; see
  `rasterizer.interpolate` for what the gradient ignores.

  Args:
    vertices_screen: [B, V, 3] screen-space vertices (pixels, depth).
    triangles: [T, 3] int, front faces counter-clockwise in the model frame.
    albedo: [B, V, 3] or [V, 3] linear RGB reflectance.
    sh_coefficients: [B, 27] or [B, 3, 9] (see `shading`).
    height, width: image size in pixels.
    background: [B, H, W, 3] image, or None for black.
    normals: [B, V, 3] unit normals in the light's frame (camera frame), or
      None to derive them from `vertices_screen` (`screen_normals`).
    method: visibility method, see `rasterizer.rasterize`.

  Returns:
    image: [B, H, W, 3] float32.
    mask: [B, H, W, 1] float32, 1 where the face is visible.
  """
  vertices_screen = jnp.asarray(vertices_screen)
  batch = vertices_screen.shape[0]
  if normals is None:
    normals = screen_normals(vertices_screen, triangles)
  irradiance = shading.sh_shading(
      normals, jnp.broadcast_to(
          shading._coefficients_rgb(sh_coefficients),  # pylint: disable=protected-access
          (batch, 3, shading.NUM_SH)))
  colours = jnp.asarray(albedo) * irradiance
  raster = rasterizer.rasterize(vertices_screen, triangles, height, width,
                                method=method)
  image = rasterizer.interpolate(colours, raster, vertices_screen, triangles)
  mask = raster.mask
  if background is not None:
    image = image + (1.0 - mask) * background
  return image, mask


def project_landmarks(vertices_screen, landmark_indices) -> Array:
  """Image-frame landmarks from screen-space vertices.

  Args:
    vertices_screen: [..., V, 3] (x, y in pixels, depth).
    landmark_indices: [L] int vertex indices (e.g. `MorphableModel.
      landmark_indices`).

  Returns:
    [..., L, 2] (x, y) in image-frame pixels.
  """
  return jnp.take(vertices_screen[..., :2],
                  jnp.asarray(landmark_indices, jnp.int32), axis=-2)
