"""300W-LP, CelebA and AFLW2000-3D, cropped to the models' input.

The datasets need registration, so nothing here downloads them; each is
read from a folder the user names (`manual_dir`), in its release layout, by
`pipeline.face_dataset('the300w_lp' | 'celeb_a' | 'aflw2000_3d', ...)`.

300W-LP: `300W-LP.zip` or its unpacked `300W_LP/` folder (`list_300w_lp`).
All sub-sets are read, the release's `*_Flip` folders included (the paper's
122,450 samples are the 61,225 originals and their mirror images); TFDS's own
`the300w_lp` skips the flipped folders and needs the 2.8 GB archive's
checksum and its `landmarks/` folder, so it is not used. Its `shape_params` (199),
`exp_params` (29) and `pose_params` (7, `Pose_Para`) with a user-supplied
Basel Face Model (`facemodel.load_bfm2009(..., expression_path=...,
model_info_path=...)`, trimmed to 300W-LP's 53,215 vertices) give the
ground-truth PNCC, rendered here into the face crop.

CelebA: `img_align_celeba/` (or the images themselves) and
`list_landmarks_align_celeba.txt`, optionally `list_eval_partition.txt`
(`list_celeba`); without the partition file the split is
`face_photos.split_of(file stem)`. Image + 5 landmarks (eyes, nose, mouth
corners). Crops are centred on the 5 points; the nose tip and mouth corners
become landmarks 30, 48 and 54 of the 68 with weight 1, and the eye centres,
which are no single iBUG point, are kept as `eye_centres` [2, 2] (viewer's
left eye first), to be matched by the mean of the model's six landmarks of
each eye (`EYE_LANDMARKS`).

AFLW2000-3D (the `aflw2000_3d` builder): crops around the 68 ground-truth
landmarks (as 3DDFA crops by its roi); with a face model the ground-truth
dense geometry (`vertices_screen`) and PNCC in the crop.
"""

from __future__ import annotations

import functools
import io
import pathlib
import re
import zipfile
from typing import Callable, Iterator, Mapping, NamedTuple

import jax
import numpy as np
import scipy.io

from pnccface import render
from pnccface.data import aflw2000_3d
from pnccface.data import crop
from pnccface.data import face_photos
from pnccface.data import synthesis
from pnccface.facemodel import MorphableModel

CELEBA_LANDMARKS_TO_IBUG = {'nose': 30, 'leftmouth': 48, 'rightmouth': 54}
# iBUG-68 landmarks of the viewer's left and right eye (0-based).
EYE_LANDMARKS = (tuple(range(36, 42)), tuple(range(42, 48)))
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
      'eye_centres': crop.transform_points(
          np.stack([points['lefteye'], points['righteye']]), box, size),
  }


