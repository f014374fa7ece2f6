"""300W-LP and CelebA through TFDS, cropped to the models' input.

Both datasets need registration, so nothing here downloads them.

300W-LP (TFDS `the300w_lp`): put `300W-LP.zip` where TFDS finds it, i.e. in
`<data_dir>/downloads/manual/` and pass `manual_dir`, or pre-populate TFDS's
download dir as its documentation explains. Its `shape_params` (199),
`exp_params` (29) and `pose_params` (7, `Pose_Para`) with a user-supplied
Basel Face Model (`facemodel.load_bfm2009(..., expression_path=...,
model_info_path=...)`, trimmed to 300W-LP's 53,215 vertices) give the
ground-truth PNCC, rendered here into the face crop.

CelebA (TFDS `celeb_a`): image + 5 landmarks (eyes, nose, mouth corners).
Crops are centred on the 5 points; the nose tip and mouth corners become
landmarks 30, 48 and 54 of the 68 with weight 1 (the eye centres of CelebA
are no single iBUG point, so they are not used).
"""

from __future__ import annotations

import functools
from typing import Iterator, Mapping

import jax
import numpy as np

from pnccface import render
from pnccface.data import crop
from pnccface.data import synthesis
from pnccface.facemodel import MorphableModel

CELEBA_LANDMARKS_TO_IBUG = {'nose': 30, 'leftmouth': 48, 'rightmouth': 54}
_CELEBA_MARGIN = 0.9


def _fit_coefficients(coefficients: np.ndarray, size: int) -> np.ndarray:
  """Truncates or zero-pads coefficient vectors [..., K] to `size`."""
  coefficients = np.asarray(coefficients, np.float32)
  k = coefficients.shape[-1]
  if k >= size:
    return coefficients[..., :size]
  pad = [(0, 0)] * (coefficients.ndim - 1) + [(0, size - k)]
  return np.pad(coefficients, pad)


@functools.partial(jax.jit, static_argnames=('size',))
def _render_pncc_batch(model: MorphableModel, shape, expression, pose_para,
                       size: int):
  screen = synthesis.face_vertices_screen(model, shape, expression,
                                          pose_para, size)
  pncc, mask = render.render_pncc(screen, model.triangles, model.ncc, size,
                                  size)
  return pncc, mask, model.landmarks(screen)


def the300w_lp_face_example(example: Mapping[str, np.ndarray],
                            model: MorphableModel, size: int, *,
                            margin: float = 0.2, rng=None,
                            jitter: float = 0.0) -> dict[str, np.ndarray]:
  """A `the300w_lp` TFDS example -> cropped image + ground-truth PNCC.

  The crop is the square box around the fitted 68 landmarks (projected from
  the parameters), so it is defined for every pose; the PNCC is rendered in
  the crop by mapping `Pose_Para` with `crop.transform_pose_para`.

  Returns:
    `pipeline` face format: image [S, S, 3], pncc [S, S, 3], mask [S, S, 1]
    float32 in [0, 1]; landmarks_2d [68, 2] crop pixels; landmark_weights.
  """
  image = np.asarray(example['image'])
  height = image.shape[0]
  shape = _fit_coefficients(example['shape_params'], model.num_shape)
  expression = _fit_coefficients(example['exp_params'], model.num_expression)
  pose_para = np.asarray(example['pose_params'], np.float32)
  landmarks = model.landmarks(synthesis.face_vertices_screen(
      model, shape, expression, pose_para, height))
  box = crop.box_from_points(np.asarray(landmarks)[:, :2], margin, rng, jitter)
  pose_crop = crop.transform_pose_para(pose_para, box, size, height)
  pncc, mask, landmarks_crop = jax.device_get(_render_pncc_batch(
      model, shape[None], expression[None], pose_crop[None], size))
  return {
      'image': crop.crop_image(image, box, size) / 255.0,
      'pncc': pncc[0],
      'mask': mask[0],
      'landmarks_2d': landmarks_crop[0, :, :2],
      'landmark_weights': np.ones(68, np.float32),
  }


def celeba_face_example(example: Mapping, size: int) -> dict[str, np.ndarray]:
  """A TFDS `celeb_a` example -> a square face crop around its 5 landmarks.

  Args:
    example: {'image': [H, W, 3] uint8, 'landmarks': {'lefteye_x': ..,
      'lefteye_y': .., ...}} with 0-based pixel indices, taken as pixel
      centres (+0.5).
    size: output side in pixels.
  """
  image, landmarks = example['image'], example['landmarks']
  names = ('lefteye', 'righteye', 'nose', 'leftmouth', 'rightmouth')
  points = {n: np.array([landmarks[f'{n}_x'], landmarks[f'{n}_y']],
                        np.float32) + 0.5 for n in names}
  box = crop.box_from_points(np.stack(list(points.values())), _CELEBA_MARGIN)
  landmarks_2d = np.zeros((68, 2), np.float32)
  weights = np.zeros(68, np.float32)
  for name, index in CELEBA_LANDMARKS_TO_IBUG.items():
    landmarks_2d[index] = crop.transform_points(points[name], box, size)
    weights[index] = 1.0
  return {
      'image': crop.crop_image(image, box, size) / 255.0,
      'landmarks_2d': landmarks_2d,
      'landmark_weights': weights,
  }


def map_examples(examples: Iterator[Mapping], fn, **kwargs
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Applies an example function to a stream of TFDS numpy examples."""
  for example in examples:
    yield fn(example, **kwargs)
