"""300W-LP PNCC targets and CelebA crops on the shared real files."""

import numpy as np
import scipy.io

from pnccface import facemodel
from pnccface import geometry
from pnccface.data import crop
from pnccface.data import aflw2000_3d
from pnccface.data import real_faces


def _the300w_lp_example(shared_data):
  stem = shared_data / '300w_lp_sample' / 'IBUG_image_008_1_0'
  mat = scipy.io.loadmat(str(stem) + '.mat')
  image = aflw2000_3d.decode_image_bytes(
      (stem.parent / (stem.name + '.jpg')).read_bytes(), str(stem))
  return {'image': image,
          'shape_params': mat['Shape_Para'][:, 0],
          'exp_params': mat['Exp_Para'][:, 0],
          'pose_params': mat['Pose_Para'][0]}, mat


def test_300w_lp_pncc_target_covers_the_annotated_face(shared_data):
  # The 3DDFA mean face (no bases) stands in for the user's BFM: the PNCC
  # is then the mean face under the sample's true pose.
  model = facemodel.load_3ddfa_mean_model(shared_data / '3ddfa')
  example, mat = _the300w_lp_example(shared_data)
  out = real_faces.the300w_lp_face_example(example, model, 128)
  assert out['image'].shape == (128, 128, 3) and out['image'].max() <= 1.0
  assert out['pncc'].shape == (128, 128, 3)
  mask = out['mask'][..., 0]
  assert 0.15 < mask.mean() < 0.8
  # Background is 0, face pixels carry NCC colours in [0, 1].
  assert np.all(out['pncc'][mask == 0] == 0)
  assert out['pncc'][mask == 1].min() >= 0 and out['pncc'].max() <= 1
  # The crop maps the source projection of the landmarks (an independent
  # path through geometry + crop.transform_points).
  height = example['image'].shape[0]
  source = np.asarray(model.landmarks(geometry.weak_perspective_to_screen(
      model.mean_shape,
      geometry.pose_para_to_weak_perspective(example['pose_params']), height)))
  box = crop.box_from_points(source[:, :2], margin=0.2)
  landmarks = out['landmarks_2d']
  np.testing.assert_allclose(
      landmarks, crop.transform_points(source[:, :2], box, 128), atol=0.02)
  # ... and lands near the file's 68 2D landmarks: the mean face lacks the
  # identity, and 300W-LP's 2D contour points follow the silhouette, so a few
  # percent of the box apart (measured 6.0%; 4.9% with the sparse identity).
  reference = mat['pt2d'].T - 0.5
  error = (np.linalg.norm(source[:, :2] - reference, axis=1).mean() /
           np.sqrt(np.prod(np.ptp(reference, axis=0))))
  assert error < 0.08, error
  # Projected landmarks fall on the rendered face.
  ij = np.clip(np.floor(landmarks).astype(int), 0, 127)
  assert mask[ij[:, 1], ij[:, 0]].mean() > 0.9


def test_celeba_crop_centres_the_face(shared_data):
  image = aflw2000_3d.decode_image_bytes(
      (shared_data / 'celeba_sample' / '000001.jpg').read_bytes(), '000001')
  assert image.shape == (218, 178, 3)
  # Aligned CelebA faces put the eyes near rows 111-112 and the mouth near
  # row 150 (the dataset's alignment); hand-typed typical positions.
  landmarks = {'lefteye_x': 69, 'lefteye_y': 111, 'righteye_x': 108,
               'righteye_y': 111, 'nose_x': 88, 'nose_y': 134,
               'leftmouth_x': 72, 'leftmouth_y': 152, 'rightmouth_x': 105,
               'rightmouth_y': 152}
  out = real_faces.celeba_face_example(
      {'image': image, 'landmarks': landmarks}, 64)
  assert out['image'].shape == (64, 64, 3)
  assert out['landmark_weights'].sum() == 3
  nose = out['landmarks_2d'][30]
  assert abs(nose[0] - 32) < 3 and abs(nose[1] - 32) < 6
  np.testing.assert_allclose(
      out['landmarks_2d'][54, 1], out['landmarks_2d'][48, 1], atol=1e-4)
