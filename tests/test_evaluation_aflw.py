"""Sparse 68-landmark NME on the 60 shared AFLW2000-3D samples."""

import pathlib

import numpy as np
import pytest

from pnccface import facemodel
from pnccface.data import crop
from pnccface.evaluation import aflw


@pytest.fixture(scope='module')
def release():
  from tests.conftest import SHARED_DATA  # pylint: disable=g-import-not-at-top
  if not (SHARED_DATA / 'aflw2000_3d_sample').is_dir():
    pytest.skip('shared data absent')
  params = aflw.read_release(SHARED_DATA / 'aflw2000_3d_sample')
  sparse = facemodel.load_3ddfa_sparse_model(SHARED_DATA / '3ddfa')
  return params, sparse


def test_landmarks_rebuilt_from_parameters_score_near_zero(release):
  params, sparse = release
  result = aflw.evaluate_landmarks(aflw.posed_landmarks(params, sparse),
                                   params)
  # Only the truncated 40/10 basis separates them from pt3d_68 (measured
  # 0.857% overall).
  assert result['overall'] < 0.012, result
  assert result['count [0,30]'] + result['count (30,60]'] + result[
      'count (60,90]'] == 60


def test_mean_face_with_true_pose_is_a_sensible_nonzero_baseline(release):
  params, sparse = release
  rebuilt = aflw.evaluate_landmarks(aflw.posed_landmarks(params, sparse),
                                    params)
  mean_face = aflw.evaluate_landmarks(
      aflw.posed_landmarks(params, sparse, use_coefficients=False), params)
  # Identity and expression matter, but pose explains most of the landmark
  # layout: between the rebuilt faces and a wrong pose (> 10%).
  assert rebuilt['overall'] * 2 < mean_face['overall'] < 0.08, mean_face
  shuffled = aflw.evaluate_landmarks(
      np.roll(aflw.posed_landmarks(params, sparse), 1, axis=0), params)
  assert shuffled['overall'] > 0.1


def test_predict_on_crops_maps_back_to_the_image(release):
  params, _ = release
  gt, _ = aflw.ground_truth(params[:5])
  folder = pathlib.Path(params[0].path).parent

  def oracle(images):  # the true landmarks in crop pixels (one batch of 5)
    assert images.shape == (5, 64, 64, 3) and images.max() <= 1
    return np.stack([
        crop.transform_points(points, crop.box_from_points(points, 0.2), 64)
        for points in gt])

  predicted = aflw.predict_on_crops(folder, params[:5], oracle, crop_size=64)
  np.testing.assert_allclose(predicted, gt, atol=1e-3)


def test_release_in_aflw2000_subfolder_and_corrupt_jpg_named(shared_data,
                                                            tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  from pnccface.data import aflw2000_3d  # pylint: disable=g-import-not-at-top
  source = sorted((shared_data / 'aflw2000_3d_sample').glob('image*.jpg'))[:2]
  folder = tmp_path / 'AFLW2000'
  folder.mkdir()
  for jpg in source:
    shutil.copy(jpg, folder)
    shutil.copy(jpg.with_suffix('.mat'), folder)
  params = aflw.read_release(tmp_path)  # the zip's layout: AFLW2000/
  assert len(params) == 2
  bad = folder / source[1].name
  bad.write_bytes(bad.read_bytes()[:100])
  with pytest.raises(aflw2000_3d.CorruptImageError,
                     match=source[1].stem + r'\.jpg'):
    aflw.predict_on_crops(tmp_path, params, lambda x: x, crop_size=32)
