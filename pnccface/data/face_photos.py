"""`face_photos`: real face photos from a folder, optionally with 68 landmarks.

Importing this module registers the TFDS builder. The photos are read from
TFDS's manual dir (nothing is downloaded), which holds either the photos
themselves or one sub-folder per config (`faces68/`, `celeba_10k/`,
`utkface_6k/`, as in `../shared/data`), e.g.

    tfds.load('face_photos/faces68', download_and_prepare_kwargs=dict(
        download_config=tfds.download.DownloadConfig(manual_dir=DIR)))

or `pipeline.face_dataset('face_photos/faces68', 'train', manual_dir=DIR)`.

Layout of a photo folder: images (`.jpg`, `.jpeg`, `.png`) in the folder or in
its `images/` sub-folder, and optionally `landmarks.csv` with header
`image,x0,y0,...,x67,y67` (iBUG-68 order, pixels of the stored image with the
origin at the top-left corner of the top-left pixel, i.e. our image frame,
`pnccface.geometry`). With a CSV, its rows are the examples; without one,
every image in the folder is.

Crops (`FacePhotosConfig.image_size` square, `pnccface.data.crop`):
  * with landmarks: the square around the 68 points, side `1 + 2 * margin`
    times their larger extent (`crop.box_from_points`);
  * without (aligned sets): the same rule applied to a fixed *expected*
    landmark box, given as fractions of the image width/height
    (`FixedBox`). CelebA's aligned images put the eye centres at (88.5, 111)
    and the mouth centre at (88.5, 152) of 178 x 218 pixels; on faces68 the
    68-point box is 2.18 x the eye-to-mouth distance and its centre lies
    0.64 of that distance below the eyes (medians over the 3,531 faces), so
    the expected box is centred at (0.497, 0.629) with extent 0.503 of the
    width. UTKFace's crops put the eyes near row 57 and the mouth near row
    134 of 200 (read off 8 images), giving centre (0.5, 0.53), extent 0.84.
    So every config frames faces at one scale.
  Landmark-free examples store zeros with `landmark_weights` 0.

Splits, deterministic and stable when files are added: each example belongs
to a group; `zlib.crc32(group) % 100` < 80 is train, < 90 validation, else
test. For `faces68` the group is the identity, the file stem without its
trailing `_<digits>` (`Luis_Fonsi_21` -> `Luis_Fonsi`), so the frames of a
video (and all videos of a person) never straddle splits; the other configs
group by file.

Unreadable images are skipped, counted and named in one warning per split.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
import re
import zlib

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from pnccface.data import aflw2000_3d
from pnccface.data import crop

SPLITS = ('train', 'validation', 'test')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
LANDMARKS_CSV = 'landmarks.csv'
# Split boundaries on `crc32(group) % 100` (see the module docstring).
_SPLIT_BOUNDS = (80, 90)
_TRAILING_NUMBER = re.compile(r'_\d+$')


@dataclasses.dataclass(frozen=True)
class FixedBox:
  """The expected 68-landmark box of an aligned set, fractions of the image.

  centre_x, centre_y: box centre over the image width / height.
  extent: the box's larger side over the image width.
  """
  centre_x: float
  centre_y: float
  extent: float


@dataclasses.dataclass
class FacePhotosConfig(tfds.core.BuilderConfig):
  """A folder of face photos.

  subdir: sub-folder of the manual dir holding this set ('' = the manual dir
    itself; a missing sub-folder also falls back to the manual dir).
  image_size: side of the stored square crops, pixels.
  margin: crop margin around the (expected) landmark box (`box_from_points`).
  fixed_box: crop of images without landmarks; None = the centred square of
    side min(H, W) taken as the landmark box.
  group_by: 'identity' (stem without a trailing `_<digits>`) or 'file'.
  max_images: keep only the first N examples in name order (tests).
  """
  subdir: str = ''
  image_size: int = 128
  margin: float = 0.4
  fixed_box: FixedBox | None = None
  group_by: str = 'file'
  max_images: int | None = None


CELEBA_ALIGNED_BOX = FixedBox(centre_x=0.497, centre_y=0.629, extent=0.503)
UTKFACE_BOX = FixedBox(centre_x=0.5, centre_y=0.53, extent=0.84)


def first_images_config(builder_cls, config, max_images: int | None):
  """`config` (a name of `builder_cls`'s configs, None for its default, or a
  BuilderConfig) keeping only its first `max_images` photos, under a name
  of its own (so a TFDS folder of its own); unchanged when `max_images` is
  None.

  Builders take it as a keyword, in dataset names too:
  'face_photos/faces68:1.0.0/max_images=64' (CI-sized runs, configs/real.py).
  """
  config = config or builder_cls.DEFAULT_BUILDER_CONFIG_NAME
  if isinstance(config, str):
    config = builder_cls.builder_configs[config]
  if max_images is None:
    return config
  if max_images <= 0:
    raise ValueError(f'max_images must be positive, got {max_images}')
  return dataclasses.replace(config, name=f'{config.name}_first{max_images}',
                             max_images=max_images)


def group_of(name: str, group_by: str) -> str:
  """The split group of an image file name (see the module docstring)."""
  stem = pathlib.PurePath(name).stem
  if group_by == 'identity':
    return _TRAILING_NUMBER.sub('', stem)
  if group_by == 'file':
    return stem
  raise ValueError(f"group_by must be 'identity' or 'file', got {group_by!r}")


def split_of(group: str) -> str:
  """'train' / 'validation' / 'test' of a group, by `crc32(group) % 100`."""
  bucket = zlib.crc32(group.encode('utf-8')) % 100
  if bucket < _SPLIT_BOUNDS[0]:
    return 'train'
  return 'validation' if bucket < _SPLIT_BOUNDS[1] else 'test'


def find_folder(manual_dir: pathlib.Path, subdir: str) -> pathlib.Path:
  """The photo folder: `manual_dir/subdir` if it exists, else `manual_dir`."""
  for folder in (manual_dir / subdir if subdir else None, manual_dir):
    if folder is not None and folder.is_dir():
      return folder
  raise FileNotFoundError(f'face_photos: no folder {manual_dir}')


def read_landmarks_csv(path: pathlib.Path) -> dict[str, np.ndarray]:
  """`landmarks.csv` -> {image name: [68, 2] float32}; errors name the row."""
  out = {}
  with open(path, newline='') as f:
    reader = csv.reader(f)
    header = next(reader)
    if len(header) != 137 or header[0] != 'image':
      raise ValueError(f'{path}: expected header image,x0,y0,...,x67,y67 '
                       f'(137 columns), got {len(header)} columns')
    for line, row in enumerate(reader, start=2):
      if len(row) != 137:
        raise ValueError(f'{path}:{line}: expected 137 columns, got {len(row)}')
      try:
        out[row[0]] = np.asarray(row[1:], np.float32).reshape(68, 2)
      except ValueError:
        raise ValueError(f'{path}:{line}: non-numeric landmark') from None
  return out


def list_examples(folder: pathlib.Path
                  ) -> list[tuple[str, pathlib.Path, np.ndarray | None]]:
  """(name, image path, landmarks or None), sorted by name."""
  image_dir = folder / 'images' if (folder / 'images').is_dir() else folder
  csv_path = folder / LANDMARKS_CSV
  if csv_path.is_file():
    landmarks = read_landmarks_csv(csv_path)
    return [(name, image_dir / name, landmarks[name])
            for name in sorted(landmarks)]
  return [(p.name, p, None) for p in sorted(image_dir.iterdir())
          if p.suffix.lower() in IMAGE_SUFFIXES]


def crop_box(image_shape, landmarks, config: FacePhotosConfig) -> crop.CropBox:
  """The crop of one image (see the module docstring)."""
  if landmarks is not None:
    return crop.box_from_points(landmarks, config.margin)
  height, width = image_shape[:2]
  fixed = config.fixed_box
  if fixed is None:
    fixed = FixedBox(0.5, 0.5, min(height, width) / width)
  centre = np.array([fixed.centre_x * width, fixed.centre_y * height])
  half = fixed.extent * width / 2
  return crop.box_from_points([centre - half, centre + half], config.margin)


def crop_example(image: np.ndarray, landmarks, config: FacePhotosConfig
                 ) -> dict:
  """One photo -> the stored crop, its landmarks and box."""
  size = config.image_size
  box = crop_box(image.shape, landmarks, config)
  known = landmarks is not None
  return {
      'image': np.round(np.clip(crop.crop_image(image, box, size), 0, 255)
                        ).astype(np.uint8),
      'landmarks_2d': (crop.transform_points(landmarks, box, size) if known
                       else np.zeros((68, 2), np.float32)),
      'landmark_weights': np.full(68, float(known), np.float32),
      'box': np.asarray(box, np.float32),
  }


class FacePhotos(tfds.core.GeneratorBasedBuilder):
  """Face photos from a folder, cropped, with optional 68 landmarks."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
  BUILDER_CONFIGS = [
      FacePhotosConfig(
          name='faces68', subdir='faces68', group_by='identity',
          description='YouTube-Faces frames with 68 landmarks, split by '
          'identity.'),
      FacePhotosConfig(
          name='celeba_10k', subdir='celeba_10k', fixed_box=CELEBA_ALIGNED_BOX,
          description='CelebA aligned photos (fixed box), no landmarks.'),
      FacePhotosConfig(
          name='utkface_6k', subdir='utkface_6k', fixed_box=UTKFACE_BOX,
          description='UTKFace aligned crops (fixed box), no landmarks.'),
      FacePhotosConfig(
          name='folder', description='Your own photos: the manual dir itself '
          '(landmarks.csv optional; without it, centred square crops).'),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'faces68'  # the attribute TFDS reads

  def __init__(self, *, max_images: int | None = None, **kwargs):
    """`max_images`: only the first N photos (`first_images_config`)."""
    super().__init__(config=first_images_config(
        type(self), kwargs.pop('config', None), max_images), **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    f32 = np.float32
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(size, size, 3)),
            'landmarks_2d': tfds.features.Tensor(shape=(68, 2), dtype=f32),
            'landmark_weights': tfds.features.Tensor(shape=(68,), dtype=f32),
            'box': tfds.features.Tensor(shape=(3,), dtype=f32),
            'name': tfds.features.Text(),
            'group': tfds.features.Text(),
        }),
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    folder = find_folder(pathlib.Path(dl_manager.manual_dir), config.subdir)
    examples = list_examples(folder)[:config.max_images]
    if not examples:
      raise FileNotFoundError(f'face_photos: no images in {folder}')
    by_split = {split: [] for split in SPLITS}
    for example in examples:
      by_split[split_of(group_of(example[0], config.group_by))].append(example)
    logging.info('face_photos/%s: %s from %s', config.name,
                 {k: len(v) for k, v in by_split.items()}, folder)
    return {split: self._generate_examples(split, rows)
            for split, rows in by_split.items() if rows}

  def _generate_examples(self, split, rows):
    config = self.builder_config
    unreadable = []
    for name, path, landmarks in rows:
      try:
        image = aflw2000_3d.decode_image_bytes(path.read_bytes(), str(path))
      except (OSError, aflw2000_3d.CorruptImageError) as e:
        unreadable.append(f'{name} ({type(e).__name__})')
        continue
      example = crop_example(image, landmarks, config)
      example.update(name=name, group=group_of(name, config.group_by))
      yield name, example
    if unreadable:
      logging.warning('face_photos/%s %s: skipped %d unreadable images: %s',
                      config.name, split, len(unreadable),
                      ', '.join(unreadable))
