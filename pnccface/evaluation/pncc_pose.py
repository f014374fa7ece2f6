"""Head pose read from a PNCC image: a pose metric for stage 1.

A PNCC pixel's colour is the NCC of the face point it shows (Zhu et al.
2016: the mean face's x, y, z each mapped to [0, 1]), so it names that
point's position on the mean face: every face pixel is a 3D-2D
correspondence (mean-face point, pixel centre). The weak-perspective camera
that best explains them (`fitting.camera_from_correspondences`, least
squares over the face pixels) gives a rotation, hence pitch / yaw / roll in
`pnccface.geometry`'s convention. On a PNCC rendered from the mean face
under a weak perspective the correspondences are exact (barycentric
interpolation of a linear code), so the pose comes back to float precision;
a fitted face's identity and expression move the points away from the
mean face's (on 12 fitted faces68 photos, half of them profiled: yaw MAE
2.5 deg, at most 6.3 deg; tests/test_data_fitted_faces.py), which is the
floor of this measure; a predicted PNCC's errors add to it: the stage-1
table's yaw column, next to its ground-truth PNCC reference row.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pnccface import fitting
from pnccface import geometry
from pnccface.facemodel import MorphableModel


NccDecoder = tuple[np.ndarray, np.ndarray]  # `ncc_decoder`'s (offset, scale)

# A predicted PNCC is pulled towards 0 on the background (train/pncc.py's
# background term): a pixel is face where its brightest channel clears this.
# With configs/real.py's weight 0.1 the predictors still paint part of the
# background (on held-out fitted faces this mask covers 1.4x the true face),
# so a pose read through it is worse than through the true mask
# (docs/results.md, run 7).
FACE_THRESHOLD = 0.05


def predicted_face_mask(pncc, threshold: float = FACE_THRESHOLD) -> np.ndarray:
  """[B, H, W] bool: the face pixels of PNCCs without a ground-truth mask.

  A pixel counts when it and its 8 neighbours are face (brightest channel >
  `threshold`): pixels on the silhouette blend face and background colours,
  which decode to points pulled towards the NCC origin.

  Args:
    pncc: [B, H, W, 3] in [0, 1].
  """
  pncc = np.asarray(pncc, np.float32)
  if pncc.ndim != 4 or pncc.shape[-1] != 3:
    raise ValueError(f'pncc must have shape [B, H, W, 3], got {pncc.shape}')
  face = np.pad(pncc.max(-1) > threshold, ((0, 0), (1, 1), (1, 1)))
  height, width = pncc.shape[1:3]
  eroded = np.ones(pncc.shape[:3], bool)
  for dy in range(3):
    for dx in range(3):
      eroded &= face[:, dy:dy + height, dx:dx + width]
  return eroded


def ncc_decoder(model: MorphableModel) -> NccDecoder:
  """(offset [3], scale [3]) with `mean_shape ~ offset + scale * ncc`.

  Per-axis least squares of the model's mean shape on its NCC, so that any
  NCC that is an axis-wise affine map of the mean shape decodes (3DDFA's
  min/max normalisation is one: offset = min, scale = max - min).
  """
  ncc = np.asarray(model.ncc, np.float64)
  mean = np.asarray(model.mean_shape, np.float64)
  offset, scale = np.empty(3), np.empty(3)
  for axis in range(3):
    design = np.stack([np.ones_like(ncc[:, axis]), ncc[:, axis]], -1)
    (offset[axis], scale[axis]), *_ = np.linalg.lstsq(design, mean[:, axis],
                                                      rcond=None)
  return offset.astype(np.float32), scale.astype(np.float32)


def pncc_camera(pncc, mask, model: MorphableModel | None = None,
                decoder: NccDecoder | None = None) -> geometry.WeakPerspective:
  """The weak-perspective camera a PNCC image implies.

  Args:
    pncc: [B, H, W, 3] in [0, 1] (a rendered or predicted PNCC).
    mask: [B, H, W] or [B, H, W, 1], the face pixels that count (weights;
      e.g. the ground-truth face mask).
    model: the face model whose NCC the PNCC uses; its `ncc_decoder` is
      fitted on each call.
    decoder: that model's `ncc_decoder(model)`, instead of `model`: callers
      looping over batches fit it once.

  Returns:
    `geometry.WeakPerspective` with batch dims [B], in the H x W image.
  """
  if (model is None) == (decoder is None):
    raise ValueError('pncc_camera needs the face model or its ncc_decoder '
                     '(exactly one of model, decoder)')
  pncc = jnp.asarray(pncc, jnp.float32)
  if pncc.ndim != 4 or pncc.shape[-1] != 3:
    raise ValueError(f'pncc must have shape [B, H, W, 3], got {pncc.shape}')
  mask = jnp.asarray(mask, jnp.float32)
  if mask.ndim == 4:
    mask = mask[..., 0]
  if mask.shape != pncc.shape[:3]:
    raise ValueError(f'mask has shape {mask.shape}, pncc {pncc.shape}: need '
                     '[B, H, W] or [B, H, W, 1] of the same size')
  batch, height, width = pncc.shape[:3]
  offset, scale = decoder if decoder is not None else ncc_decoder(model)
  points = (offset + scale * pncc).reshape(batch, height * width, 3)
  pixels = jnp.broadcast_to(geometry.pixel_centers(height, width).reshape(
      1, height * width, 2), (batch, height * width, 2))
  return fitting.camera_from_correspondences(
      points, pixels, height, mask.reshape(batch, height * width))


def pncc_pose_degrees(pncc, mask, model: MorphableModel | None = None,
                      decoder: NccDecoder | None = None) -> np.ndarray:
  """[B, 3] (pitch, yaw, roll) in degrees of `pncc_camera`'s rotation
  (`model` or `decoder` as there)."""
  camera = pncc_camera(pncc, mask, model, decoder)
  return np.stack([np.asarray(a) for a in geometry.rotation_to_euler_degrees(
      camera.rotation)], -1)
