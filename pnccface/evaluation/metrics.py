"""Metrics of the AFLW2000-3D protocol (Table 1 of the paper).

All functions are pure numpy (float64 internally; jax arrays are accepted),
batched over a leading sample axis N, and return per-sample values so that
callers can average, bin by yaw or chunk a large test set. Every NME is a
fraction: 0.0431 is the paper's "4.31" (`report` multiplies by 100).

Point sets are in the image-aligned frame of `pnccface.geometry` (screen-space
vertices): x, y in image pixels, depth in the same pixel units (e.g. the output
of `geometry.weak_perspective_to_screen`). Only differences and the x, y extent
matter, so the pixel-centre offset and the y direction do not change any value.

Normalisation (the facts each metric follows):
  * 3DDFA (Zhu et al. 2016), `benchmark_aflw2000.py` of cleardusk/3DDFA: the
    68-landmark NME is the mean over points of the 2D euclidean distance divided
    by sqrt(w * h) of the 2D bounding box of the *ground-truth* 68 points, and
    the AFLW2000-3D table reports it per |yaw| bin ([0, 30], (30, 60], (60, 90],
    bin edges closed on the right there) and as the mean of the three bin means.
  * PRNet (Feng et al. 2018) extends this to dense alignment: the same
    bounding-box normaliser, taken over the evaluated ground-truth vertices, for
    both the 2D (x, y) and the 3D (x, y, z) errors. SADRNet's public evaluation
    of that protocol (`src/model/loss.py`, classes NME2D / NME) does exactly
    this (sqrt(w * h) of the gt x, y over the evaluated face vertices) and also
    centres z of each point set on its own mean before the 3D error, because a
    weak-perspective fit leaves the depth offset undetermined;
    `dense_nme_3d(center_depth=True)` does the same.
  * 3D face reconstruction (PRNet, SADRNet): the prediction is first aligned to
    the ground truth with a rigid similarity, using the known vertex
    correspondence (same mesh topology), so no ICP is needed; the remaining
    error only measures the shape. We use the least-squares optimum (Umeyama
    1991), reflections excluded. The error is normalised like `dense_nme_3d`
    (sqrt(w * h) of the gt x, y box) unless an explicit normaliser is passed
    (SADRNet's `RecLoss` divides by the 3D outer interocular distance instead,
    see `outer_interocular_distance`, and estimates the scale from summed
    distances to the centroid rather than by least squares).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# 68-point (Multi-PIE / iBUG) indices of the outer eye corners, 0-based.
OUTER_EYE_CORNERS_68 = (36, 45)

# |yaw| bins of 3DDFA's AFLW2000-3D table, degrees, closed on the right.
YAW_BIN_EDGES_DEGREES = (0.0, 30.0, 60.0, 90.0)
YAW_BIN_NAMES = ('[0,30]', '(30,60]', '(60,90]')


def _points(x, name: str, min_dims: int = 2) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 3 or x.shape[-1] < min_dims:
    raise ValueError(f'{name} must have shape [N, P, >={min_dims}], '
                     f'got {x.shape}')
  return x


def _pair(pred, gt, min_dims: int):
  pred = _points(pred, 'pred', min_dims)
  gt = _points(gt, 'gt', min_dims)
  if pred.shape[:2] != gt.shape[:2]:
    raise ValueError(f'pred {pred.shape} and gt {gt.shape} differ in [N, P]')
  return pred, gt


def select_vertices(vertices, subset=None) -> np.ndarray:
  """Restricts [N, V, C] vertices to a subset of V.

  Args:
    vertices: [N, V, C].
    subset: None (all), a boolean mask [V] or 0-based integer indices [K].

  Returns:
    [N, K, C].
  """
  vertices = np.asarray(vertices)
  if subset is None:
    return vertices
  subset = np.asarray(subset)
  if subset.dtype == bool:
    if subset.shape != (vertices.shape[1],):
      raise ValueError(f'boolean vertex mask has shape {subset.shape}, '
                       f'expected ({vertices.shape[1]},)')
    subset = np.flatnonzero(subset)
  if subset.ndim != 1 or subset.size == 0:
    raise ValueError(f'vertex subset must be a non-empty 1-D index array, '
                     f'got shape {subset.shape}')
  return vertices[:, subset]


def bbox_size(points_2d) -> np.ndarray:
  """sqrt(w * h) of the 2D bounding box of each point set.

  As in 3DDFA's `benchmark_aflw2000.py` (w = max x - min x, h = max y - min y
  over the ground-truth points), the normaliser of every NME here.

  Args:
    points_2d: [N, P, >=2]; only x, y (the first two channels) are used.

  Returns:
    [N] float64, in the points' units (pixels).
  """
  p = _points(points_2d, 'points_2d')[..., :2]
  extent = p.max(axis=1) - p.min(axis=1)
  return np.sqrt(extent[:, 0] * extent[:, 1])


def _mean_distance(pred, gt) -> np.ndarray:
  return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)


def dense_nme_2d(pred_vertices, gt_vertices, subset=None) -> np.ndarray:
  """Dense 2D alignment NME per sample.

  nme_n = mean_v ||pred_nv[:2] - gt_nv[:2]||_2 / bbox_size(gt_n[:, :2]),
  over the vertices of `subset` (the box too is that of the evaluated gt
  vertices, as PRNet/SADRNet do).

  Args:
    pred_vertices, gt_vertices: [N, V, >=2] image-aligned (pixels).
    subset: optional vertex subset, see `select_vertices`.

  Returns:
    [N] fractions.
  """
  pred, gt = _pair(pred_vertices, gt_vertices, 2)
  pred, gt = select_vertices(pred, subset), select_vertices(gt, subset)
  return _mean_distance(pred[..., :2], gt[..., :2]) / bbox_size(gt)


def dense_nme_3d(pred_vertices, gt_vertices, subset=None,
                 center_depth: bool = True) -> np.ndarray:
  """Dense 3D alignment NME per sample.

  nme_n = mean_v ||pred_nv - gt_nv||_2 / bbox_size(gt_n[:, :2]) on (x, y, z),
  normalised by the 2D box of the gt x, y like the 2D metric (PRNet). With
  `center_depth`, each set's depth is first shifted to zero mean over the
  evaluated vertices (SADRNet's evaluation), since weak perspective leaves the
  absolute depth undefined; x, y are never shifted.

  Args:
    pred_vertices, gt_vertices: [N, V, 3] image-aligned, depth in pixel units.
    subset: optional vertex subset, see `select_vertices`.
    center_depth: remove each set's mean depth first.

  Returns:
    [N] fractions.
  """
  pred, gt = _pair(pred_vertices, gt_vertices, 3)
  pred = select_vertices(pred, subset)[..., :3]
  gt = select_vertices(gt, subset)[..., :3]
  if center_depth:
    pred = _center_depth(pred)
    gt = _center_depth(gt)
  return _mean_distance(pred, gt) / bbox_size(gt)


def _center_depth(points):
  depth = points[..., 2:3] - points[..., 2:3].mean(axis=1, keepdims=True)
  return np.concatenate([points[..., :2], depth], axis=-1)


class Similarity(NamedTuple):
  """`target ~= scale * rotation @ source + translation` per sample.

  rotation: [N, 3, 3] proper (det = +1); scale: [N]; translation: [N, 3].
  """
  rotation: np.ndarray
  scale: np.ndarray
  translation: np.ndarray

  def apply(self, points) -> np.ndarray:
    """[N, P, 3] -> [N, P, 3]."""
    return (self.scale[:, None, None] *
            np.einsum('nij,npj->npi', self.rotation, points) +
            self.translation[:, None, :])


def umeyama_similarity(source, target) -> Similarity:
  """Least-squares similarity from `source` to `target` (Umeyama 1991).

  Minimises sum_p ||target_p - (s R source_p + t)||^2 over rotations R
  (det R = +1: reflections are excluded), scales s > 0 and translations t,
  for known correspondences p. With centred sets X, Y, covariance
  Sigma = Y^T X / P = U D V^T and S = diag(1, 1, sign(det U det V)):
  R = U S V^T, s = tr(D S) / (|X|^2 / P), t = mean(Y) - s R mean(X).

  Args:
    source, target: [N, P, 3] corresponding points (P >= 3, not collinear).

  Returns:
    `Similarity` with batch dim N.
  """
  source, target = _pair(source, target, 3)
  source, target = source[..., :3], target[..., :3]
  mean_source = source.mean(axis=1)
  mean_target = target.mean(axis=1)
  x = source - mean_source[:, None]
  y = target - mean_target[:, None]
  num_points = source.shape[1]
  covariance = np.einsum('npi,npj->nij', y, x) / num_points
  u, d, vt = np.linalg.svd(covariance)
  sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))
  sign = np.where(sign == 0, 1.0, sign)
  correction = np.stack([np.ones_like(sign), np.ones_like(sign), sign], -1)
  rotation = np.einsum('nij,nj,njk->nik', u, correction, vt)
  variance_source = (x**2).sum(axis=(1, 2)) / num_points
  scale = (d * correction).sum(axis=-1) / variance_source
  translation = mean_target - scale[:, None] * np.einsum(
      'nij,nj->ni', rotation, mean_source)
  return Similarity(rotation, scale, translation)


def reconstruction_nme(pred_vertices, gt_vertices, subset=None,
                       normalizer=None) -> np.ndarray:
  """3D face-reconstruction NME per sample, after similarity alignment.

  The prediction is aligned to the ground truth with `umeyama_similarity`
  (rotation + uniform scale + translation, fitted on the evaluated vertices
  with their known correspondence; no ICP), so the value does not depend on
  the predicted pose, scale or position:
  nme_n = mean_v ||A_n(pred_nv) - gt_nv||_2 / normalizer_n, with
  normalizer_n = bbox_size(gt_n[:, :2]) by default (as `dense_nme_3d`).

  Args:
    pred_vertices, gt_vertices: [N, V, 3], same topology (any frames: the gt
      frame fixes the units; image-aligned gt makes the default normaliser the
      image-plane face box).
    subset: optional vertex subset, see `select_vertices`.
    normalizer: optional [N] positive lengths in gt units replacing the box
      size (e.g. `outer_interocular_distance`).

  Returns:
    [N] fractions.
  """
  pred, gt = _pair(pred_vertices, gt_vertices, 3)
  pred = select_vertices(pred, subset)[..., :3]
  gt = select_vertices(gt, subset)[..., :3]
  aligned = umeyama_similarity(pred, gt).apply(pred)
  if normalizer is None:
    normalizer = bbox_size(gt)
  else:
    normalizer = np.asarray(normalizer, np.float64)
    if normalizer.shape != (gt.shape[0],):
      raise ValueError(f'normalizer must have shape ({gt.shape[0]},), '
                       f'got {normalizer.shape}')
  return _mean_distance(aligned, gt) / normalizer


def outer_interocular_distance(landmarks_68) -> np.ndarray:
  """||l_36 - l_45|| of 68-point landmarks (0-based outer eye corners).

  Args:
    landmarks_68: [N, 68, C] with C = 2 or 3.

  Returns:
    [N] in the landmarks' units.
  """
  landmarks = _points(landmarks_68, 'landmarks_68')
  if landmarks.shape[1] != 68:
    raise ValueError(f'expected 68 landmarks, got shape {landmarks.shape}')
  left, right = OUTER_EYE_CORNERS_68
  return np.linalg.norm(landmarks[:, left] - landmarks[:, right], axis=-1)


def landmark_nme_2d(pred_68, gt_68) -> np.ndarray:
  """3DDFA's AFLW2000-3D landmark NME per sample.

  nme_n = mean_k ||pred_nk - gt_nk||_2 / sqrt(w_n h_n), with w, h the extent
  of the gt 68 points' 2D bounding box (`benchmark_aflw2000.py`, 3DDFA).

  Args:
    pred_68, gt_68: [N, 68, >=2] image pixels; only x, y are used.

  Returns:
    [N] fractions.
  """
  pred, gt = _pair(pred_68, gt_68, 2)
  if gt.shape[1] != 68:
    raise ValueError(f'expected 68 landmarks, got shape {gt.shape}')
  return _mean_distance(pred[..., :2], gt[..., :2]) / bbox_size(gt)


def wrap_degrees(angle_degrees) -> np.ndarray:
  """Maps angles to [-180, 180)."""
  return np.mod(np.asarray(angle_degrees, np.float64) + 180.0, 360.0) - 180.0


def yaw_absolute_error(pred_yaw_degrees, gt_yaw_degrees) -> np.ndarray:
  """|wrap(pred - gt)| per sample, degrees in [0, 180]."""
  pred = np.asarray(pred_yaw_degrees, np.float64)
  gt = np.asarray(gt_yaw_degrees, np.float64)
  if pred.shape != gt.shape or pred.ndim != 1:
    raise ValueError(f'yaws must both have shape [N], got {pred.shape} and '
                     f'{gt.shape}')
  return np.abs(wrap_degrees(pred - gt))


def yaw_mae(pred_yaw_degrees, gt_yaw_degrees) -> float:
  """Mean absolute yaw error in degrees, differences wrapped into [-180, 180).

  MAE = mean_n |wrap(pred_n - gt_n)|, so 179 vs -179 counts 2 degrees.
  Yaw is that of `geometry.rotation_to_euler_degrees` for both sets.
  """
  return float(yaw_absolute_error(pred_yaw_degrees, gt_yaw_degrees).mean())


def euler_within_range(pitch_degrees, yaw_degrees, roll_degrees,
                       limit_degrees: float = 99.0) -> np.ndarray:
  """[N] bool: all three annotated angles lie in [-limit, limit].

  The head-pose literature on AFLW2000-3D (Hopenet, FSA-Net) drops the 31
  images whose `Pose_Para` angles leave [-99, 99] degrees before the yaw MAE:
  their fitted Euler triples are out of the usual range (e.g. pitch -328,
  yaw -105, roll 334), and the canonical yaw of the same rotation
  (`geometry.rotation_to_euler_degrees`) then differs from the file's.
  """
  angles = np.stack([np.asarray(a, np.float64) for a in
                     (pitch_degrees, yaw_degrees, roll_degrees)])
  return np.all(np.abs(angles) <= limit_degrees, axis=0)


def yaw_bin_index(yaw_degrees) -> np.ndarray:
  """0, 1, 2 for |yaw| in [0, 30], (30, 60], (60, inf) (3DDFA's bins)."""
  abs_yaw = np.abs(np.asarray(yaw_degrees, np.float64))
  return np.searchsorted(np.asarray(YAW_BIN_EDGES_DEGREES[1:3]), abs_yaw,
                         side='left')


def nme_by_yaw_bins(nme, yaw_degrees) -> dict[str, float]:
  """Per-|yaw|-bin means, their balanced mean and the overall mean.

  Bins follow 3DDFA's AFLW2000-3D analysis: |yaw| <= 30, 30 < |yaw| <= 60,
  |yaw| > 60 (degrees; use the gt yaw). 'balanced' is the mean of the bin
  means (3DDFA's reported "mean"), taken over the non-empty bins; an empty
  bin's mean is NaN and its count 0. 'overall' is the plain mean over samples.
  The last bin, named '(60,90]' as in 3DDFA's table, holds every |yaw| > 60
  (AFLW2000-3D has a few annotations beyond 90).

  Args:
    nme: [N] per-sample values (fractions).
    yaw_degrees: [N].

  Returns:
    {'[0,30]', '(30,60]', '(60,90]', 'balanced', 'overall': float,
     'count [0,30]', ...: int}.
  """
  nme = np.asarray(nme, np.float64)
  yaw = np.asarray(yaw_degrees, np.float64)
  if nme.ndim != 1 or nme.shape != yaw.shape or nme.size == 0:
    raise ValueError(f'nme and yaw_degrees must both have shape [N>0], got '
                     f'{nme.shape} and {yaw.shape}')
  bins = yaw_bin_index(yaw)
  result = {}
  bin_means = []
  for index, name in enumerate(YAW_BIN_NAMES):
    members = nme[bins == index]
    mean = float(members.mean()) if members.size else float('nan')
    result[name] = mean
    result[f'count {name}'] = int(members.size)
    bin_means.append(mean)
  result['balanced'] = float(np.nanmean(bin_means))
  result['overall'] = float(nme.mean())
  return result
