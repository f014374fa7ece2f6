"""The AFLW2000-3D builder on the 60 shared real samples."""

import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pnccface.data import aflw2000_3d
from pnccface.data import pipeline


@pytest.fixture(scope='module')
def aflw_examples(tmp_path_factory):
  from tests.conftest import SHARED_DATA  # pylint: disable=g-import-not-at-top
  folder = SHARED_DATA / 'aflw2000_3d_sample'
  if not folder.is_dir():
    pytest.skip(f'{folder} not found')
  data_dir = tmp_path_factory.mktemp('tfds')
  ds = pipeline.load_split('aflw2000_3d', 'test', data_dir=str(data_dir),
                           manual_dir=str(folder))
  return list(tfds.as_numpy(ds))


def test_builder_reads_all_samples_with_their_fits(aflw_examples, shared_data):
  assert len(aflw_examples) == 60
  example = min(aflw_examples, key=lambda e: e['name'])
  assert example['name'] == b'image00002'
  assert example['image'].shape == (450, 450, 3)
  from pnccface.facemodel import read_face_params  # pylint: disable=g-import-not-at-top
  params = read_face_params(shared_data / 'aflw2000_3d_sample' /
                            'image00002.mat')
  np.testing.assert_allclose(example['landmarks_3d'][:, :2],
                             params.pt3d_68[:2].T - 0.5, atol=1e-3)
  np.testing.assert_allclose(example['shape_para'], params.shape_para,
                             rtol=1e-6)


def test_yaw_matches_3ddfa_pose_files(aflw_examples, shared_data):
  """Index mapping: entry i of 3DDFA's 2000-entry arrays is the i-th file of
  AFLW2000-3D in sorted name order; the shared samples are entries 33*k."""
  names = sorted(e['name'].decode() for e in aflw_examples)
  by_name = {e['name'].decode(): e for e in aflw_examples}
  indices = 33 * np.arange(len(names))
  pts68 = np.load(shared_data / '3ddfa' / 'AFLW2000-3D.pts68.npy')
  for name, index in zip(names, indices):
    np.testing.assert_allclose(by_name[name]['landmarks_3d'][:, :2] + 0.5,
                               pts68[index, :2].T, atol=1e-3)
  yaw = np.array([by_name[n]['pose']['yaw'] for n in names])
  signed = np.load(shared_data / '3ddfa' / 'AFLW2000-3D.pose.npy')[indices]
  wrapped = (signed + 180.0) % 360.0 - 180.0
  # Our yaw is read back from the rotation; equal to the file's raw yaw
  # except where the raw Euler triple is out of range (one sample here).
  agree = np.abs(yaw - wrapped) < 1e-3
  assert agree.sum() >= 58, np.c_[yaw, wrapped][~agree]
  # AFLW2000-3D-new.pose.npy: absolute yaw from AFLW's own labels, which
  # 3DDFA's benchmark bins by; close to, not equal to, the fitted yaw.
  new = np.load(shared_data / '3ddfa' / 'AFLW2000-3D-new.pose.npy')[indices]
  gap = np.abs(np.abs(yaw) - new)
  assert np.median(gap) < 6.0, np.median(gap)
  assert np.corrcoef(np.abs(yaw), new)[0, 1] > 0.9


def test_corrupt_image_error_names_the_file(tmp_path, shared_data):
  source = shared_data / 'aflw2000_3d_sample'
  shutil.copy(source / 'image00002.mat', tmp_path / 'image00002.mat')
  (tmp_path / 'image00002.jpg').write_bytes(b'\xff\xd8 not a jpeg')
  with pytest.raises(aflw2000_3d.CorruptImageError, match='image00002.jpg'):
    aflw2000_3d.read_example(tmp_path / 'image00002.jpg')


def test_missing_release_is_explained(tmp_path):
  with pytest.raises(FileNotFoundError, match='AFLW2000-3D.zip'):
    aflw2000_3d.find_release_folder(pathlib.Path(tmp_path))
