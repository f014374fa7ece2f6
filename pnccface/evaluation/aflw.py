"""Sparse 68-landmark evaluation on AFLW2000-3D (needs only the .mat files).

3DDFA's protocol: 2D NME of the 68 landmarks normalised by sqrt(w*h) of the
ground-truth landmarks' box (`metrics.landmark_nme_2d`), reported overall and
per |yaw| bin with their balanced mean (`metrics.nme_by_yaw_bins`). The
ground truth is `pt3d_68`'s x, y; yaw comes from `Pose_Para`.

Yaw binning (`YAW_SOURCES`): 3DDFA's `benchmark_aflw2000.py` bins by
`np.abs(yaws_list)` with `yaws_list = AFLW2000-3D.pose.npy`, which is the raw
`Pose_Para[1]` in degrees (checked entry by entry on the shared sample; its
range is -351..188 degrees, since a few fitted Euler triples leave [-180, 180])
and gives 1312 / 383 / 305 images in [0,30] / (30,60] / (60,90]. That is the
default, 'pose_para'. 'rotation' bins by the canonical yaw of the rotation the
three angles build (`geometry.rotation_to_euler_degrees`), which moves two
images (image03123, image04157) to another bin.

Two references need no trained model: the landmarks rebuilt from each file's
own parameters with 3DDFA's sparse 40/10-component basis (near 0: the
truncated basis is the only error), and the mean face posed with the true
pose (what pose alone explains). A model is evaluated through a callable from
face crops to 68 landmarks in crop pixels.
"""

from __future__ import annotations

import pathlib
from typing import Callable, Sequence

import numpy as np

from pnccface import geometry
from pnccface.data import aflw2000_3d
from pnccface.data import crop
from pnccface.evaluation import metrics
from pnccface.facemodel import FaceParams
from pnccface.facemodel import MorphableModel
from pnccface.facemodel import read_face_params

IMAGE_SIZE = 450

# How the yaw that bins the NME is read from Pose_Para (see module docstring).
YAW_POSE_PARA = 'pose_para'  # 3DDFA's benchmark: raw Pose_Para[1], degrees
YAW_ROTATION = 'rotation'    # canonical yaw of the rebuilt rotation
YAW_SOURCES = (YAW_POSE_PARA, YAW_ROTATION)


def read_release(folder) -> list[FaceParams]:
  """The parameter files of an AFLW2000-3D folder (or of its `AFLW2000/`
  sub-folder, as the TFDS builder accepts), sorted by name."""
  folder = aflw2000_3d.find_release_folder(pathlib.Path(folder))
  samples = aflw2000_3d.list_samples(folder)
  if not samples:
    raise FileNotFoundError(f'no imageNNNNN.jpg/.mat pairs in {folder}')
  return [read_face_params(p.with_suffix('.mat')) for p in samples.values()]


def yaw_degrees(params: Sequence[FaceParams],
                yaw_source: str = YAW_POSE_PARA) -> np.ndarray:
  """[N] ground-truth yaw in degrees, read as `yaw_source` says.

  Args:
    yaw_source: 'pose_para' (3DDFA's `AFLW2000-3D.pose.npy`: the file's
      Pose_Para[1], unwrapped) or 'rotation' (canonical yaw of the rotation
      built from the file's three angles).
  """
  if yaw_source == YAW_POSE_PARA:
    return np.degrees([float(p.pose_para[1]) for p in params])
  if yaw_source == YAW_ROTATION:
    return np.array([
        float(geometry.rotation_to_euler_degrees(
            geometry.euler_to_rotation(*p.pose_para[:3]))[1]) for p in params])
  raise ValueError(f'unknown yaw_source {yaw_source!r}; use one of '
                   f'{YAW_SOURCES}')


def ground_truth(params: Sequence[FaceParams],
                 yaw_source: str = YAW_POSE_PARA
                 ) -> tuple[np.ndarray, np.ndarray]:
  """pt3d_68 x, y in the image frame [N, 68, 2] and yaw in degrees [N].

  The yaw is `yaw_degrees(params, yaw_source)`.
  """
  landmarks = np.stack([p.landmarks_image_xy() for p in params])
  return landmarks, yaw_degrees(params, yaw_source)


