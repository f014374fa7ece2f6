"""The paper's datasets through `pipeline.face_dataset`, end to end, on
real-format fixtures: the 300W-LP miniset archive with a BFM2009-format model
written here, a CelebA-format folder, the AFLW2000-3D sample."""

import zipfile

import ml_collections
import numpy as np
import pytest
import scipy.io

from pnccface import stages
from pnccface.data import augment
from pnccface.data import crop
from pnccface.data import pipeline
from pnccface.data import real_faces

SIZE = 64


@pytest.fixture(scope='module')
def bfm_path(tmp_path_factory, request):
  """A BFM2009-format folder written from the 3DDFA mean face (real BFM
  geometry; tiny random bases, so the coefficients barely move it)."""
  from tests.conftest import SHARED_DATA  # pylint: disable=g-import-not-at-top
  ddfa = SHARED_DATA / '3ddfa'
  if not ddfa.is_dir():
    pytest.skip('shared data absent')
  folder = tmp_path_factory.mktemp('bfm')
  rng = np.random.default_rng(0)
  u_shp = np.load(ddfa / 'u_shp.npy')
  u_exp = np.load(ddfa / 'u_exp.npy')
  num = u_shp.size
  triangles = scipy.io.loadmat(str(ddfa / 'tri.mat'))['tri']  # [3, T] 1-based
  keypoints = np.load(ddfa / 'keypoints_sim.npy')[::3] // 3
  scipy.io.savemat(str(folder / '01_MorphableModel.mat'), {
      'shapeMU': u_shp, 'shapePC': rng.normal(size=(num, 3)) * 1e-6,
      'shapeEV': np.array([[3.0], [2.0], [1.0]]),
      'texMU': np.full((num, 1), 128.0), 'texPC': np.zeros((num, 2)),
      'texEV': np.array([[1.0], [1.0]]), 'tl': triangles.T.astype(float)})
  scipy.io.savemat(str(folder / 'model_info.mat'), {
      'trimIndex': np.arange(1, num // 3 + 1, dtype=float)[:, None],
      'tri': triangles.astype(float),
      'keypoints': (keypoints + 1).astype(float)[None]})
  scipy.io.savemat(str(folder / 'Model_Exp.mat'), {
      'w_exp': rng.normal(size=(num, 2)) * 1e-6, 'mu_exp': u_exp})
  return str(folder / '01_MorphableModel.mat')


def test_the300w_lp_from_the_archive_with_a_bfm(shared_data, bfm_path):
  config = ml_collections.ConfigDict({
      'dataset': 'the300w_lp', 'manual_dir': str(
          shared_data / '300w_lp_sample'), 'face_model': bfm_path, 'seed': 0})
  arrays = stages._face_arrays(config, 'train', SIZE)  # pylint: disable=protected-access
  assert arrays['image'].shape == (2, SIZE, SIZE, 3)
  mask = arrays['mask'][..., 0]
  assert np.all((mask.mean(axis=(1, 2)) > 0.2) & (mask.mean(axis=(1, 2)) < 0.8))
  assert np.all(arrays['pncc'][mask == 0] == 0)
  # The crop's landmarks are the model's, projected by the files' poses: they
  # lie near the release's own 2D landmarks (mean face, not the identity).
  records = real_faces.list_300w_lp(shared_data / '300w_lp_sample')
  assert [r.name for r in records] == ['AFW/AFW_1051618982_1_0',
                                       'AFW/AFW_56054945_1_0']
  with zipfile.ZipFile(shared_data / '300w_lp_sample' /
                       '300wlp_miniset.zip') as z:
    import io  # pylint: disable=g-import-not-at-top
    for k, record in enumerate(records):
      mat = scipy.io.loadmat(io.BytesIO(z.read(
          f'300W_LP/{record.name}.mat')))
      reference = mat['pt2d'].T - 0.5   # MATLAB 1-based -> image frame
      box = crop.box_from_points(reference, 0.2)
      ref_crop = crop.transform_points(reference, box, SIZE)
      error = np.linalg.norm(arrays['landmarks_2d'][k] - ref_crop, axis=1)
      assert np.median(error) < 0.08 * SIZE, np.median(error)
  # The flipped half: the flip augmentation mirrors the PNCC target.
  flipped = augment.apply(arrays, augment.draw(augment.Augmentation(
      flip=1.0, scale=0, translate=0, brightness=0, contrast=0, saturation=0),
      2, 0, 0))
  np.testing.assert_allclose(flipped['pncc'][..., 0],
                             (mask - arrays['pncc'][..., 0])[:, :, ::-1],
                             atol=1e-5)


def test_the300w_lp_lists_flipped_folders(tmp_path):
  with zipfile.ZipFile(tmp_path / '300W-LP.zip', 'w') as z:
    for name in ('300W_LP/AFW/a_1_0.jpg', '300W_LP/AFW_Flip/a_1_0.jpg',
                 '300W_LP/landmarks/AFW/a_1_0_pts.jpg',
                 '300W_LP/Code/x.jpg', '300W_LP/AFW/a_1_0.mat'):
      z.writestr(name, b'')
  names = [r.name for r in real_faces.list_300w_lp(tmp_path)]
  assert names == ['AFW/a_1_0', 'AFW_Flip/a_1_0']
  with pytest.raises(ValueError, match="only a 'train' split"):
    pipeline.face_dataset('the300w_lp', 'test', manual_dir=str(tmp_path))
  with pytest.raises(ValueError, match='needs a face model'):
    pipeline.face_dataset('the300w_lp', 'train', manual_dir=str(tmp_path))


# CelebA's aligned images put the 5 points near these (full-size) positions.
_CELEBA_TYPICAL = np.array([69, 111, 108, 111, 88, 134, 72, 152, 105, 152])


def test_celeb_a_from_a_release_folder(shared_data, tmp_path):
  (tmp_path / 'img_align_celeba').symlink_to(shared_data / 'celeba_sample')
  rng = np.random.default_rng(0)
  names = [f'{k:06d}.jpg' for k in range(1, 33)]
  points = {n: _CELEBA_TYPICAL + rng.integers(-2, 3, 10) for n in names}
  lines = ['32', 'lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y '
           'leftmouth_x leftmouth_y rightmouth_x rightmouth_y']
  lines += [f'{n} ' + ' '.join(str(v) for v in points[n]) for n in names]
  (tmp_path / real_faces.CELEBA_LANDMARKS_FILE).write_text('\n'.join(lines))
  (tmp_path / real_faces.CELEBA_PARTITION_FILE).write_text('\n'.join(
      f'{n} {0 if k < 24 else 1 if k < 28 else 2}' for k, n in enumerate(names)))
  config = ml_collections.ConfigDict({
      'dataset': 'celeb_a', 'manual_dir': str(tmp_path), 'seed': 0,
      'face_model': 'default'})
  train = stages._face_arrays(config, 'train', SIZE)  # pylint: disable=protected-access
  test = stages._face_arrays(config, 'test', SIZE)  # pylint: disable=protected-access
  assert len(train['image']) == 24 and len(test['image']) == 4
  assert np.all(train['landmark_weights'].sum(axis=1) == 3)
  # Back through the crop, the eye centres and nose are the file's points
  # (0-based pixel indices, i.e. centres at +0.5).
  for k in (0, 5):
    source = points[names[k]].reshape(5, 2) + 0.5
    box = crop.box_from_points(source, 0.9)
    back = crop.inverse_transform_points(train['eye_centres'][k], box, SIZE)
    np.testing.assert_allclose(back, source[:2], atol=1e-3)
    np.testing.assert_allclose(crop.inverse_transform_points(
        train['landmarks_2d'][k, 30], box, SIZE), source[2], atol=1e-3)
  assert real_faces.EYE_LANDMARKS == (tuple(range(36, 42)),
                                      tuple(range(42, 48)))


def test_aflw2000_3d_for_evaluation_with_dense_ground_truth(
    shared_data, bfm_path, tmp_path):
  model = stages.load_face_model(bfm_path)
  arrays = pipeline.face_dataset(
      'aflw2000_3d', 'test[:3]', data_dir=str(tmp_path),
      manual_dir=str(shared_data / 'aflw2000_3d_sample'),
      face_model=model, image_size=SIZE)
  assert arrays['image'].shape == (3, SIZE, SIZE, 3)
  assert arrays['vertices_screen'].shape == (3, 53215, 3)
  # Dense ground truth: the model's landmarks on the dense vertices are near
  # the release's 68 landmarks in the crop (3DDFA's fit, mean face here).
  dense_landmarks = np.asarray(model.landmarks(arrays['vertices_screen']))
  error = np.linalg.norm(dense_landmarks[..., :2] - arrays['landmarks_2d'],
                         axis=-1)
  assert np.median(error) < 0.08 * SIZE, np.median(error)
  assert np.all(arrays['mask'].mean(axis=(1, 2, 3)) > 0.2)
  # Without a model: crops and landmarks only.
  plain = pipeline.face_dataset(
      'aflw2000_3d', 'test[:3]', data_dir=str(tmp_path),
      manual_dir=str(shared_data / 'aflw2000_3d_sample'), image_size=SIZE)
  assert set(plain) == {'image', 'landmarks_2d', 'landmark_weights',
                        'yaw_degrees'}
  np.testing.assert_allclose(plain['landmarks_2d'], arrays['landmarks_2d'])
