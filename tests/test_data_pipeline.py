"""Input pipelines: few-shot subsets, seekable batches, pmap-shaped output."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from pnccface.data import augment as augment_lib
from pnccface.data import pipeline


def test_few_shot_indices_are_deterministic_sorted_and_nested():
  a = pipeline.few_shot_indices(1000, 50, seed=3)
  b = pipeline.few_shot_indices(1000, 50, seed=3)
  np.testing.assert_array_equal(a, b)
  assert len(np.unique(a)) == 50 and np.all(np.diff(a) > 0)
  assert set(a) <= set(pipeline.few_shot_indices(1000, 200, seed=3))
  assert not np.array_equal(a, pipeline.few_shot_indices(1000, 50, seed=4))
  expected = np.sort(np.random.default_rng(3).permutation(1000)[:50])
  np.testing.assert_array_equal(a, expected)
  with pytest.raises(ValueError, match='50 samples out of 10'):
    pipeline.few_shot_indices(10, 50, seed=0)


def _arrays(n=37):
  return {'image': np.arange(n, dtype=np.float32)[:, None, None, None] *
                   np.ones((1, 4, 4, 3), np.float32),
          'id': np.arange(n)}


def test_array_batches_seek_exactly_and_cover_each_epoch():
  source = pipeline.array_batch_source(_arrays(), 8, seed=1, num_devices=1)
  straight = [b for _, b in zip(range(10), source(0))]
  resumed = [b for _, b in zip(range(4), source(6))]
  for s, r in zip(straight[6:], resumed):
    np.testing.assert_array_equal(s['id'], r['id'])
  assert straight[0]['image'].shape == (1, 8, 4, 4, 3)
  # 37 examples, batch 8: 4 batches per epoch, 32 distinct examples each.
  epoch = np.concatenate([b['id'].ravel() for b in straight[:4]])
  assert len(np.unique(epoch)) == 32
  np.testing.assert_array_equal(straight[0]['image'][0, :, 0, 0, 0],
                                straight[0]['id'][0])


def test_array_batches_cycle_datasets_smaller_than_a_batch():
  source = pipeline.array_batch_source(_arrays(5), 8, num_devices=1)
  batch = next(source(0))
  assert batch['id'].shape == (1, 8)
  assert set(batch['id'].ravel()) == set(range(5))


def test_array_batches_of_two_processes_concatenate_to_one_process(
    monkeypatch):
  # A face-format batch, so the augmentation (random per example) applies.
  rng = np.random.default_rng(0)
  arrays = {'image': rng.uniform(size=(13, 8, 8, 3)).astype(np.float32),
            'landmarks_2d': rng.uniform(0, 8, (13, 68, 2)).astype(np.float32),
            'landmark_weights': np.ones((13, 68), np.float32)}
  aug = augment_lib.Augmentation()

  def batches(process, count):
    monkeypatch.setattr(pipeline.jax, 'process_index', lambda: process)
    monkeypatch.setattr(pipeline.jax, 'process_count', lambda: count)
    source = pipeline.array_batch_source(arrays, 8, seed=3, num_devices=2,
                                         augmentation=aug)
    return [b for _, b in zip(range(3), source(1))]

  one = batches(0, 1)
  halves = batches(0, 2), batches(1, 2)
  for step, whole in enumerate(one):
    assert whole['image'].shape == (2, 4, 8, 8, 3)
    assert halves[0][step]['image'].shape == (2, 2, 8, 8, 3)
    for key, value in whole.items():
      # Process p holds the p-th half of the global batch, in order.
      flat = value.reshape((8,) + value.shape[2:])
      two = np.concatenate([h[step][key].reshape((4,) + value.shape[2:])
                            for h in halves])
      np.testing.assert_array_equal(two, flat)
  assert not np.array_equal(one[0]['image'], one[1]['image'])


def test_dataset_batches_seek_with_skip():
  ds = tf.data.Dataset.from_tensor_slices(_arrays(50))
  source = pipeline.dataset_batch_source(ds, 10, seed=2, num_devices=1,
                                         shuffle_buffer=64)
  straight = [b['id'] for _, b in zip(range(6), source(0))]
  resumed = [b['id'] for _, b in zip(range(2), source(4))]
  np.testing.assert_array_equal(straight[4], resumed[0])
  np.testing.assert_array_equal(straight[5], resumed[1])


def test_indivisible_batch_is_an_error():
  with pytest.raises(ValueError, match='not divisible'):
    pipeline.array_batch_source(_arrays(), 10, num_devices=4)


def test_batches_are_pmap_shaped_on_four_cpu_devices():
  script = textwrap.dedent("""
      import jax, numpy as np
      from pnccface.data import pipeline
      assert jax.local_device_count() == 4, jax.devices()
      arrays = {'image': np.random.rand(64, 8, 8, 3).astype(np.float32),
                'landmarks_2d': np.random.rand(64, 68, 2).astype(np.float32)}
      batch = next(pipeline.array_batch_source(arrays, 16)(0))
      assert batch['image'].shape == (4, 4, 8, 8, 3), batch['image'].shape
      assert batch['landmarks_2d'].shape == (4, 4, 68, 2)
      out = jax.pmap(lambda x: x.sum())(batch['image'])
      np.testing.assert_allclose(np.asarray(out).sum(), batch['image'].sum(),
                                 rtol=1e-5)
      print('OK')
      """)
  env = dict(os.environ,
             XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', script], env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'OK' in result.stdout