def map_examples(examples: Iterator[Mapping], fn, **kwargs
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Applies an example function to a stream of TFDS numpy examples."""
  for example in examples:
    yield fn(example, **kwargs)


# ----------------------------------------------------------------------------
# Release layouts.


class Record(NamedTuple):
  """One sample of a release: its name and a reader of its raw example."""
  name: str
  read: Callable[[], dict]


def _300w_lp_example(image_bytes: bytes, mat_bytes: bytes, name: str) -> dict:
  mat = scipy.io.loadmat(io.BytesIO(mat_bytes))
  try:
    return {'image': aflw2000_3d.decode_image_bytes(image_bytes, name),
            'shape_params': mat['Shape_Para'].reshape(-1),
            'exp_params': mat['Exp_Para'].reshape(-1),
            'pose_params': mat['Pose_Para'].reshape(-1)}
  except KeyError as e:
    raise KeyError(f'{name}: missing key {e} in its .mat') from None


_300W_LP_IMAGE = re.compile(r'(?:^|/)300W_LP/(?!landmarks/|Code/)[^/]+/[^/]+\.jpg$')


def list_300w_lp(manual_dir) -> list[Record]:
  """300W-LP samples (`<subset>/<name>.jpg` + `.mat`), sorted by path.

  `manual_dir` holds `300W-LP.zip` (read in place) or a `300W_LP/` folder.
  """
  manual_dir = pathlib.Path(manual_dir)
  archive = manual_dir / '300W-LP.zip'
  archives = [archive] if archive.is_file() else sorted(manual_dir.glob('*.zip'))
  if (manual_dir / '300W_LP').is_dir():
    paths = sorted((manual_dir / '300W_LP').glob('*/*.jpg'))
    paths = [p for p in paths if p.parent.name not in ('landmarks', 'Code')]
    return [Record(f'{p.parent.name}/{p.stem}', functools.partial(
        lambda p: _300w_lp_example(p.read_bytes(),
                                   p.with_suffix('.mat').read_bytes(), str(p)),
        p)) for p in paths]
  for archive in archives:
    with zipfile.ZipFile(archive) as z:
      names = sorted(n for n in z.namelist() if _300W_LP_IMAGE.search(n))
    if names:
      def read(member, archive=archive):
        with zipfile.ZipFile(archive) as z:
          return _300w_lp_example(z.read(member),
                                  z.read(member[:-4] + '.mat'),
                                  f'{archive}:{member}')
      return [Record('/'.join(n.split('/')[-2:])[:-4],
                     functools.partial(read, n)) for n in names]
  raise FileNotFoundError(f'300W-LP not found in {manual_dir}: expected '
                          '300W-LP.zip or a 300W_LP/ folder')


CELEBA_LANDMARKS_FILE = 'list_landmarks_align_celeba.txt'
CELEBA_PARTITION_FILE = 'list_eval_partition.txt'
_CELEBA_PARTITIONS = {'0': 'train', '1': 'validation', '2': 'test'}
CELEBA_NAMES = ('lefteye', 'righteye', 'nose', 'leftmouth', 'rightmouth')


def _read_table(path: pathlib.Path, columns: int, skip: int) -> dict:
  out = {}
  for line_number, line in enumerate(path.read_text().splitlines()[skip:],
                                     start=skip + 1):
    fields = line.split()
    if not fields:
      continue
    if len(fields) != columns:
      raise ValueError(f'{path}:{line_number}: expected {columns} fields, got '
                       f'{len(fields)}')
    out[fields[0]] = fields[1:]
  return out


def list_celeba(manual_dir, split: str) -> list[Record]:
  """CelebA samples of `split` ('train'/'validation'/'test'), by file name."""
  manual_dir = pathlib.Path(manual_dir)
  landmarks_path = manual_dir / CELEBA_LANDMARKS_FILE
  if not landmarks_path.is_file():
    raise FileNotFoundError(f'CelebA: {landmarks_path} not found')
  image_dir = (manual_dir / 'img_align_celeba'
               if (manual_dir / 'img_align_celeba').is_dir() else manual_dir)
  # The file: a count line, a header line, then `name x1 y1 ... x5 y5`.
  table = _read_table(landmarks_path, 11, skip=2)
  partition_path = manual_dir / CELEBA_PARTITION_FILE
  if partition_path.is_file():
    partition = {k: _CELEBA_PARTITIONS[v[0]]
                 for k, v in _read_table(partition_path, 2, 0).items()}
  else:
    partition = {k: face_photos.split_of(pathlib.PurePath(k).stem)
                 for k in table}

  def read(name):
    values = np.asarray(table[name], np.float32)
    landmarks = {f'{n}_{axis}': values[2 * i + j] for i, n in
                 enumerate(CELEBA_NAMES) for j, axis in enumerate('xy')}
    path = image_dir / name
    return {'image': aflw2000_3d.decode_image_bytes(path.read_bytes(),
                                                    str(path)),
            'landmarks': landmarks}

  return [Record(name, functools.partial(read, name))
          for name in sorted(table) if partition.get(name) == split]


def aflw2000_3d_face_example(example: Mapping, size: int,
                             model: MorphableModel | None = None, *,
                             margin: float = 0.2) -> dict[str, np.ndarray]:
  """An `aflw2000_3d` example -> crop, 68 landmarks, yaw; dense GT with a model.

  The crop is the square around the ground-truth 68 landmarks (`margin` as
  `evaluation.aflw.predict_on_crops`). With `model` (the user's BFM, whose
  coefficients the release's are), `vertices_screen` [V, 3] and the PNCC and
  mask are the release's fit posed in the crop.
  """
  image = np.asarray(example['image'])
  landmarks = np.asarray(example['landmarks_2d'], np.float32)
  box = crop.box_from_points(landmarks, margin)
  out = {
      'image': crop.crop_image(image, box, size) / 255.0,
      'landmarks_2d': crop.transform_points(landmarks, box, size),
      'landmark_weights': np.ones(68, np.float32),
      'yaw_degrees': np.float32(example['pose']['yaw']),
  }
  if model is not None:
    shape = _fit_coefficients(example['shape_para'], model.num_shape)
    expression = _fit_coefficients(example['exp_para'], model.num_expression)
    pose = crop.transform_pose_para(example['pose_para'], box, size,
                                    image.shape[0])
    pncc, mask, _ = jax.device_get(_render_pncc_batch(
        model, shape[None], expression[None], pose[None], size))
    out.update(pncc=pncc[0], mask=mask[0], vertices_screen=np.asarray(
        synthesis.face_vertices_screen(model, shape[None], expression[None],
                                       pose[None], size))[0])
  return out
