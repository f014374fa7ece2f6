"""Sparse 68-landmark evaluation on AFLW2000-3D (needs only the .mat files).

3DDFA's protocol: 2D NME of the 68 landmarks normalised by sqrt(w*h) of the
ground-truth landmarks' box (`metrics.landmark_nme_2d`), reported overall and
per |yaw| bin with their balanced mean (`metrics.nme_by_yaw_bins`). The
ground truth is `pt3d_68`'s x, y; yaw comes from `Pose_Para`.

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


def read_release(folder) -> list[FaceParams]:
  """The parameter files of an AFLW2000-3D folder (or of its `AFLW2000/`
  sub-folder, as the TFDS builder accepts), sorted by name."""
  folder = aflw2000_3d.find_release_folder(pathlib.Path(folder))
  samples = aflw2000_3d.list_samples(folder)
  if not samples:
    raise FileNotFoundError(f'no imageNNNNN.jpg/.mat pairs in {folder}')
  return [read_face_params(p.with_suffix('.mat')) for p in samples.values()]


def ground_truth(params: Sequence[FaceParams]) -> tuple[np.ndarray, np.ndarray]:
  """pt3d_68 x, y in the image frame [N, 68, 2] and yaw in degrees [N]."""
  landmarks = np.stack([p.landmarks_image_xy() for p in params])
  yaw = np.array([
      float(geometry.rotation_to_euler_degrees(
          geometry.euler_to_rotation(*p.pose_para[:3]))[1]) for p in params])
  return landmarks, yaw


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


def evaluate_landmarks(predicted: np.ndarray, params: Sequence[FaceParams]
                       ) -> dict[str, float]:
  """3DDFA's table: NME (fractions) overall, per yaw bin and balanced."""
  gt, yaw = ground_truth(params)
  return metrics.nme_by_yaw_bins(metrics.landmark_nme_2d(predicted, gt), yaw)


def predict_on_crops(folder, params: Sequence[FaceParams],
                     predict: Callable[[np.ndarray], np.ndarray],
                     crop_size: int, margin: float = 0.2,
                     batch_size: int = 16) -> np.ndarray:
  """Runs a crop -> 68-landmark predictor over the release.

  Each face is cropped to the square box around its ground-truth landmarks
  (with `margin`), as 3DDFA crops by its roi; predictions map back to the
  450 x 450 image frame.

  Args:
    predict: [B, S, S, 3] float images in [0, 1] -> [B, 68, 2] crop pixels.
  """
  gt, _ = ground_truth(params)
  folder = pathlib.Path(folder)
  boxes = [crop.box_from_points(points, margin) for points in gt]
  out = []
  for start in range(0, len(params), batch_size):
    chunk = range(start, min(start + batch_size, len(params)))
    images = np.stack([
        crop.crop_image(aflw2000_3d.decode_image_bytes(
            jpg.read_bytes(), str(jpg)), boxes[i], crop_size) / 255.0
        for i, jpg in ((i, pathlib.Path(params[i].path).with_suffix('.jpg'))
                       for i in chunk)])
    predicted = np.asarray(predict(images.astype(np.float32)))
    out.extend(crop.inverse_transform_points(predicted[j], boxes[i],
                                             crop_size)
               for j, i in enumerate(chunk))
  return np.stack(out)
