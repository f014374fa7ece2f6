"""Input pipelines: TFDS splits -> model-ready numpy batches for `jax.pmap`.

Every dataset is mapped to one example format (`FACE_FEATURES`):
  image: [S, S, 3] float32 in [0, 1];
  pncc: [S, S, 3] float32 in [0, 1], 0 on background (absent for CelebA
    until annotated);
  mask: [S, S, 1] float32, 1 on face pixels;
  landmarks_2d: [68, 2] float32 image-frame pixels of the S x S image;
  landmark_weights: [68] float32, 1 where the landmark is known.

Batches are dicts of numpy arrays shaped [num_local_devices, per_device, ...]
(the leading axis is pmap's). Multi-host: each process reads its own shard
(`jax.process_index()` of `jax.process_count()` shards) and the global batch
is split evenly across processes.

Resumable training: `batch_source(...)` returns a callable `start_step ->
iterator`, the protocol of `pnccface.train.common.train_loop`. Small datasets
(few-shot subsets, tiny splits) are held in memory and batch `k` is drawn from
a permutation seeded by (seed, epoch), so seeking is free and exact; larger
ones stream through tf.data with a fixed shuffle seed and `skip`.
"""

from __future__ import annotations

import pathlib
import re
from typing import Callable, Iterator, Mapping

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from pnccface import distributed
from pnccface.data import annotated
from pnccface.data import augment as augment_lib
from pnccface.facemodel import MorphableModel

Batch = dict[str, np.ndarray]
BatchSource = Callable[[int], Iterator[Batch]]

# Datasets held in memory below this many examples (see module docstring).
IN_MEMORY_LIMIT = 20000


def load_split(name: str, split: str, *, data_dir: str | None = None,
               builder_kwargs: Mapping | None = None,
               manual_dir: str | None = None) -> tf.data.Dataset:
  """Builds (if needed, offline for synthetic_faces) and loads a TFDS split.

  Args:
    name: e.g. 'synthetic_faces/tiny', 'aflw2000_3d', 'the300w_lp',
      'celeb_a', or a dataset written by `annotation.write_annotated`.
    split: TFDS split string, e.g. 'train', 'test[:100]'.
    data_dir: TFDS data dir (default: TFDS's, ~/tensorflow_datasets).
    builder_kwargs: extra builder arguments, e.g. {'model': MorphableModel}
      for synthetic_faces.
    manual_dir: where manually downloaded archives are (AFLW2000-3D, ...).
  """
  # Registers the project's builders with TFDS.
  from pnccface.data import aflw2000_3d  # pylint: disable=g-import-not-at-top,unused-import
  from pnccface.data import face_photos  # pylint: disable=g-import-not-at-top,unused-import
  from pnccface.data import fitted_faces  # pylint: disable=g-import-not-at-top,unused-import
  from pnccface.data import synthetic_faces  # pylint: disable=g-import-not-at-top,unused-import,redefined-outer-name
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  # Several processes: built once by process 0 on a shared disk; the others
  # make their builder after it, which then reads the files it wrote.
  with distributed.main_process_first(f'prepare {name}'):
    builder = tfds.builder(name, data_dir=data_dir, **(builder_kwargs or {}))
    builder.download_and_prepare(download_config=download_config)
  read_config = tfds.ReadConfig(shuffle_seed=0, try_autocache=False)
  return builder.as_dataset(split=split, shuffle_files=False,
                            read_config=read_config)


def to_face_example(example: Mapping[str, tf.Tensor],
                    image_size: int | None = None) -> dict[str, tf.Tensor]:
  """Maps a synthetic_faces / annotated example to `FACE_FEATURES`.

  With `image_size`, images are resized (antialiased bilinear; the mask
  becomes fractional at the border) and landmarks scaled to match.
  """
  out = {}
  for key in ('image', 'pncc', 'mask'):
    if key in example:
      out[key] = tf.image.convert_image_dtype(example[key], tf.float32)
  if 'landmarks_2d' in example:
    out['landmarks_2d'] = tf.cast(example['landmarks_2d'], tf.float32)
    out['landmark_weights'] = tf.cast(
        example.get('landmark_weights', tf.ones([68])), tf.float32)
  if image_size is not None:
    source_size = tf.cast(tf.shape(out['image'])[0], tf.float32)
    for key in ('image', 'pncc', 'mask'):
      if key in out:
        out[key] = tf.image.resize(out[key], [image_size, image_size],
                                   antialias=True)
    if 'landmarks_2d' in out:
      out['landmarks_2d'] *= image_size / source_size
  return out


