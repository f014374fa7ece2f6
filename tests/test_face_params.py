"""Tests of pnccface.facemodel.params on real 300W-LP / AFLW2000-3D files."""

import dataclasses
import glob

import numpy as np
import pytest
import scipy.io

from pnccface import geometry
from pnccface.facemodel import loading
from pnccface.facemodel import params


def _aflw_files(shared_data):
  files = sorted(glob.glob(str(shared_data / 'aflw2000_3d_sample' / '*.mat')))
  assert len(files) == 60
  return files


def test_reads_every_aflw2000_sample(shared_data):
  for path in _aflw_files(shared_data):
    fit = params.read_face_params(path)
    raw = scipy.io.loadmat(path)
    assert fit.path == path
    assert fit.pose_para.shape == (7,)
    assert fit.shape_para.shape == (199,)
    assert fit.exp_para.shape == (29,)
    assert fit.pt2d.shape == (2, 21)
    assert fit.pt3d_68.shape == (3, 68)
    assert fit.roi.shape == (4,)
    assert fit.tex_para.shape == (199,)
    assert fit.illum_para.shape == (10,)
    assert fit.color_para.shape == (7,)
    np.testing.assert_array_equal(fit.pose_para, raw['Pose_Para'][0])
    np.testing.assert_array_equal(fit.shape_para, raw['Shape_Para'][:, 0])
    np.testing.assert_array_equal(fit.exp_para, raw['Exp_Para'][:, 0])
    np.testing.assert_array_equal(fit.pt3d_68, raw['pt3d_68'])
    np.testing.assert_array_equal(fit.roi, raw['roi'][0])


def test_reads_300w_lp_sample(shared_data):
  path = shared_data / '300w_lp_sample' / 'IBUG_image_008_1_0.mat'
  fit = params.read_face_params(path)
  assert fit.pt2d.shape == (2, 68)
  assert fit.pt3d_68 is None and fit.landmarks_image_xy() is None
  assert fit.shape_para.shape == (199,) and fit.exp_para.shape == (29,)
  raw = scipy.io.loadmat(path)
  assert fit.yaw_degrees == pytest.approx(np.degrees(raw['Pose_Para'][0, 1]))


def test_angles_camera_and_landmarks(shared_data):
  path = _aflw_files(shared_data)[3]
  fit = params.read_face_params(path)
  raw = scipy.io.loadmat(path)['Pose_Para'][0].astype(np.float64)
  assert fit.pitch_degrees == pytest.approx(np.degrees(raw[0]))
  assert fit.yaw_degrees == pytest.approx(np.degrees(raw[1]))
  assert fit.roll_degrees == pytest.approx(np.degrees(raw[2]))
  camera = fit.weak_perspective()
  np.testing.assert_allclose(
      camera.rotation, geometry.euler_to_rotation(*raw[:3]), atol=1e-6)
  assert float(camera.scale) == pytest.approx(raw[6], rel=1e-6)
  np.testing.assert_allclose(camera.translation, raw[3:6], rtol=1e-6)
  np.testing.assert_allclose(fit.landmarks_image_xy(),
                             fit.pt3d_68[:2].T - 0.5)


def test_record_is_frozen(shared_data):
  fit = params.read_face_params(_aflw_files(shared_data)[0])
  with pytest.raises(dataclasses.FrozenInstanceError):
    fit.pose_para = np.zeros(7)
  with pytest.raises(ValueError):
    fit.shape_para[0] = 1.0


def _write_params(path, drop=(), **overrides):
  contents = {
      'Pose_Para': np.zeros((1, 7), np.float32),
      'Shape_Para': np.zeros((199, 1)),
      'Exp_Para': np.zeros((29, 1)),
      'pt2d': np.zeros((2, 68)),
  }
  contents.update(overrides)
  for key in drop:
    del contents[key]
  scipy.io.savemat(str(path), contents)
  return path


def test_optional_keys_absent(tmp_path):
  fit = params.read_face_params(_write_params(tmp_path / 'a.mat'))
  assert fit.pt3d_68 is None and fit.roi is None and fit.tex_para is None
  assert fit.illum_para is None and fit.color_para is None


@pytest.mark.parametrize('key', ['Pose_Para', 'Shape_Para', 'Exp_Para', 'pt2d'])
def test_missing_key_names_file_and_key(tmp_path, key):
  path = _write_params(tmp_path / 'missing.mat', drop=(key,))
  with pytest.raises(loading.FaceFileError, match=key) as info:
    params.read_face_params(path)
  assert 'missing.mat' in str(info.value)


@pytest.mark.parametrize('key, value', [
    ('Shape_Para', np.zeros((198, 1))),
    ('Pose_Para', np.zeros((1, 6))),
    ('Exp_Para', np.zeros((29, 2))),
    ('pt3d_68', np.zeros((2, 68))),
])
def test_wrong_shape_names_file_and_key(tmp_path, key, value):
  path = _write_params(tmp_path / 'bad.mat', **{key: value})
  with pytest.raises(loading.FaceFileError, match=key) as info:
    params.read_face_params(path)
  assert 'bad.mat' in str(info.value)


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere.mat'):
    params.read_face_params(tmp_path / 'nowhere.mat')
