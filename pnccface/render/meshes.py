"""Procedural test meshes (for tests and benchmarks of the renderer)."""

from __future__ import annotations

import numpy as np


def uv_sphere(num_lat: int, num_lon: int, radius: float = 1.0):
  """A latitude/longitude sphere in the model frame.

  Args:
    num_lat: number of latitude bands (>= 2); num_lon: longitude segments
      (>= 3).
    radius: model units.

  Returns:
    vertices: [2 + (num_lat - 1) * num_lon, 3] float32.
    triangles: [2 * num_lon * (num_lat - 1), 3] int32, counter-clockwise seen
      from outside (normals point outwards, `pnccface.geometry`).
  """
  if num_lat < 2 or num_lon < 3:
    raise ValueError(f'need num_lat >= 2 and num_lon >= 3, got {num_lat}, '
                     f'{num_lon}')
  polar = np.linspace(0.0, np.pi, num_lat + 1)[1:-1]  # from +y down
  azimuth = np.linspace(0.0, 2 * np.pi, num_lon, endpoint=False)
  theta, phi = np.meshgrid(polar, azimuth, indexing='ij')
  ring = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta),
                   np.sin(theta) * np.cos(phi)], axis=-1).reshape(-1, 3)
  vertices = np.concatenate([[[0.0, 1.0, 0.0]], ring, [[0.0, -1.0, 0.0]]])
  top, bottom = 0, len(vertices) - 1

  def ring_index(band, k):
    return 1 + band * num_lon + k % num_lon

  triangles = []
  for k in range(num_lon):
    triangles.append((top, ring_index(0, k), ring_index(0, k + 1)))
    triangles.append((bottom, ring_index(num_lat - 2, k + 1),
                      ring_index(num_lat - 2, k)))
  for band in range(num_lat - 2):
    for k in range(num_lon):
      a, b = ring_index(band, k), ring_index(band, k + 1)
      c, d = ring_index(band + 1, k), ring_index(band + 1, k + 1)
      triangles.append((a, c, d))
      triangles.append((a, d, b))
  return (radius * vertices).astype(np.float32), np.asarray(triangles,
                                                             np.int32)
