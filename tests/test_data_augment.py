"""Augmentation: the flipped PNCC is the mirrored mesh's, geometry agrees,
draws depend on (seed, step) only, and resuming a batch source is exact."""

import jax
import numpy as np
import pytest

from pnccface import render
from pnccface.data import augment
from pnccface.data import pipeline
from pnccface.data import synthesis
from pnccface.facemodel import procedural

SIZE = 64
MIRROR = procedural.model_info().mirror_index
FLIP_ONLY = augment.Augmentation(flip=1.0, scale=0.0, translate=0.0,
                                 brightness=0.0, contrast=0.0, saturation=0.0)


@pytest.fixture(scope='module')
def faces():
  """Two posed faces and their mirror images: screen vertices, PNCC, mask.

  The mirror image is the mesh with x -> W - x, each vertex coloured with
  the model's NCC of its mirror partner (the mirrored face's own code).
  One jitted render of all four keeps the module to one compile.
  """
  model = procedural.default_model()
  params = synthesis.sample_face_params(
      np.random.default_rng(3), model, 2, SIZE,
      synthesis.SamplingRanges(yaw_degrees=60))
  screen = np.asarray(synthesis.face_vertices_screen(
      model, params.shape, params.expression, params.pose_para, SIZE))
  mirrored = screen.copy()
  mirrored[..., 0] = SIZE - screen[..., 0]
  ncc = np.asarray(model.ncc)
  codes = np.stack([ncc, ncc, ncc[MIRROR], ncc[MIRROR]])
  render_fn = jax.jit(lambda v, c: render.render_pncc(v, model.triangles, c,
                                                      SIZE, SIZE))
  pncc, mask = jax.device_get(render_fn(
      np.concatenate([screen, mirrored]), codes))
  return {'model': model, 'screen': screen, 'mirrored': mirrored,
          'pncc': pncc[:2], 'mask': mask[:2], 'mirror_pncc': pncc[2:],
          'mirror_mask': mask[2:]}


def test_flipped_pncc_equals_a_render_of_the_mirrored_mesh(faces):
  pncc, mask = faces['pncc'], faces['mask']
  batch = {'image': np.random.default_rng(0).uniform(size=pncc.shape),
           'pncc': pncc, 'mask': mask}
  flipped = augment.apply(batch, augment.draw(FLIP_ONLY, 2, 0, 0))
  reference, reference_mask = faces['mirror_pncc'], faces['mirror_mask']
  agree = (flipped['mask'] == reference_mask)[..., 0]
  assert agree.mean() > 0.995  # ties on triangle edges may differ
  assert reference_mask.sum() > 500
  both = agree & (reference_mask[..., 0] == 1)
  error = np.abs(flipped['pncc'] - reference)[both]
  # The model is symmetric up to its mesh resolution: the mirror partner's
  # code is 1 - x to a small tolerance; median far below it.
  assert np.median(error) < 2e-3 and np.percentile(error, 99) < 0.03, (
      np.median(error), np.percentile(error, 99))
  assert np.all(flipped['pncc'][flipped['mask'][..., 0] == 0] == 0)
  # Without the flip the x-channel would be far off: the test can fail.
  unflipped_x = np.abs(pncc[:, :, ::-1, 0] - reference[..., 0])[both]
  assert np.median(unflipped_x) > 0.05, np.median(unflipped_x)


def test_flip_reindexes_landmarks_as_the_mirrored_face(faces):
  model, screen = faces['model'], faces['screen']
  landmarks = np.asarray(model.landmarks(screen))[..., :2]
  batch = {'image': np.zeros((2, SIZE, SIZE, 3), np.float32),
           'landmarks_2d': landmarks,
           'landmark_weights': np.tile(np.arange(68, dtype=np.float32), (2, 1))}
  out = augment.apply(batch, augment.draw(FLIP_ONLY, 2, 0, 0))
  # Landmarks of the mirrored mesh: landmark k is the mirror partner of the
  # vertex of landmark k.
  indices = np.asarray(model.landmark_indices)
  expected = faces['mirrored'][:, MIRROR[indices], :2]
  np.testing.assert_allclose(out['landmarks_2d'], expected, atol=1e-3)
  np.testing.assert_array_equal(out['landmark_weights'][0],
                                augment.IBUG68_FLIP)
  # Eye centres (CelebA) are the means of the eyes' six landmarks: they
  # follow the re-indexed landmarks, viewer's left first.
  centres = np.stack([landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1)],
                     axis=1)
  out = augment.apply({'image': batch['image'], 'eye_centres': centres},
                      augment.draw(FLIP_ONLY, 2, 0, 0))
  np.testing.assert_allclose(
      out['eye_centres'], np.stack([expected[:, 36:42].mean(1),
                                    expected[:, 42:48].mean(1)], axis=1),
      atol=1e-3)


