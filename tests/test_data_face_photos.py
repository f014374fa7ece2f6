"""`face_photos` on the shared real photos: crops, landmarks, splits, errors."""

import csv
import dataclasses
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pnccface.data import aflw2000_3d
from pnccface.data import face_photos


def _build(config_name, manual_dir, data_dir, **overrides):
  config = dataclasses.replace(
      face_photos.FacePhotos.builder_configs[config_name],
      name=f'{config_name}_small', **overrides)
  builder = face_photos.FacePhotos(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir)))
  return builder


def _rows(builder):
  return [row for split in builder.info.splits
          for row in tfds.as_numpy(builder.as_dataset(split=split))]


def _bilinear(image, x, y):
  """Bilinear sample of an image-frame point (pixel centres at +0.5)."""
  x, y = x - 0.5, y - 0.5
  x0, y0 = int(np.floor(x)), int(np.floor(y))
  fx, fy = x - x0, y - y0
  image = image.astype(np.float64)
  return ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x0 + 1]
          + (1 - fx) * fy * image[y0 + 1, x0] + fx * fy * image[y0 + 1, x0 + 1])


def test_faces68_landmarks_land_on_the_crop(shared_data, tmp_path):
  builder = _build('faces68', shared_data, tmp_path, max_images=6,
                   image_size=96)
  rows = _rows(builder)
  assert len(rows) == 6
  with open(shared_data / 'faces68' / 'landmarks.csv') as f:
    table = {r[0]: np.asarray(r[1:], float).reshape(68, 2)
             for r in list(csv.reader(f))[1:]}
  for row in rows:
    name = row['name'].decode()
    source = table[name]
    # The crop by hand: square of side 1.8 x the larger landmark extent,
    # centred on the landmark box, scaled to 96 pixels.
    lo, hi = source.min(0), source.max(0)
    side = 1.8 * (hi - lo).max()
    corner = (lo + hi) / 2 - side / 2
    expected = (source - corner) * 96 / side
    np.testing.assert_allclose(row['landmarks_2d'], expected, atol=1e-3)
    np.testing.assert_allclose(row['box'], [*corner, side], rtol=1e-5)
    assert np.all(row['landmark_weights'] == 1)
    # The pixels agree: the crop at a landmark is the photo at the CSV point.
    image = aflw2000_3d.decode_image_bytes(
        (shared_data / 'faces68' / 'images' / name).read_bytes(), name)
    for k in (8, 30, 36, 48):
      # The crop pixel whose centre is nearest landmark k, and the photo
      # point that centre maps back to: bilinear samples of the same spot.
      j, i = np.floor(row['landmarks_2d'][k]).astype(int)
      point = (np.array([j, i]) + 0.5) * side / 96 + corner
      original = _bilinear(image, *point)
      assert np.abs(row['image'][i, j] - original).max() <= 1.0, (name, k)
      # ... and within a crop pixel of the CSV point.
      assert np.abs(point - source[k]).max() <= side / 96


@pytest.mark.parametrize('config_name, size', [('celeba_10k', (109, 89)),
                                               ('utkface_6k', (200, 200))])
def test_aligned_sets_build_with_a_fixed_box(shared_data, tmp_path,
                                             config_name, size):
  builder = _build(config_name, shared_data, tmp_path, max_images=4,
                   image_size=64)
  rows = _rows(builder)
  assert len(rows) == 4
  box = face_photos.crop_box(size + (3,), None,
                             builder.builder_config)
  fixed = builder.builder_config.fixed_box
  # Box by hand from the documented fractions (height, width = size).
  side = 1.8 * fixed.extent * size[1]
  np.testing.assert_allclose(
      box, [fixed.centre_x * size[1] - side / 2,
            fixed.centre_y * size[0] - side / 2, side], rtol=1e-5)
  for row in rows:
    assert row['image'].shape == (64, 64, 3)
    np.testing.assert_allclose(row['box'], box, rtol=1e-5)
    assert np.all(row['landmark_weights'] == 0)
    # The face (mid-crop) is brighter than zero padding and not constant.
    assert row['image'][24:40, 24:40].std() > 5


