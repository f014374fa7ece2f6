"""Training-time augmentation of face batches, seeded by (seed, step).

Applied by `pipeline.batch_source` to each global training batch in the
`pipeline` face format (image, pncc, mask [B, S, S, C]; landmarks_2d
[B, 68, 2]; landmark_weights [B, 68]; CelebA's eye_centres [B, 2, 2]); other
keys pass through unchanged.
Per example:

  * horizontal flip (probability `flip`): the image mirrored about its
    vertical centre line, the 68 landmarks mirrored and re-indexed
    (`IBUG68_FLIP`, left and right swap), and the PNCC target mirrored as
    the mirrored *mesh* would render: the NCC code is the normalised mean
    face, symmetric about x = 1/2, so the mirrored mesh carries code
    (1 - x, y, z) and its PNCC is the mirrored image with x -> 1 - x on face
    pixels (3FabRec trains its ITLs with flips; 300W-LP's 122,450 samples
    include flipped copies);
  * a similarity about the image centre: scale in [1 - scale, 1 + scale],
    rotation in +-rotate_degrees, translation in +-translate of the side
    (3FabRec: +-45 deg rotations); zeros outside the source;
  * colour jitter of the photo input only (not the PNCC): brightness
    +-brightness, contrast and saturation factors in [1 - c, 1 + c].

Images are resampled bilinearly, PNCC and mask with the same filter, so a
border pixel covering a fraction `a` of face holds `a * ncc` and mask `a`; the
flipped x-channel is then `mask - x`, exact for such blends. Without a mask
(annotated predictions) a pixel is face where its largest PNCC channel is
above `_PNCC_FACE_THRESHOLD`.

Determinism: the randomness of step k is `np.random.default_rng([seed, k,
process, _STREAM])`, so a resumed run sees exactly the batches it would have
(in-memory pipelines draw once for the global batch, as process 0, and each
process slices its rows: the same batches for any number of processes).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import tensorflow as tf

from pnccface.facemodel import procedural

# iBUG-68 index of each landmark's mirror image (left and right swap).
IBUG68_FLIP = procedural.IBUG68_MIRROR
_STREAM = 0xA06  # Separates augmentation draws from the batch permutation.
_PNCC_FACE_THRESHOLD = 0.05
_IMAGE_KEYS = ('image', 'pncc', 'mask')


class Augmentation(NamedTuple):
  """Augmentation strengths (0 disables a part)."""
  flip: float = 0.5
  scale: float = 0.1
  translate: float = 0.05
  rotate_degrees: float = 0.0
  brightness: float = 0.1
  contrast: float = 0.2
  saturation: float = 0.2


def from_config(config) -> Augmentation | None:
  """The augmentation a stage config asks for; on by default.

  `config.augment` (optional) is a mapping with `enabled` (default True) and
  any `Augmentation` field; without it, `Augmentation()`.
  """
  settings = dict(config.get('augment', None) or {})
  if not settings.pop('enabled', True):
    return None
  unknown = set(settings) - set(Augmentation._fields)
  if unknown:
    raise ValueError(f'config.augment: unknown fields {sorted(unknown)}; '
                     f'known: {Augmentation._fields}')
  return Augmentation(**settings)


class Draws(NamedTuple):
  """One batch's random draws: flip [B] bool; similarity parts [B] / [B, 2];
  colour factors [B] (brightness offset, contrast, saturation)."""
  flip: np.ndarray
  scale: np.ndarray
  angle: np.ndarray
  shift: np.ndarray
  brightness: np.ndarray
  contrast: np.ndarray
  saturation: np.ndarray


def draw(augmentation: Augmentation, batch: int, seed: int, step: int,
         process: int = 0) -> Draws:
  """The random draws of training step `step` (see module docstring)."""
  rng = np.random.default_rng([seed, step, process, _STREAM])
  a = augmentation
  uniform = lambda r, shape=(batch,): rng.uniform(-r, r, shape)
  return Draws(
      flip=rng.uniform(size=batch) < a.flip,
      scale=1.0 + uniform(a.scale),
      angle=np.radians(uniform(a.rotate_degrees)),
      shift=uniform(a.translate, (batch, 2)),
      brightness=uniform(a.brightness),
      contrast=1.0 + uniform(a.contrast),
      saturation=1.0 + uniform(a.saturation))


def similarity_matrices(draws: Draws) -> np.ndarray:
  """[B, 2, 2] linear parts A = scale * R(angle) * F (F the x mirror)."""
  cos, sin = np.cos(draws.angle), np.sin(draws.angle)
  rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)],
                      -2)
  mirror = np.where(draws.flip, -1.0, 1.0)
  return draws.scale[:, None, None] * rotation * np.stack(
      [mirror, np.ones_like(mirror)], -1)[:, None, :]


def transform_points(points, draws: Draws, height: int, width: int
                     ) -> np.ndarray:
  """Image-frame points [B, P, 2] to the augmented image (no re-indexing).

  q = A (p - c) + c + shift * (W, H), c the image centre (W/2, H/2).
  """
  centre = np.array([width / 2, height / 2])
  matrices = similarity_matrices(draws)
  offset = centre + draws.shift * np.array([width, height])
  return (np.einsum('bij,bpj->bpi', matrices, np.asarray(points) - centre)
          + offset[:, None, :]).astype(np.float32)


def _warp(images: np.ndarray, draws: Draws) -> np.ndarray:
  """Resamples [B, H, W, C] images by the inverse similarity (bilinear)."""
  batch, height, width = images.shape[:3]
  centre = np.array([width / 2, height / 2])
  inverse = np.linalg.inv(similarity_matrices(draws))
  offset = centre + draws.shift * np.array([width, height])
  # Output pixel index u has image-frame centre u + 1/2 (pnccface.geometry);
  # its source is A^-1 (u + 1/2 - offset) + c, at index that minus 1/2.
  constant = (np.einsum('bij,bj->bi', inverse, 0.5 - offset) + centre - 0.5)
  transforms = np.concatenate(
      [inverse[:, 0], constant[:, :1], inverse[:, 1], constant[:, 1:],
       np.zeros((batch, 2))], axis=1).astype(np.float32)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.convert_to_tensor(images, tf.float32),
      transforms=transforms, output_shape=[height, width], fill_value=0.0,
      interpolation='BILINEAR', fill_mode='CONSTANT').numpy()


def mirror_pncc_codes(pncc: np.ndarray, face: np.ndarray) -> np.ndarray:
  """x-channel -> face - x: the NCC code of the mirrored mesh (see above).

  Args:
    pncc: [..., 3] an already mirrored PNCC image.
    face: [..., 1] face coverage in [0, 1] (the mask).
  """
  return np.concatenate([face - pncc[..., :1], pncc[..., 1:]], axis=-1)


def colour_jitter(images: np.ndarray, draws: Draws) -> np.ndarray:
  """Brightness, contrast, saturation per example; [B, H, W, 3] in [0, 1]."""
  grey = images.mean(axis=-1, keepdims=True)
  images = grey + draws.saturation[:, None, None, None] * (images - grey)
  mean = images.mean(axis=(1, 2, 3), keepdims=True)
  images = mean + draws.contrast[:, None, None, None] * (images - mean)
  images = images + draws.brightness[:, None, None, None]
  return np.clip(images, 0.0, 1.0).astype(np.float32)


def apply(batch: Mapping[str, np.ndarray], draws: Draws) -> dict:
  """Augments a flat [B, ...] face batch with the given draws."""
  out = dict(batch)
  height, width = batch['image'].shape[1:3]
  for key in _IMAGE_KEYS:
    if key in out:
      out[key] = _warp(out[key], draws)
  flip = draws.flip
  if 'pncc' in out and flip.any():
    face = (out['mask'] if 'mask' in out else
            (out['pncc'].max(-1, keepdims=True) > _PNCC_FACE_THRESHOLD
             ).astype(np.float32))
    out['pncc'] = np.where(flip[:, None, None, None],
                           mirror_pncc_codes(out['pncc'], face), out['pncc'])
  if 'landmarks_2d' in out:
    points = transform_points(out['landmarks_2d'], draws, height, width)
    out['landmarks_2d'] = np.where(flip[:, None, None],
                                   points[:, IBUG68_FLIP], points)
  if 'eye_centres' in out:  # [B, 2, 2], viewer's left eye first: swap.
    points = transform_points(out['eye_centres'], draws, height, width)
    out['eye_centres'] = np.where(flip[:, None, None], points[:, ::-1],
                                  points)
  if 'landmark_weights' in out:
    weights = np.asarray(out['landmark_weights'])
    out['landmark_weights'] = np.where(flip[:, None],
                                       weights[:, IBUG68_FLIP], weights)
  out['image'] = colour_jitter(out['image'], draws)
  return out


def augment_batch(batch: Mapping[str, np.ndarray],
                  augmentation: Augmentation, seed: int, step: int,
                  process: int = 0) -> dict:
  """`apply` with the draws of (seed, step, process)."""
  batch_size = len(batch['image'])
  return apply(batch, draw(augmentation, batch_size, seed, step, process))