def test_similarity_moves_pixels_with_the_landmarks():
  # A Gaussian blob at a landmark follows that landmark through the warp.
  y, x = np.mgrid[:SIZE, :SIZE] + 0.5
  point = np.array([20.0, 41.0])
  blob = np.exp(-((x - point[0])**2 + (y - point[1])**2) / 8.0)
  image = np.repeat(blob[None, :, :, None], 3, axis=-1).astype(np.float32)
  landmarks = np.zeros((1, 68, 2), np.float32)
  landmarks[0, 30] = point
  aug = augment.Augmentation(flip=0.0, scale=0.3, translate=0.1,
                             rotate_degrees=40, brightness=0.0, contrast=0.0,
                             saturation=0.0)
  for step in range(3):
    draws = augment.draw(aug, 1, seed=1, step=step)
    out = augment.apply({'image': image, 'landmarks_2d': landmarks}, draws)
    warped = out['image'][0, ..., 0]
    centroid = np.array([(warped * x).sum(), (warped * y).sum()]) / warped.sum()
    np.testing.assert_allclose(centroid, out['landmarks_2d'][0, 30], atol=0.05)


def test_colour_jitter_leaves_the_pncc_alone(faces):
  pncc, mask = faces['pncc'], faces['mask']
  aug = augment.Augmentation(flip=0.0, scale=0.0, translate=0.0)
  image = np.full_like(pncc, 0.5)
  out = augment.apply({'image': image, 'pncc': pncc, 'mask': mask},
                      augment.draw(aug, 2, seed=0, step=0))
  np.testing.assert_allclose(out['pncc'], pncc, atol=1e-6)
  assert not np.allclose(out['image'], image)


def test_draws_depend_on_seed_and_step_only():
  aug = augment.Augmentation()
  a = augment.draw(aug, 8, seed=4, step=11)
  b = augment.draw(aug, 8, seed=4, step=11)
  c = augment.draw(aug, 8, seed=4, step=12)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.scale, c.scale)


@pytest.mark.parametrize('streamed', [False, True])
def test_augmented_batch_source_resumes_exactly(faces, streamed):
  pncc = np.concatenate([faces['pncc'], faces['mirror_pncc']])
  mask = np.concatenate([faces['mask'], faces['mirror_mask']])
  rng = np.random.default_rng(0)
  arrays = {'image': rng.uniform(size=pncc.shape).astype(np.float32),
            'pncc': pncc, 'mask': mask,
            'landmarks_2d': rng.uniform(0, SIZE, (4, 68, 2)).astype(np.float32),
            'landmark_weights': np.ones((4, 68), np.float32)}
  data = arrays
  if streamed:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    data = tf.data.Dataset.from_tensor_slices(arrays)
  source = pipeline.batch_source(data, 2, seed=5, num_devices=1,
                                 augmentation=augment.Augmentation())
  plain = pipeline.batch_source(data, 2, seed=5, num_devices=1)
  run = [b for b, _ in zip(source(0), range(5))]
  resumed = [b for b, _ in zip(source(3), range(2))]
  for a, b in zip(run[3:], resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  first_plain = next(plain(0))
  assert not np.allclose(run[0]['image'], first_plain['image'])


def test_from_config():
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict()
  assert augment.from_config(config) == augment.Augmentation()
  config.augment = {'enabled': False}
  assert augment.from_config(config) is None
  config.augment = {'flip': 0.0, 'rotate_degrees': 45.0}
  assert augment.from_config(config) == augment.Augmentation(
      flip=0.0, rotate_degrees=45.0)
  config.augment = {'flips': 0.5}
  with pytest.raises(ValueError, match='flips'):
    augment.from_config(config)