def few_shot_indices(num_examples: int, num_samples: int,
                     seed: int) -> np.ndarray:
  """The few-shot subset: `num_samples` distinct indices, sorted.

  Defined as `sorted(np.random.default_rng(seed).permutation(num_examples)
  [:num_samples])`, so the same (dataset, N, seed) always names the same
  samples, and the subset for N is contained in the one for N' > N.
  """
  if not 0 < num_samples <= num_examples:
    raise ValueError(f'cannot take {num_samples} samples out of '
                     f'{num_examples}')
  permutation = np.random.default_rng(seed).permutation(num_examples)
  return np.sort(permutation[:num_samples])


def to_numpy(dataset: tf.data.Dataset) -> Batch:
  """Reads a whole (small) dataset into stacked numpy arrays."""
  rows = list(tfds.as_numpy(dataset))
  if not rows:
    raise ValueError('the dataset is empty')
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def select(arrays: Batch, indices) -> Batch:
  return {k: v[np.asarray(indices)] for k, v in arrays.items()}


def local_batch_size(global_batch_size: int, num_devices: int) -> int:
  """This process's share of the global batch; checks divisibility."""
  processes = jax.process_count()
  if global_batch_size % (processes * num_devices):
    raise ValueError(
        f'global batch {global_batch_size} is not divisible by '
        f'{processes} processes x {num_devices} local devices')
  return global_batch_size // processes


def shard_for_pmap(batch: Batch, num_devices: int | None = None) -> Batch:
  """[B, ...] -> [num_devices, B / num_devices, ...] (default: the local
  devices); raises naming the key when B is not divisible."""
  num_devices = num_devices or jax.local_device_count()
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if value.shape[0] % num_devices:
      raise ValueError(f'batch[{key!r}] has {value.shape[0]} examples, not '
                       f'divisible by {num_devices} devices')
    out[key] = value.reshape((num_devices, -1) + value.shape[1:])
  return out


def _augmented(batch: Batch, augmentation, seed: int, step: int) -> Batch:
  if augmentation is None:
    return batch
  return augment_lib.augment_batch(batch, augmentation, seed, step,
                                   jax.process_index())


def _process_slice(local: int) -> slice:
  """This process's rows of a global batch: process p takes the p-th
  `local` rows, so device d of process p holds the rows that device
  p * local_devices + d holds in one process (pmap's global device order)."""
  start = jax.process_index() * local
  return slice(start, start + local)


