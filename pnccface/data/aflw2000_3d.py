"""`aflw2000_3d`: AFLW2000-3D with its 3DMM fits (pose, shape, expression).

TFDS's own `aflw2k3d` keeps only the landmarks, so this builder reads the
original release instead. AFLW2000-3D needs registration: download
`AFLW2000-3D.zip` yourself and give its folder as the manual dir, e.g.

    tfds.load('aflw2000_3d', download_and_prepare_kwargs=dict(
        download_config=tfds.download.DownloadConfig(manual_dir=DIR)))

`DIR` holds `AFLW2000-3D.zip`, or its unpacked `AFLW2000/` folder, or the
`imageNNNNN.jpg` / `.mat` pairs themselves.

Coordinates: `landmarks_3d` is `pt3d_68` in our image frame (x, y pixels per
`pnccface.geometry`, z as in the file: towards the viewer, scaled model
units). Angles are in degrees, read back from the rotation that `Pose_Para`
defines (`geometry.rotation_to_euler_degrees`), so a few files whose raw
Euler angles lie outside +-180 deg get their equivalent in-range angles; the
raw vector is kept in `pose_para`.
"""

from __future__ import annotations

import pathlib

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from pnccface import geometry
from pnccface.facemodel import params as face_params

IMAGE_SIZE = 450


class CorruptImageError(ValueError):
  """An image file that cannot be decoded (the message names the file)."""


def decode_image_bytes(data: bytes, source: str) -> np.ndarray:
  """Decodes JPEG/PNG bytes to [H, W, 3] uint8, naming `source` on failure."""
  try:
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
    raise CorruptImageError(f'{source}: cannot decode image ({e.message})'
                            ) from None
  return image.numpy()


def find_release_folder(manual_dir: pathlib.Path, extract=None) -> pathlib.Path:
  """The folder holding the `imageNNNNN.jpg/.mat` pairs.

  Args:
    manual_dir: a folder with the pairs, an `AFLW2000/` folder of them, or
      `AFLW2000-3D.zip`.
    extract: callable unpacking the zip to a folder (TFDS's
      `dl_manager.extract`); required only for the zip.
  """
  for folder in (manual_dir / 'AFLW2000', manual_dir):
    if folder.is_dir() and any(folder.glob('image*.jpg')):
      return folder
  archive = manual_dir / 'AFLW2000-3D.zip'
  if archive.is_file() and extract is not None:
    return find_release_folder(pathlib.Path(extract(archive)))
  raise FileNotFoundError(
      f'AFLW2000-3D not found in {manual_dir}: expected AFLW2000-3D.zip, an '
      'AFLW2000/ folder, or imageNNNNN.jpg/.mat files there.')


def list_samples(folder: pathlib.Path) -> dict[str, pathlib.Path]:
  """Sample name (`imageNNNNN`) -> its .jpg, sorted by name."""
  return {p.stem: p for p in sorted(folder.glob('image[0-9]*.jpg'))}


def read_example(jpg_path: pathlib.Path) -> dict:
  """One example; errors name the file and what is wrong with it."""
  mat_path = jpg_path.with_suffix('.mat')
  image = decode_image_bytes(jpg_path.read_bytes(), str(jpg_path))
  params = face_params.read_face_params(mat_path)
  if params.pt3d_68 is None:
    raise KeyError(f'{mat_path}: missing key pt3d_68')
  pitch, yaw, roll = (float(a) for a in geometry.rotation_to_euler_degrees(
      geometry.euler_to_rotation(*params.pose_para[:3])))
  landmarks = np.asarray(params.pt3d_68, np.float32).T.copy()
  landmarks[:, :2] = geometry.matlab_to_image_xy(landmarks[:, :2])
  roi = np.zeros(4) if params.roi is None else params.roi
  return {
      'image': image,
      'landmarks_3d': landmarks,
      'landmarks_2d': landmarks[:, :2],
      'pt2d': np.asarray(params.pt2d, np.float32).T,
      'pose_para': np.asarray(params.pose_para, np.float32),
      'pose': {'pitch': pitch, 'yaw': yaw, 'roll': roll},
      'shape_para': np.asarray(params.shape_para, np.float32),
      'exp_para': np.asarray(params.exp_para, np.float32),
      'roi': np.asarray(roi, np.float32),
      'name': jpg_path.stem,
  }


class Aflw20003d(tfds.core.GeneratorBasedBuilder):
  """AFLW2000-3D with pose and 3DMM parameters (manual download)."""

  name = 'aflw2000_3d'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

  def _info(self) -> tfds.core.DatasetInfo:
    f32 = np.float32
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                                         encoding_format='jpeg'),
            'landmarks_3d': tfds.features.Tensor(shape=(68, 3), dtype=f32),
            'landmarks_2d': tfds.features.Tensor(shape=(68, 2), dtype=f32),
            'pt2d': tfds.features.Tensor(shape=(None, 2), dtype=f32),
            'pose_para': tfds.features.Tensor(shape=(7,), dtype=f32),
            'pose': tfds.features.FeaturesDict({
                'pitch': tfds.features.Scalar(dtype=f32),
                'yaw': tfds.features.Scalar(dtype=f32),
                'roll': tfds.features.Scalar(dtype=f32),
            }),
            'shape_para': tfds.features.Tensor(shape=(199,), dtype=f32),
            'exp_para': tfds.features.Tensor(shape=(29,), dtype=f32),
            'roi': tfds.features.Tensor(shape=(4,), dtype=f32),
            'name': tfds.features.Text(),
        }),
        homepage='http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm',
    )

  def _split_generators(self, dl_manager):
    folder = find_release_folder(pathlib.Path(dl_manager.manual_dir),
                                 dl_manager.extract)
    return {'test': self._generate_examples(folder)}

  def _generate_examples(self, folder: pathlib.Path):
    samples = list_samples(folder)
    logging.info('aflw2000_3d: %d samples in %s', len(samples), folder)
    for name, jpg_path in samples.items():
      yield name, read_example(jpg_path)
