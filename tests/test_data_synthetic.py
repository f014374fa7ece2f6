"""synthetic_faces: builds offline, stores what it rendered, deterministic."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from pnccface import facemodel
from pnccface.data import pipeline
from pnccface.data import synthesis


@pytest.fixture(scope='module')
def tiny_test_split(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  import pnccface.data.synthetic_faces  # pylint: disable=g-import-not-at-top,unused-import
  ds = tfds.load('synthetic_faces/tiny', split='test', data_dir=str(data_dir))
  return list(tfds.as_numpy(ds))


def test_tiny_builds_offline_with_all_features(tiny_test_split):
  assert len(tiny_test_split) == 32
  example = tiny_test_split[0]
  assert example['image'].shape == (128, 128, 3)
  assert example['image'].dtype == np.uint8
  assert example['pncc'].shape == (128, 128, 3)
  assert example['mask'].shape == (128, 128, 1)
  assert example['landmarks_2d'].shape == (68, 2)
  assert example['pose_para'].shape == (7,)
  yaws = np.array([e['pose']['yaw'] for e in tiny_test_split])
  assert np.all(np.abs(yaws) <= 90) and yaws.std() > 20


def test_stored_pncc_equals_a_fresh_render_of_stored_parameters(
    tiny_test_split):
  model = facemodel.default_model()
  rows = tiny_test_split[:8]
  shape, expression, pose = (np.stack([r[k] for r in rows]) for k in
                             ('shape', 'expression', 'pose_para'))
  screen = synthesis.face_vertices_screen(model, shape, expression, pose, 128)
  from pnccface import render  # pylint: disable=g-import-not-at-top
  pncc, mask = jax.device_get(render.render_pncc(
      screen, model.triangles, model.ncc, 128, 128))
  stored_pncc = np.stack([r['pncc'] for r in rows]) / 255.0
  stored_mask = np.stack([r['mask'] for r in rows]) / 255.0
  assert (stored_mask == mask).mean() > 0.999
  close = np.abs(stored_pncc - pncc).max(axis=-1) <= 0.5 / 255 + 1e-6
  assert close.mean() > 0.999
  # The stored landmarks are the model's landmark vertices, re-projected.
  np.testing.assert_allclose(
      np.stack([r['landmarks_3d'] for r in rows]),
      np.asarray(model.landmarks(screen)), atol=1e-3)


def test_landmarks_project_onto_the_rendered_face(tiny_test_split):
  inside = []
  for row in tiny_test_split:
    mask = row['mask'][..., 0] > 0
    ij = np.floor(row['landmarks_2d']).astype(int)
    valid = np.all((ij >= 0) & (ij < 128), axis=1)
    ok = np.zeros(68, bool)
    ok[valid] = mask[ij[valid, 1], ij[valid, 0]]
    inside.append(ok)
  inside = np.array(inside)
  # Occluded landmarks at large yaw may sit just past the silhouette.
  assert inside.mean() > 0.95, inside.mean()
  assert inside[:, 27:].mean() > 0.97  # inner-face points


def test_sampling_is_deterministic_given_the_seed():
  model = facemodel.default_model()
  a = synthesis.sample_face_params(np.random.default_rng([0, 2]), model, 4, 128)
  b = synthesis.sample_face_params(np.random.default_rng([0, 2]), model, 4, 128)
  c = synthesis.sample_face_params(np.random.default_rng([1, 2]), model, 4, 128)
  for x, y, z in zip(a, b, c):
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z)


def test_face_examples_pipeline_format(tiny_test_split, tmp_path_factory):
  del tiny_test_split  # built already in its data dir; build again is cheap
  data_dir = tmp_path_factory.getbasetemp() / 'tfds0'
  arrays = pipeline.face_dataset('synthetic_faces/tiny', 'validation',
                                 data_dir=str(data_dir))
  assert arrays['image'].shape == (32, 128, 128, 3)
  assert arrays['image'].dtype == np.float32 and arrays['image'].max() <= 1
  assert arrays['mask'].shape == (32, 128, 128, 1)
  assert arrays['landmark_weights'].shape == (32, 68)
  few = pipeline.face_dataset('synthetic_faces/tiny', 'train',
                              data_dir=str(data_dir), num_samples=50,
                              subset_seed=0)
  assert few['image'].shape[0] == 50


def test_plain_name_means_the_default_config(tmp_path):
  # TFDS reads DEFAULT_BUILDER_CONFIG_NAME; without it the first config
  # (tiny, 192 images) would silently stand for 'synthetic_faces'.
  import pnccface.data.synthetic_faces  # pylint: disable=g-import-not-at-top,unused-import
  builder = tfds.builder('synthetic_faces', data_dir=tmp_path)
  assert builder.builder_config.name == 'default'
  assert builder.builder_config.num_examples[0] == 50000