def array_batch_source(arrays: Batch, global_batch_size: int, *, seed: int = 0,
                       num_devices: int | None = None,
                       augmentation: augment_lib.Augmentation | None = None
                       ) -> BatchSource:
  """Endless shuffled batches of in-memory arrays, seekable by step.

  Global batch k is examples `perm_e[(k mod n_per_epoch) * b : ... + b]`
  (b the global batch size), with perm_e = default_rng([seed, e]).permutation,
  e the epoch of step k; an epoch drops its last partial batch. Datasets
  smaller than a batch are cycled within the permutation. With
  `augmentation`, global batch k is augmented with the draws of (seed, k)
  (`augment`). Each process takes its slice of the global batch
  (`_process_slice`; every process holds the small arrays), so the global
  batch, and training, is the same for any number of processes.
  """
  num_devices = num_devices or jax.local_device_count()
  local = local_batch_size(global_batch_size, num_devices)
  mine = _process_slice(local)
  n = len(next(iter(arrays.values())))
  per_epoch = max(n // global_batch_size, 1)

  def batch(step: int) -> Batch:
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    idx = np.resize(perm, max(n, global_batch_size))[
        k * global_batch_size:(k + 1) * global_batch_size]
    if augmentation is None:
      return shard_for_pmap(select(arrays, idx[mine]), num_devices)
    draws = augment_lib.draw(augmentation, global_batch_size, seed, step)
    return shard_for_pmap(augment_lib.apply(
        select(arrays, idx[mine]), augment_lib.Draws(*(
            d[mine] for d in draws))), num_devices)

  def source(start_step: int = 0) -> Iterator[Batch]:
    step = start_step
    while True:
      yield batch(step)
      step += 1

  return source


def dataset_batch_source(dataset: tf.data.Dataset, global_batch_size: int, *,
                         seed: int = 0, num_devices: int | None = None,
                         shuffle_buffer: int = 4096,
                         augmentation: augment_lib.Augmentation | None = None
                         ) -> BatchSource:
  """Endless shuffled batches streamed through tf.data; seeks with `skip`.

  With `augmentation`, batch k is augmented with the draws of (seed, k).
  """
  num_devices = num_devices or jax.local_device_count()
  local = local_batch_size(global_batch_size, num_devices)
  dataset = dataset.shard(jax.process_count(), jax.process_index())
  options = tf.data.Options()
  options.deterministic = True
  dataset = dataset.with_options(options)

  def source(start_step: int = 0) -> Iterator[Batch]:
    ds = dataset.repeat().shuffle(shuffle_buffer, seed=seed)
    ds = ds.batch(local, drop_remainder=True).skip(start_step)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    for step, batch in enumerate(tfds.as_numpy(ds), start=start_step):
      yield shard_for_pmap(_augmented(batch, augmentation, seed, step),
                           num_devices)

  return source


def eval_batches(arrays_or_dataset, batch_size: int) -> Iterator[Batch]:
  """One pass, in order, flat [B, ...] batches (the last may be smaller)."""
  if isinstance(arrays_or_dataset, tf.data.Dataset):
    yield from tfds.as_numpy(arrays_or_dataset.batch(batch_size))
    return
  n = len(next(iter(arrays_or_dataset.values())))
  for start in range(0, n, batch_size):
    yield {k: v[start:start + batch_size] for k, v in arrays_or_dataset.items()}


# Datasets read from their release layout (`real_faces`), not from TFDS.
RELEASE_DATASETS = ('the300w_lp', 'celeb_a', 'aflw2000_3d')
_SPLIT_SLICE = re.compile(r'^(\w+)(?:\[(-?\d*):(-?\d*)\])?$')


def _parse_split(split: str) -> tuple[str, slice]:
  """'train' or 'train[a:b]' -> ('train', slice(a, b))."""
  match = _SPLIT_SLICE.match(split)
  if not match:
    raise ValueError(f'unsupported split {split!r}: use NAME or NAME[a:b]')
  name, start, stop = match.groups()
  return name, slice(int(start) if start else None,
                     int(stop) if stop else None)


def _resolve_face_model(face_model):
  """A `MorphableModel` from a model or a zero-argument loader (called only
  when a release dataset needs the model); None stays None."""
  if face_model is None or isinstance(face_model, MorphableModel):
    return face_model
  if callable(face_model):
    return face_model()
  raise TypeError(f'face_model must be a MorphableModel or a loader, got '
                  f'{type(face_model).__name__} (load names with '
                  'stages.load_face_model)')


def release_records(name: str, split: str, *, manual_dir,
                    face_model=None, image_size: int = 128, data_dir=None):
  """(records, example function) of a dataset read from its release files.

  Returns the `real_faces.Record`s of `split` and the function mapping a raw
  example to the face format at `image_size`.
  """
  from pnccface.data import real_faces  # pylint: disable=g-import-not-at-top
  if manual_dir is None:
    raise ValueError(f'{name} needs manual_dir (config.manual_dir): the '
                     'folder with its release files')
  split_name, part = _parse_split(split)
  only = {'the300w_lp': 'train', 'aflw2000_3d': 'test'}.get(name)
  if only is not None and split_name != only:
    raise ValueError(f'{name} has only a {only!r} split, not {split!r}')
  if name == 'the300w_lp':
    model = _resolve_face_model(face_model)
    if model is None:
      raise ValueError('the300w_lp needs a face model (config.face_model: '
                       'the BFM its coefficients belong to)')
    records = real_faces.list_300w_lp(manual_dir)
    fn = lambda e: real_faces.the300w_lp_face_example(e, model, image_size)
  elif name == 'celeb_a':
    records = real_faces.list_celeba(manual_dir, split_name)
    fn = lambda e: real_faces.celeba_face_example(e, image_size)
  elif name == 'aflw2000_3d':
    rows = tfds.as_numpy(load_split('aflw2000_3d', 'test', data_dir=data_dir,
                                    manual_dir=manual_dir))
    records = [real_faces.Record(r['name'].decode(), lambda r=r: r)
               for r in rows]
    model = _resolve_face_model(face_model)
    fn = lambda e: real_faces.aflw2000_3d_face_example(e, image_size, model)
  else:
    raise ValueError(f'unknown release dataset {name!r}; known: '
                     f'{RELEASE_DATASETS}')
  return records[part], fn


def _records_dataset(records, fn) -> tf.data.Dataset | Batch:
  """Face-format arrays of the records, or a stream when there are many."""
  if not records:
    raise ValueError('the split is empty')
  if len(records) <= IN_MEMORY_LIMIT:
    rows = [fn(r.read()) for r in records]
    return {k: np.stack([np.asarray(r[k], np.float32) for r in rows])
            for k in rows[0]}
  first = fn(records[0].read())
  signature = {k: tf.TensorSpec(np.shape(v), tf.float32)
               for k, v in first.items()}

  def generate():
    for record in records:
      yield {k: np.asarray(v, np.float32) for k, v in fn(record.read()).items()}

  return tf.data.Dataset.from_generator(
      generate, output_signature=signature).apply(
          tf.data.experimental.assert_cardinality(len(records)))


def concatenate(parts: list[Batch], name: str = '') -> Batch:
  """The union of in-memory face-format datasets, on their common keys.

  This is how photos without landmarks train MoFa: their landmark weights
  are 0 and the landmark term comes from the photos mixed in that have them
  (docs/real_data.md explains the choice over predicting landmarks).
  """
  if any(not isinstance(p, dict) for p in parts):
    raise ValueError(f'{name}: only in-memory datasets (<= {IN_MEMORY_LIMIT} '
                     'examples each) can be mixed')
  keys = set.intersection(*(set(p) for p in parts))
  return {k: np.concatenate([p[k] for p in parts]) for k in sorted(keys)}


def face_dataset(name: str, split: str, *, data_dir: str | None = None,
                 builder_kwargs: Mapping | None = None,
                 num_samples: int | None = None, subset_seed: int = 0,
                 image_size: int | None = None, manual_dir: str | None = None,
                 face_model=None) -> tf.data.Dataset | Batch:
  """A split in `FACE_FEATURES` format, optionally a few-shot subset.

  Args:
    name: a TFDS name (see `load_split`: 'synthetic_faces/tiny',
      'face_photos/faces68', ...), the folder of an annotated dataset
      (`annotation`), or one of `RELEASE_DATASETS`, read from its release
      files in `manual_dir` (`real_faces`): 'the300w_lp' (PNCC targets from
      `face_model`, the user's BFM), 'celeb_a' (crops, 5 landmarks),
      'aflw2000_3d' (crops, landmarks; dense ground truth with `face_model`).
      'A+B' mixes datasets (`concatenate`), e.g.
      'face_photos/celeba_10k+face_photos/faces68': photos without
      landmarks (weight 0) trained with photos that have them.
    split, data_dir, builder_kwargs, manual_dir: see `load_split`; release
      datasets take 'NAME' or 'NAME[a:b]'.
    num_samples: a few-shot subset (`few_shot_indices`); None or -1: all.
    image_size: resize to this side (see `to_face_example`); the crop side of
      release datasets (default 128).
    face_model: the BFM of the release's coefficients: a `MorphableModel` or
      a zero-argument loader of one (`stages` passes `config.face_model`'s).

  Returns:
    In-memory arrays when the split (or subset) is small enough
    (`IN_MEMORY_LIMIT`), else a tf.data.Dataset.
  """
  if '+' in name:
    return concatenate([face_dataset(
        part, split, data_dir=data_dir, builder_kwargs=builder_kwargs,
        num_samples=num_samples, subset_seed=subset_seed,
        image_size=image_size, manual_dir=manual_dir, face_model=face_model)
                        for part in name.split('+')], name)
  if name in RELEASE_DATASETS:
    records, fn = release_records(name, split, manual_dir=manual_dir,
                                  face_model=face_model,
                                  image_size=image_size or 128,
                                  data_dir=data_dir)
    if num_samples is not None and num_samples >= 0:
      records = [records[i] for i in
                 few_shot_indices(len(records), num_samples, subset_seed)]
    return _records_dataset(records, fn)
  if pathlib.Path(name).is_dir():
    dataset = annotated.read_annotated(name)
  else:
    dataset = load_split(name, split, data_dir=data_dir,
                         builder_kwargs=builder_kwargs, manual_dir=manual_dir)
  dataset = dataset.map(lambda e: to_face_example(e, image_size),
                        num_parallel_calls=tf.data.AUTOTUNE)
  count = int(dataset.cardinality())
  if num_samples is not None and num_samples >= 0:
    indices = few_shot_indices(count, num_samples, subset_seed)
    return select(to_numpy(dataset), indices)
  if 0 <= count <= IN_MEMORY_LIMIT:
    return to_numpy(dataset)
  return dataset


def batch_source(data: tf.data.Dataset | Batch, global_batch_size: int, *,
                 seed: int = 0, num_devices: int | None = None,
                 augmentation: augment_lib.Augmentation | None = None
                 ) -> BatchSource:
  """`array_batch_source` or `dataset_batch_source`, whichever fits `data`.

  `augmentation`: e.g. `augment.from_config(config)` for training batches.
  """
  if isinstance(data, tf.data.Dataset):
    return dataset_batch_source(data, global_batch_size, seed=seed,
                                num_devices=num_devices,
                                augmentation=augmentation)
  return array_batch_source(data, global_batch_size, seed=seed,
                            num_devices=num_devices, augmentation=augmentation)


def training_batch_source(data: tf.data.Dataset | Batch, config,
                          num_devices: int | None = None) -> BatchSource:
  """A stage's training batches: `config.batch_size`, `config.seed`, and
  augmentation per `config.augment` (on unless `augment.enabled` is False;
  see `augment.from_config`)."""
  return batch_source(data, config.batch_size, seed=config.seed,
                      num_devices=num_devices,
                      augmentation=augment_lib.from_config(config))
