"""The PNCC-annotated dataset that links stage 1 to stage 2.

Format (a folder):
  shard-00000.tfrecord, shard-00001.tfrecord, ...: tf.train.Example records
    with `image` and `pncc` (PNG-encoded uint8 [S, S, 3]), `landmarks_2d`
    (68 x 2 float32, crop pixels) and `landmark_weights` (68 float32);
    every shard but the last holds exactly `shard_size` examples, in the
    order of the source.
  manifest.json: {"num_examples", "image_size", "shard_size", "num_shards",
    "complete", plus free-form provenance (source dataset, checkpoint)}.

Writing is resumable: each shard is written to a temporary name and renamed
when complete, so a restart keeps finished shards, skips that many source
examples and goes on. `read_annotated` returns examples in the `pipeline`
face format, so stage 2 reads it like any other dataset.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Callable, Iterable, Iterator, Mapping

from absl import logging
import numpy as np
import tensorflow as tf

MANIFEST = 'manifest.json'
_SHARD = 'shard-{:05d}.tfrecord'


def _png(image01: np.ndarray) -> bytes:
  pixels = np.round(np.clip(image01, 0.0, 1.0) * 255).astype(np.uint8)
  return tf.io.encode_png(pixels).numpy()


def _serialize(example: Mapping[str, np.ndarray]) -> bytes:
  def floats(x):
    return tf.train.Feature(float_list=tf.train.FloatList(
        value=np.asarray(x, np.float32).ravel()))

  def png(x):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(x)]))

  features = {'image': png(example['image']), 'pncc': png(example['pncc']),
              'landmarks_2d': floats(example['landmarks_2d']),
              'landmark_weights': floats(example['landmark_weights'])}
  return tf.train.Example(features=tf.train.Features(
      feature=features)).SerializeToString()


def _batches(examples: Iterator[Mapping], size: int) -> Iterator[list]:
  batch = []
  for example in examples:
    batch.append(example)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def completed_shards(directory: pathlib.Path) -> int:
  """Number of consecutive finished shards from shard 0."""
  count = 0
  while (directory / _SHARD.format(count)).is_file():
    count += 1
  return count


def write_annotated(examples: Iterable[Mapping[str, np.ndarray]],
                    predict_pncc: Callable[[np.ndarray], np.ndarray],
                    directory, *, shard_size: int = 1024,
                    num_examples: int | None = None,
                    provenance: Mapping | None = None) -> int:
  """Runs `predict_pncc` over `examples` and writes the annotated dataset.

  Args:
    examples: face-format examples (image [S, S, 3] float in [0, 1],
      landmarks_2d [68, 2], landmark_weights [68]), in a deterministic order
      (resuming skips the ones already written).
    predict_pncc: [B, S, S, 3] images -> [B, S, S, 3] PNCC in [0, 1]; called
      once per shard.
    directory: output folder (created).
    shard_size: examples per shard (also the prediction batch).
    num_examples: total, for the progress line (optional).
    provenance: extra manifest entries (source dataset, checkpoint...).

  Returns:
    The number of examples in the finished dataset.
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  manifest = directory / MANIFEST
  if manifest.is_file() and json.loads(manifest.read_text())['complete']:
    logging.info('annotation: %s is complete, nothing to do', directory)
    return json.loads(manifest.read_text())['num_examples']
  done = completed_shards(directory)
  iterator = iter(examples)
  for _ in range(done * shard_size):
    next(iterator)
  if done:
    logging.info('annotation: resuming after %d finished shards', done)
  written, image_size, start = done * shard_size, None, time.time()
  shard = done
  for shard, batch in enumerate(_batches(iterator, shard_size), start=done):
    images = np.stack([e['image'] for e in batch]).astype(np.float32)
    image_size = images.shape[1]
    pncc = np.asarray(predict_pncc(images))
    if pncc.shape != images.shape:
      raise ValueError(f'predict_pncc returned {pncc.shape} for images of '
                       f'shape {images.shape}')
    path = directory / _SHARD.format(shard)
    partial = path.with_suffix('.partial')
    with tf.io.TFRecordWriter(str(partial)) as writer:
      for example, predicted in zip(batch, pncc):
        writer.write(_serialize(dict(example, pncc=predicted)))
    partial.rename(path)
    written += len(batch)
    rate = (written - done * shard_size) / max(time.time() - start, 1e-9)
    eta = ('' if num_examples is None else
           f', ETA {(num_examples - written) / max(rate, 1e-9):.0f} s')
    logging.info('annotation: %d%s examples written (%.1f/s%s)', written,
                 '' if num_examples is None else f'/{num_examples}', rate, eta)
  manifest.write_text(json.dumps(dict(
      provenance or {}, num_examples=written, image_size=image_size,
      shard_size=shard_size, num_shards=shard + 1 if written else 0,
      complete=True), indent=2))
  return written


def _parse(record, image_size: int) -> dict[str, tf.Tensor]:
  spec = {'image': tf.io.FixedLenFeature([], tf.string),
          'pncc': tf.io.FixedLenFeature([], tf.string),
          'landmarks_2d': tf.io.FixedLenFeature([68, 2], tf.float32),
          'landmark_weights': tf.io.FixedLenFeature([68], tf.float32)}
  parsed = tf.io.parse_single_example(record, spec)
  out = {}
  for key in ('image', 'pncc'):
    pixels = tf.io.decode_png(parsed[key], channels=3)
    pixels = tf.ensure_shape(pixels, [image_size, image_size, 3])
    out[key] = tf.image.convert_image_dtype(pixels, tf.float32)
  out['landmarks_2d'] = parsed['landmarks_2d']
  out['landmark_weights'] = parsed['landmark_weights']
  return out


def read_manifest(directory) -> dict:
  path = pathlib.Path(directory) / MANIFEST
  if not path.is_file():
    raise FileNotFoundError(
        f'{path} not found: {directory} is not a finished annotated dataset '
        '(run launch/annotate.py to write or finish it)')
  return json.loads(path.read_text())


def read_annotated(directory) -> tf.data.Dataset:
  """The annotated dataset as face-format examples, in order."""
  manifest = read_manifest(directory)
  files = [str(pathlib.Path(directory) / _SHARD.format(k))
           for k in range(manifest['num_shards'])]
  return tf.data.TFRecordDataset(files).map(
      lambda r: _parse(r, manifest['image_size']),
      num_parallel_calls=tf.data.AUTOTUNE).apply(
          tf.data.experimental.assert_cardinality(manifest['num_examples']))