def posed_landmarks(params: Sequence[FaceParams], sparse_model: MorphableModel,
                    use_coefficients: bool = True) -> np.ndarray:
  """68 landmarks [N, 68, 2] of the sparse model under each file's pose.

  Args:
    sparse_model: a 68-vertex model (`facemodel.load_3ddfa_sparse_model`).
    use_coefficients: the file's first shape/expression coefficients (as
      many as the model has); False: the mean face.
  """
  out = []
  for p in params:
    shape = p.shape_para[:sparse_model.num_shape] if use_coefficients else None
    expression = (p.exp_para[:sparse_model.num_expression]
                  if use_coefficients else None)
    vertices = sparse_model.landmarks(sparse_model.vertices(shape, expression))
    screen = geometry.weak_perspective_to_screen(
        vertices, p.weak_perspective(), IMAGE_SIZE)
    out.append(np.asarray(screen)[:, :2])
  return np.stack(out)


def evaluate_landmarks(predicted: np.ndarray, params: Sequence[FaceParams],
                       yaw_source: str = YAW_POSE_PARA) -> dict[str, float]:
  """3DDFA's table: NME (fractions) overall, per yaw bin and balanced.

  Args:
    predicted: [N, 68, 2] landmarks in the 450 x 450 image frame.
    params: the release's parameter files (`read_release`), same order.
    yaw_source: the binning yaw, 3DDFA's raw Pose_Para yaw by default (see
      `yaw_degrees`).
  """
  gt, yaw = ground_truth(params, yaw_source)
  return metrics.nme_by_yaw_bins(metrics.landmark_nme_2d(predicted, gt), yaw)


def face_crops(params: Sequence[FaceParams], indices: Sequence[int],
               crop_size: int, margin: float = 0.2
               ) -> tuple[np.ndarray, list[crop.CropBox]]:
  """Faces `indices` of the release cropped as `predict_on_crops` does.

  Each face is cropped to the square box around its ground-truth landmarks
  (with `margin`), as 3DDFA crops by its roi.

  Returns:
    images [n, S, S, 3] float32 in [0, 1] and their boxes in the 450 x 450
    image frame (`crop.transform_points` maps image points into a crop).
  """
  gt, _ = ground_truth([params[i] for i in indices])
  boxes = [crop.box_from_points(points, margin) for points in gt]
  images = [crop.crop_image(aflw2000_3d.decode_image_bytes(
      jpg.read_bytes(), str(jpg)), box, crop_size) / 255.0
            for box, jpg in zip(boxes, (
                pathlib.Path(params[i].path).with_suffix('.jpg')
                for i in indices))]
  return np.stack(images).astype(np.float32), boxes


def yaw_spread(params: Sequence[FaceParams], count: int = 6) -> np.ndarray:
  """Indices of `count` faces spread over |yaw|: its quantiles 0, 1/(count-1),
  ..., 1 (the canonical yaw of each file's rotation, `YAW_ROTATION`), in
  increasing |yaw|; deterministic."""
  if not 0 < count <= len(params):
    raise ValueError(f'count must be in [1, {len(params)}], got {count}')
  order = np.argsort(np.abs(yaw_degrees(params, YAW_ROTATION)), kind='stable')
  ranks = np.round(np.linspace(0, len(params) - 1, count)).astype(int)
  return order[ranks]


def predict_on_crops(folder, params: Sequence[FaceParams],
                     predict: Callable[[np.ndarray], np.ndarray],
                     crop_size: int, margin: float = 0.2,
                     batch_size: int = 16) -> np.ndarray:
  """Runs a crop -> 68-landmark predictor over the release.

  Faces are cropped by `face_crops`; predictions map back to the 450 x 450
  image frame.

  Args:
    folder: the release folder (`params` were read from it).
    predict: [B, S, S, 3] float images in [0, 1] -> [B, 68, 2] crop pixels.
  """
  del folder  # each FaceParams knows its own file
  out = []
  for start in range(0, len(params), batch_size):
    chunk = range(start, min(start + batch_size, len(params)))
    images, boxes = face_crops(params, chunk, crop_size, margin)
    predicted = np.asarray(predict(images))
    out.extend(crop.inverse_transform_points(points, box, crop_size)
               for points, box in zip(predicted, boxes))
  return np.stack(out)
