"""Per-image 3DMM fits of 300W-LP and AFLW2000-3D (`imageNNNNN.mat` files).

Keys (see third_party/FORMATS.md): Pose_Para (1, 7) = [pitch, yaw, roll
(radians), tx, ty, tz, scale]; Shape_Para (199, 1) and Exp_Para (29, 1), raw
coefficients of the BFM shape basis and 3DDFA's expression basis; pt2d
(2, 21) in AFLW2000-3D, (2, 68) in 300W-LP; pt3d_68 (3, 68) (AFLW2000-3D
only); roi (1, 4); Tex_Para (199, 1); Illum_Para (1, 10); Color_Para (1, 7).
Landmark coordinates stay in the file's 1-based MATLAB pixel frame; the
conversions and the projection are those of `pnccface.geometry`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pnccface import geometry
from pnccface.facemodel import loading

NUM_POSE = 7
NUM_SHAPE = 199
NUM_EXPRESSION = 29
NUM_TEXTURE = 199
NUM_ILLUMINATION = 10
NUM_COLOR = 7


@dataclasses.dataclass(frozen=True, eq=False)
class FaceParams:
  """One image's fit, as stored in its .mat file (read-only float64 arrays).

  Attributes:
    path: the file it was read from.
    pose_para: [7] = [pitch, yaw, roll (radians), tx, ty, tz, scale].
    shape_para: [199] raw BFM shape coefficients.
    exp_para: [29] raw expression coefficients.
    pt2d: [2, N] 2D landmarks (x, y), 1-based MATLAB pixels; N = 21 or 68.
      AFLW2000-3D marks invisible points with -1.
    pt3d_68: [3, 68] (x, y, z) landmarks, x, y in 1-based MATLAB pixels,
      or None.
    roi: [4] or None.
    tex_para: [199] or None.
    illum_para: [10] or None.
    color_para: [7] or None.
  """
  path: str
  pose_para: np.ndarray
  shape_para: np.ndarray
  exp_para: np.ndarray
  pt2d: np.ndarray
  pt3d_68: np.ndarray | None = None
  roi: np.ndarray | None = None
  tex_para: np.ndarray | None = None
  illum_para: np.ndarray | None = None
  color_para: np.ndarray | None = None

  @property
  def pitch_degrees(self) -> float:
    return float(np.degrees(self.pose_para[0]))

  @property
  def yaw_degrees(self) -> float:
    return float(np.degrees(self.pose_para[1]))

  @property
  def roll_degrees(self) -> float:
    return float(np.degrees(self.pose_para[2]))

  def weak_perspective(self) -> geometry.WeakPerspective:
    """The file's camera, for `geometry.weak_perspective_to_screen`."""
    return geometry.pose_para_to_weak_perspective(self.pose_para)

  def landmarks_image_xy(self) -> np.ndarray | None:
    """pt3d_68's x, y in our image frame: [68, 2], or None when absent."""
    if self.pt3d_68 is None:
      return None
    return geometry.matlab_to_image_xy(self.pt3d_68[:2].T)


def read_face_params(path: loading.PathLike) -> FaceParams:
  """Reads a 300W-LP / AFLW2000-3D parameter file.

  Raises:
    FileNotFoundError: no file at `path`.
    loading.FaceFileError: a required key (Pose_Para, Shape_Para, Exp_Para,
      pt2d) is missing, or any key has the wrong size; the message names the
      file and the key.
  """
  contents = loading.load_mat(path)

  def vector(key, size, required=True):
    if not required and key not in contents:
      return None
    return _read_only(
        loading.get_vector(contents, key, path, size, np.float64))

  def matrix(key, shape, required=True):
    if not required and key not in contents:
      return None
    return _read_only(
        loading.get_array(contents, key, path, shape, np.float64))

  return FaceParams(
      path=str(path),
      pose_para=vector('Pose_Para', NUM_POSE),
      shape_para=vector('Shape_Para', NUM_SHAPE),
      exp_para=vector('Exp_Para', NUM_EXPRESSION),
      pt2d=matrix('pt2d', (2, None)),
      pt3d_68=matrix('pt3d_68', (3, 68), required=False),
      roi=vector('roi', 4, required=False),
      tex_para=vector('Tex_Para', NUM_TEXTURE, required=False),
      illum_para=vector('Illum_Para', NUM_ILLUMINATION, required=False),
      color_para=vector('Color_Para', NUM_COLOR, required=False))


def _read_only(array: np.ndarray) -> np.ndarray:
  array = np.array(array)  # Own the memory before freezing it.
  array.flags.writeable = False
  return array
