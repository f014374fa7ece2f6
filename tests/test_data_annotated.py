"""The PNCC-annotated dataset: round trip and resume after interruption."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pnccface.data import annotated


def _examples(n, size=16):
  rng = np.random.default_rng(0)
  for i in range(n):
    yield {'image': np.full((size, size, 3), i / 255.0, np.float32),
           'landmarks_2d': rng.uniform(0, size, (68, 2)).astype(np.float32),
           'landmark_weights': np.ones(68, np.float32)}


def _predict(images):
  return 1.0 - images  # a stand-in PNCC predictor, checked per example


def test_round_trip_in_order(tmp_path):
  count = annotated.write_annotated(_examples(10), _predict, tmp_path,
                                    shard_size=4, provenance={'source': 'x'})
  assert count == 10
  assert annotated.read_manifest(tmp_path)['num_shards'] == 3
  rows = list(tfds.as_numpy(annotated.read_annotated(tmp_path)))
  expected = list(_examples(10))
  assert len(rows) == 10
  for i, (row, want) in enumerate(zip(rows, expected)):
    assert row['image'][0, 0, 0] == pytest.approx(i / 255.0, abs=1e-6)
    np.testing.assert_allclose(row['pncc'], 1.0 - row['image'], atol=1 / 255)
    np.testing.assert_allclose(row['landmarks_2d'], want['landmarks_2d'])


def test_interrupted_annotation_resumes_without_redoing_shards(tmp_path):
  calls = []

  def failing_after_two(images):
    calls.append(len(images))
    if len(calls) == 3:
      raise KeyboardInterrupt
    return _predict(images)

  with pytest.raises(KeyboardInterrupt):
    annotated.write_annotated(_examples(10), failing_after_two, tmp_path,
                              shard_size=4)
  assert annotated.completed_shards(tmp_path) == 2
  with pytest.raises(FileNotFoundError, match='not a finished'):
    annotated.read_annotated(tmp_path)
  resumed = []
  count = annotated.write_annotated(
      _examples(10), lambda x: (resumed.append(len(x)), _predict(x))[1],
      tmp_path, shard_size=4)
  assert count == 10 and resumed == [2]  # only the last shard was predicted
  rows = list(tfds.as_numpy(annotated.read_annotated(tmp_path)))
  assert [round(r['image'][0, 0, 0] * 255) for r in rows] == list(range(10))


def test_wrong_prediction_shape_is_reported(tmp_path):
  with pytest.raises(ValueError, match='predict_pncc returned'):
    annotated.write_annotated(_examples(3), lambda x: x[..., :1], tmp_path)