def test_splits_follow_the_identity_rule():
  assert face_photos.group_of('Luis_Fonsi_21.jpg', 'identity') == 'Luis_Fonsi'
  assert face_photos.group_of('T_Boone_Pickens_3.jpg', 'identity') == (
      'T_Boone_Pickens')
  assert face_photos.group_of('100_1_0_2017.jpg', 'file') == '100_1_0_2017'
  # zlib.crc32 values computed independently: crc32(b'Luis_Fonsi') % 100.
  import zlib  # pylint: disable=g-import-not-at-top
  for group in ('Luis_Fonsi', 'Wes_Craven', '000001', 'a'):
    bucket = zlib.crc32(group.encode()) % 100
    expected = ('train' if bucket < 80 else
                'validation' if bucket < 90 else 'test')
    assert face_photos.split_of(group) == expected
  with pytest.raises(ValueError, match='group_by'):
    face_photos.group_of('x.jpg', 'video')


def test_user_folder_names_unreadable_images(shared_data, tmp_path, caplog):
  photos = tmp_path / 'photos'
  photos.mkdir()
  for name in ('000001.jpg', '000002.jpg', '000003.jpg'):
    shutil.copy(shared_data / 'celeba_sample' / name, photos / name)
  (photos / 'broken.jpg').write_bytes(b'not a jpeg at all')
  builder = _build('folder', photos, tmp_path / 'tfds', image_size=32)
  assert len(_rows(builder)) == 3
  warning = [r.getMessage() for r in caplog.records
             if 'unreadable' in r.getMessage()]
  assert len(warning) == 1 and 'skipped 1 ' in warning[0]
  assert 'broken.jpg' in warning[0]


def test_landmark_csv_errors_name_the_row(tmp_path):
  path = tmp_path / 'landmarks.csv'
  header = ['image'] + [f'{a}{k}' for k in range(68) for a in 'xy']
  path.write_text(','.join(header) + '\na.jpg,' + ','.join(['1'] * 135) + '\n')
  with pytest.raises(ValueError, match=r'landmarks.csv:2: expected 137'):
    face_photos.read_landmarks_csv(path)


def test_photos_without_landmarks_mix_with_faces68(shared_data, tmp_path):
  from pnccface.data import pipeline  # pylint: disable=g-import-not-at-top
  rows = [
      pipeline.to_numpy(_build(name, shared_data, tmp_path / name,
                               max_images=3, image_size=32).as_dataset(
                                   split='train').map(
                                       pipeline.to_face_example))
      for name in ('celeba_10k', 'faces68')]
  mixed = pipeline.concatenate(rows)
  assert sorted(mixed) == ['image', 'landmark_weights', 'landmarks_2d']
  weights = mixed['landmark_weights'].sum(axis=1)
  np.testing.assert_array_equal(
      weights, [0] * len(rows[0]['image']) + [68] * len(rows[1]['image']))


def test_max_images_in_a_dataset_name_keeps_the_first_photos(shared_data,
                                                             tmp_path):
  from pnccface.data import pipeline  # pylint: disable=g-import-not-at-top
  photos = tmp_path / 'photos'
  photos.mkdir()
  names = ('000001.jpg', '000002.jpg', '000003.jpg')
  for name in names:
    shutil.copy(shared_data / 'celeba_sample' / name, photos / name)
  split_of = {face_photos.split_of(face_photos.group_of(n, 'file')): n
              for n in names[:2]}
  data_dir = str(tmp_path / 'tfds')
  for split, name in split_of.items():
    rows = list(tfds.as_numpy(pipeline.load_split(
        'face_photos/folder:1.0.0/max_images=2', split, data_dir=data_dir,
        manual_dir=str(photos))))
    assert name in [r['name'].decode() for r in rows]
  builder = tfds.builder('face_photos/folder:1.0.0/max_images=2',
                         data_dir=data_dir)
  assert builder.builder_config.name == 'folder_first2'
  assert builder.info.splits.total_num_examples == 2  # not 3
  with pytest.raises(ValueError, match='max_images must be positive'):
    face_photos.first_images_config(face_photos.FacePhotos, 'folder', 0)
