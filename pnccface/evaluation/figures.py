"""Pictures: shaded faces, mesh overlays (the paper's Figure 3), image grids.

Images are float arrays in [0, 1] until `save_png` writes them as 8-bit PNG.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from pnccface import distributed
from pnccface import geometry
from pnccface import render
from pnccface.facemodel import MorphableModel

# A grey material lit from the upper left front, for mesh overlays.
MESH_ALBEDO = 0.75


def studio_light() -> np.ndarray:
  """SH coefficients [27]: ambient plus a key light from the upper left front."""
  direction = np.array([-0.4, 0.5, 0.77])  # x, y, z
  direction /= np.linalg.norm(direction)
  return render.directional_sh_coefficients(
      np.full(3, 0.55), direction, 0.6).reshape(27)


@jax.jit
def _mesh_layer(vertices_screen, triangles, background, light):
  batch, height, width = background.shape[:3]
  albedo = jnp.full(vertices_screen.shape[:-1] + (3,), MESH_ALBEDO)
  light = jnp.broadcast_to(light, (batch, 27))
  return render.render_shaded(vertices_screen, triangles, albedo, light,
                              height, width)


def mesh_overlay(image, vertices_screen, triangles, alpha: float = 0.75
                 ) -> np.ndarray:
  """A grey shaded mesh blended over the image, as in the paper's Figure 3.

  Args:
    image: [H, W, 3] float in [0, 1].
    vertices_screen: [V, 3] screen space (pixels, depth; `geometry`).
    triangles: [T, 3].
    alpha: opacity of the mesh.
  """
  image = np.asarray(image, np.float32)
  shaded, mask = jax.device_get(_mesh_layer(
      jnp.asarray(vertices_screen)[None], jnp.asarray(triangles),
      jnp.asarray(image)[None], jnp.asarray(studio_light())))
  weight = alpha * mask[0]
  return np.clip((1 - weight) * image + weight * shaded[0], 0, 1)


def shaded_faces(model: MorphableModel, shape, expression, albedo, size: int,
                 yaw_degrees: Sequence[float], background: float = 1.0
                 ) -> np.ndarray:
  """Faces of the model under the studio light at the given yaws.

  Args:
    shape, expression, albedo: [B, K] raw coefficients (or None).
    size: image side in pixels.
    yaw_degrees: [B] yaw of each face.

  Returns:
    [B, size, size, 3] float images.
  """
  yaw = np.radians(np.asarray(yaw_degrees, np.float32))
  batch = yaw.shape[0]
  vertices = model.vertices(shape, expression)
  vertices = jnp.broadcast_to(vertices, (batch,) + model.mean_shape.shape)
  rotation = geometry.euler_to_rotation(jnp.zeros_like(yaw), yaw,
                                        jnp.zeros_like(yaw))
  rotated = jnp.einsum('bij,bvj->bvi', rotation, vertices)
  extent = np.ptp(np.asarray(model.mean_shape)[:, :2], axis=0).max()
  scale = 0.85 * size / extent
  centre = rotated.mean(axis=1, keepdims=True)
  screen = jnp.stack([
      size / 2 + scale * (rotated[..., 0] - centre[..., 0]),
      size / 2 - scale * (rotated[..., 1] - centre[..., 1]),
      -scale * rotated[..., 2]], axis=-1)
  colours = jnp.broadcast_to(model.albedo(albedo), vertices.shape)
  light = jnp.broadcast_to(jnp.asarray(studio_light()), (batch, 27))
  background_image = jnp.full((batch, size, size, 3), background, jnp.float32)
  image, _ = render.render_shaded(screen, model.triangles, colours, light,
                                  size, size, background=background_image)
  return np.clip(np.asarray(image), 0, 1)


def resize(image, size: int) -> np.ndarray:
  """[H, W, C] float image -> [size, size, C] (bilinear, antialiased)."""
  image = jnp.asarray(image, jnp.float32)
  return np.asarray(jax.image.resize(image, (size, size, image.shape[-1]),
                                     'linear', antialias=True))


def draw_points(image, points_xy, colour=(0.1, 1.0, 0.2), radius: int = 1
                ) -> np.ndarray:
  """Marks image-frame points (`geometry`: pixel (i, j) covers [j, j+1) x
  [i, i+1)) as filled squares of side 2 * radius + 1 pixels.

  Args:
    image: [H, W, 3] float in [0, 1].
    points_xy: [P, 2] x, y pixels; points outside the image are skipped.
  """
  image = np.array(image, np.float32)
  height, width = image.shape[:2]
  for x, y in np.floor(np.asarray(points_xy, np.float64)).astype(int):
    if 0 <= x < width and 0 <= y < height:
      image[max(y - radius, 0):y + radius + 1,
            max(x - radius, 0):x + radius + 1] = colour
  return image


# A 3 x 5 pixel font for row labels (yaw in degrees): rows top to bottom.
_GLYPHS = {
    '0': ('111', '101', '101', '101', '111'),
    '1': ('010', '110', '010', '010', '111'),
    '2': ('111', '001', '111', '100', '111'),
    '3': ('111', '001', '111', '001', '111'),
    '4': ('101', '101', '111', '001', '001'),
    '5': ('111', '100', '111', '001', '111'),
    '6': ('111', '100', '111', '101', '111'),
    '7': ('111', '001', '001', '001', '001'),
    '8': ('111', '101', '111', '101', '111'),
    '9': ('111', '101', '111', '001', '111'),
    '+': ('000', '010', '111', '010', '000'),
    '-': ('000', '000', '111', '000', '000'),
    '.': ('000', '000', '000', '000', '010'),
    ' ': ('000', '000', '000', '000', '000'),
    '\N{DEGREE SIGN}': ('010', '101', '010', '000', '000'),
}


def draw_label(image, text: str, scale: int = 3, colour=(1.0, 1.0, 1.0),
               background=(0.0, 0.0, 0.0)) -> np.ndarray:
  """Writes `text` (digits, '+', '-', '.', ' ', the degree sign) in the
  top-left corner, in a 3 x 5 font of `scale`-pixel cells on a background
  box (one cell of padding, one between characters)."""
  unknown = sorted(set(text) - set(_GLYPHS))
  if unknown:
    raise ValueError(f'draw_label: no glyph for {unknown} in {text!r}')
  cells = np.zeros((7, 4 * len(text) + 1), bool)
  for k, char in enumerate(text):
    cells[1:6, 1 + 4 * k:4 + 4 * k] = [[c == '1' for c in row]
                                       for row in _GLYPHS[char]]
  mask = np.kron(cells, np.ones((scale, scale), bool))
  image = np.array(image, np.float32)
  height, width = (min(a, b) for a, b in zip(mask.shape, image.shape[:2]))
  box = image[:height, :width]
  box[...] = background
  box[mask[:height, :width]] = colour
  return image


def image_grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2,
               fill: float = 1.0) -> np.ndarray:
  """Tiles equally sized [H, W, 3] images into rows, with padding."""
  height, width = np.asarray(rows[0][0]).shape[:2]
  columns = max(len(r) for r in rows)
  grid = np.full((len(rows) * (height + pad) + pad,
                  columns * (width + pad) + pad, 3), fill, np.float32)
  for i, row in enumerate(rows):
    for j, image in enumerate(row):
      y, x = pad + i * (height + pad), pad + j * (width + pad)
      grid[y:y + height, x:x + width] = np.asarray(image)[..., :3]
  return grid


def save_png(path, image) -> pathlib.Path:
  """Writes a float [H, W, 3] image in [0, 1] (or uint8) as PNG (process 0
  only)."""
  path = pathlib.Path(path)
  if not distributed.is_main_process():
    return path
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(tf.io.encode_png(image).numpy())
  return path


def face_model_figure(model: MorphableModel, size: int = 256,
                      num_samples: int = 4, seed: int = 0) -> np.ndarray:
  """The mean face at yaw 0/45/90 and random faces: a [H, W, 3] grid."""
  rng = np.random.default_rng(seed)
  mean = shaded_faces(model, None, None, None, size, [0.0, 45.0, 90.0])

  def draw(std, sigma=1.0):
    std = np.asarray(std)
    return (rng.normal(size=(num_samples, std.shape[0])) * sigma * std
            ).astype(np.float32)

  expression = draw(model.expression_std)
  for k in model.nonnegative_expressions:  # as the synthetic sampler does
    expression[:, k] = np.abs(expression[:, k])
  samples = shaded_faces(model, draw(model.shape_std),
                         expression, draw(model.albedo_std),
                         size, rng.uniform(-40, 40, num_samples))
  return image_grid([list(mean), list(samples)])
