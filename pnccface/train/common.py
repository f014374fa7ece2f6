"""Shared training machinery: state, pmap helpers, checkpoints, logging, loop.

Conventions every stage follows:
  * A train step is a pure per-device function `(state, batch) -> (state,
    metrics)`; each stage's `train` pmaps it once (`jax.pmap(
    functools.partial(train_step, ...), axis_name=AXIS)`). The step averages
    gradients and metrics with `jax.lax.pmean(..., AXIS)` and builds its
    models with `bn_axis_name=AXIS` so batch-norm statistics are computed
    over the global batch (the pmapped step then equals the single-device
    step on the concatenated batch).
  * Batches are dicts of numpy arrays shaped [num_local_devices,
    per_device_batch, ...] (`data.pipeline.shard_for_pmap` reshapes a flat
    batch).
  * Randomness inside a step comes from `step_rng(state)`: the state's base
    key folded with the step number (and the device index), so a resumed run
    draws the same numbers as an uninterrupted one.
  * Resuming: `train_loop` restores the latest checkpoint of `workdir` and
    asks the data source for the batches from that step on: `batches` is a
    callable `start_step -> iterator` (the pipeline seeks, e.g. a
    deterministic per-step seed or `tf.data.Dataset.skip`); a plain iterator
    is accepted too and is advanced by `start_step` batches (cheap only for
    cheap iterators). Given deterministic data, an interrupted and resumed
    run ends at exactly the parameters of an uninterrupted one.
  * Checkpoints live in `<workdir>/checkpoints` (orbax); `load_variables` /
    `load_params` read the latest one without needing the optimizer, so the
    next stage can start from it.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Union

from absl import logging
import flax
from flax import serialization
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

PyTree = Any
Batch = Mapping[str, np.ndarray]
Metrics = Mapping[str, Any]
AXIS = 'batch'
CHECKPOINT_SUBDIR = 'checkpoints'


class TrainState(train_state.TrainState):
  """flax TrainState + batch-norm statistics + a base PRNG key.

  Fields: step (int32 scalar, completed updates), params, batch_stats
  (pytree, may be {}), opt_state, rng (uint32[2] key; never split in place:
  use `step_rng`), apply_fn / tx (static).
  """
  batch_stats: PyTree = flax.struct.field(default_factory=dict)
  rng: jax.Array = None


def step_rng(state: TrainState, per_device: bool = True) -> jax.Array:
  """The PRNG key of the current step (inside a pmapped step when
  per_device: also folded with the device index along AXIS)."""
  key = jax.random.fold_in(state.rng, state.step)
  if per_device:
    key = jax.random.fold_in(key, jax.lax.axis_index(AXIS))
  return key


def init_key(key: jax.Array) -> jax.Array:
  """A typed 'unsafe_rbg' key derived from a raw uint32[2] key, for parameter
  initialisation inside jit: XLA compiles threefry for hundreds of
  initialisers very slowly on CPU (~30 s for the tiny model vs ~4 s). The
  numbers are deterministic per backend (not across CPU/GPU)."""
  return jax.random.wrap_key_data(jnp.tile(jnp.asarray(key, jnp.uint32), 2),
                                  impl='unsafe_rbg')


# ----------------------------------------------------------------------------
# Devices.


def device_sharding(devices=None) -> jax.sharding.NamedSharding:
  """The sharding pmap gives its outputs: leading axis over `devices`
  (default: the local ones), mesh axis AXIS. Inputs placed like this do not
  trigger a recompile when fed back (flax.jax_utils.replicate uses another
  mesh axis name)."""
  devices = jax.local_devices() if devices is None else list(devices)
  mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))


def replicate(tree: PyTree, devices=None) -> PyTree:
  """Copies a pytree to every one of `devices` (default: the local ones;
  leading axis = device)."""
  sharding = device_sharding(devices)
  n = len(sharding.mesh.devices)

  def put(x):
    x = np.asarray(jax.device_get(x))
    return jax.device_put(np.broadcast_to(x[None], (n,) + x.shape), sharding)

  return jax.tree_util.tree_map(put, tree)


def unreplicate(tree: PyTree) -> PyTree:
  """The device-0 copy of a replicated pytree."""
  return flax.jax_utils.unreplicate(tree)


def unshard(x, ndim: int) -> np.ndarray:
  """[D, B, ...] or [B, ...] -> [N, ...] with `ndim` dims (eval batches come
  either way)."""
  x = np.asarray(x)
  return x.reshape((-1,) + x.shape[-(ndim - 1):]) if x.ndim > ndim else x


def global_mean(total, count, axis_name: Optional[str] = None):
  """total / count summed over `axis_name`, times the device count: the
  pmean of these per-device values is the global-batch mean, so that
  pmean'ed gradients are those of the global-batch loss."""
  count = jax.lax.stop_gradient(count)
  num_devices = 1
  if axis_name is not None:
    count = jax.lax.psum(count, axis_name)
    num_devices = jax.lax.psum(1, axis_name)
  return num_devices * total / jnp.maximum(count, 1e-6)


def check_batch(batch: Batch, required: Mapping[str, int],
                num_devices: Optional[int] = None) -> None:
  """Raises ValueError naming the key/shape unless `batch` has every key in
  `required` with that many dims ([D, B, ...]) and D == local devices."""
  d = num_devices or jax.local_device_count()
  for key, ndim in required.items():
    if key not in batch:
      raise KeyError(f'batch lacks key {key!r} (has {sorted(batch)})')
    shape = np.shape(batch[key])
    if len(shape) != ndim or shape[0] != d:
      raise ValueError(f'batch[{key!r}] has shape {shape}; expected {ndim} '
                       f'dims [num_devices={d}, per_device_batch, ...]')


def apply_loss_gradients(state: TrainState, loss_fn: Callable
                         ) -> tuple[TrainState, Metrics]:
  """One data-parallel update inside a pmapped step.

  Args:
    state: the per-device state.
    loss_fn: params -> (loss, (metrics, new_batch_stats)), on this device's
      share of the batch.

  Returns:
    The updated state (gradients averaged over AXIS) and the metrics, with
    'loss', averaged over AXIS.
  """
  (loss, (metrics, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return new_state, jax.lax.pmean({'loss': loss, **metrics}, AXIS)


# ----------------------------------------------------------------------------
# Optimizers.


def learning_rate_schedule(opt_config, num_train_steps: int) -> optax.Schedule:
  """`opt_config.schedule` in {'constant', 'cosine'} with linear warmup over
  `opt_config.warmup_steps` steps to peak `opt_config.lr`."""
  lr, warmup = opt_config.lr, int(opt_config.get('warmup_steps', 0))
  kind = opt_config.get('schedule', 'constant')
  if kind == 'constant':
    main = optax.constant_schedule(lr)
  elif kind == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(1, num_train_steps - warmup))
  else:
    raise ValueError(f'unknown lr schedule {kind!r}')
  if warmup <= 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(opt_config, num_train_steps: int
                   ) -> optax.GradientTransformation:
  """Adam (AdamW when weight_decay > 0; or plain SGD when name == 'sgd')
  with the configured schedule and optional global-norm clipping."""
  schedule = learning_rate_schedule(opt_config, num_train_steps)
  b1, b2 = opt_config.get('b1', 0.9), opt_config.get('b2', 0.999)
  wd = opt_config.get('weight_decay', 0.0)
  name = opt_config.get('name', 'adam')
  if name == 'sgd':
    tx = optax.sgd(schedule)
    if wd > 0:
      tx = optax.chain(optax.add_decayed_weights(wd), tx)
  elif name != 'adam':
    raise ValueError(f"optimizer.name must be 'adam' or 'sgd', got {name!r}")
  elif wd > 0:
    tx = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=wd)
  else:
    tx = optax.adam(schedule, b1=b1, b2=b2)
  clip = opt_config.get('grad_clip', 0.0)
  if clip and clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx


# ----------------------------------------------------------------------------
# Checkpoints.


def _host_copy(tree: PyTree) -> PyTree:
  # Real host copies: the device buffers may be donated by the next step while
  # an async save is still writing.
  return jax.tree_util.tree_map(lambda x: np.array(jax.device_get(x)), tree)


def checkpoint_dir(workdir: Union[str, os.PathLike]) -> str:
  """`<workdir>/checkpoints` as an absolute path (orbax refuses relative
  ones, and launch scripts take workdirs relative to the current folder)."""
  return os.path.join(os.path.abspath(os.fspath(workdir)), CHECKPOINT_SUBDIR)


CORRUPT_SUBDIR = 'checkpoints_unreadable'


def _restore_newest_intact(manager, steps, args, directory: str,
                           set_aside: bool = False):
  """(step, restored tree) of the newest step in `steps` that restores, or
  None when `steps` is empty.

  An unreadable step (a truncated file after a crash or a full disk) is
  skipped with a warning naming it, when older ones are intact; with
  `set_aside` it is moved to `<workdir>/checkpoints_unreadable/<step>` so
  that training can save that step again. Raises naming the steps when none
  restores.
  """
  errors = []
  for step in sorted(steps, reverse=True):
    try:
      return step, manager.restore(step, args=args)
    except Exception as e:  # pylint: disable=broad-except
      # orbax/tensorstore raise many types here (ValueError, JSONDecodeError,
      # XlaRuntimeError OUT_OF_RANGE, ...); any of them means unreadable.
      message = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
      errors.append(f'step {step}: {message}')
      logging.warning('checkpoint step %d in %s is unreadable (%s); trying '
                      'an older one', step, directory, message)
      if set_aside:
        aside = os.path.join(os.path.dirname(directory), CORRUPT_SUBDIR)
        os.makedirs(aside, exist_ok=True)
        os.replace(os.path.join(directory, str(step)),
                   os.path.join(aside, f'{step}.{int(time.time())}'))
        manager.reload()
  if errors:
    raise ValueError(f'no readable checkpoint in {directory}: ' +
                     '; '.join(errors))
  return None


class CheckpointManager:
  """Orbax CheckpointManager on `<workdir>/checkpoints`.

  Saves every `save_every` steps (and when forced), keeps the newest `keep`.
  Holds unreplicated TrainStates (serialised with flax's state dict, so
  `apply_fn` / `tx` are not stored).
  """

  def __init__(self, workdir: Union[str, os.PathLike], save_every: int = 1000,
               keep: int = 3):
    self.directory = checkpoint_dir(workdir)
    self.save_every = max(1, int(save_every))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            save_interval_steps=self.save_every, max_to_keep=keep,
            create=True))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, state: TrainState, force: bool = False) -> bool:
    """Saves at step `state.step` if due (or forced); returns whether."""
    step = int(jax.device_get(state.step))
    return self._manager.save(
        step, args=ocp.args.StandardSave(
            _host_copy(serialization.to_state_dict(state))), force=force)

  def restore(self, template: TrainState,
              step: Optional[int] = None) -> Optional[TrainState]:
    """`template` filled from the checkpoint at `step` (default latest);
    None when there is none."""
    target = _host_copy(serialization.to_state_dict(template))
    steps = [step] if step is not None else self._manager.all_steps()
    restored = _restore_newest_intact(
        self._manager, steps, ocp.args.StandardRestore(target), self.directory,
        set_aside=step is None)
    if restored is None:
      return None
    return serialization.from_state_dict(template, restored[1])

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def load_variables(workdir: Union[str, os.PathLike],
                   step: Optional[int] = None) -> dict:
  """{'params', 'batch_stats', 'step'} of a workdir's latest (or `step`)
  checkpoint, as numpy pytrees; no model or optimizer needed.

  Raises FileNotFoundError naming the directory when there is no checkpoint.
  """
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'no checkpoint directory {directory}')
  # Not read_only: orbax then logs "Given directory is read only" on every
  # load; with create=False and no save nothing is written either way.
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(create=False))
  try:
    found = _restore_newest_intact(
        manager, [step] if step is not None else manager.all_steps(),
        ocp.args.StandardRestore(), directory)
    if found is None:
      raise FileNotFoundError(f'no checkpoint in {directory}')
    step, restored = found
  finally:
    manager.close()
  if 'params' not in restored:
    raise KeyError(f'checkpoint {directory}/{step} has no params (keys: '
                   f'{sorted(restored)})')
  to_np = lambda t: jax.tree_util.tree_map(np.asarray, t)
  return {'params': to_np(restored['params']),
          'batch_stats': to_np(restored.get('batch_stats') or {}),
          'step': int(restored.get('step', step))}


def load_apply_variables(workdir: Union[str, os.PathLike],
                         step: Optional[int] = None) -> dict:
  """{'params'[, 'batch_stats']} of a checkpoint, ready for `model.apply`
  (batch_stats left out when the model has none)."""
  variables = load_variables(workdir, step)
  return {k: variables[k] for k in ('params', 'batch_stats')
          if variables.get(k)}


def load_params(workdir: Union[str, os.PathLike],
                step: Optional[int] = None) -> PyTree:
  """The params pytree of a workdir's latest (or `step`) checkpoint."""
  return load_variables(workdir, step)['params']


# ----------------------------------------------------------------------------
# Logging.


class ProgressLogger:
  """Every `log_every` steps logs `step s/N | k=v ... | x steps/s | ETA`."""

  def __init__(self, num_train_steps: int, log_every: int, start_step: int):
    self.num_train_steps = num_train_steps
    self.log_every = max(1, int(log_every))
    self._last_step, self._last_time = start_step, time.time()

  def due(self, step: int) -> bool:
    return step % self.log_every == 0 or step == self.num_train_steps

  def __call__(self, step: int, metrics: Mapping[str, float]) -> str:
    now = time.time()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = (self.num_train_steps - step) / max(rate, 1e-9)
    values = ' '.join(f'{k}={float(v):.4g}' for k, v in sorted(metrics.items()))
    line = (f'step {step}/{self.num_train_steps} | {values} | '
            f'{rate:.2f} steps/s | ETA {time.strftime("%H:%M:%S", time.gmtime(eta))}')
    logging.info(line)
    return line


class SummaryWriter:
  """TensorBoard scalars/images in `<workdir>/tensorboard` (process 0 only;
  a no-op when disabled, so tests need not import tensorflow).

  Written with `tf.summary` (part of tensorflow), so viewing them needs the
  `tensorboard` package but writing them does not.
  """

  def __init__(self, workdir: Union[str, os.PathLike], enabled: bool = True):
    self._writer = None
    if enabled and jax.process_index() == 0:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      self._tf = tf
      self._writer = tf.summary.create_file_writer(
          os.path.join(os.fspath(workdir), 'tensorboard'))

  def scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if self._writer is not None:
      with self._writer.as_default(step=step):
        for key, value in scalars.items():
          self._tf.summary.scalar(key, float(value))

  def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: {name: [N, H, W, C] float in [0, 1]}."""
    if self._writer is not None:
      with self._writer.as_default(step=step):
        for key, value in images.items():
          value = np.clip(np.asarray(value, np.float32), 0.0, 1.0)
          self._tf.summary.image(key, value, max_outputs=value.shape[0])

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()


def split_summaries(results: Mapping[str, Any]
                    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Splits an eval result into scalars and images (keys 'image/...' or
  values with ndim == 4)."""
  scalars, images = {}, {}
  for key, value in results.items():
    value = np.asarray(value)
    if key.startswith('image/') or value.ndim == 4:
      images[key] = value
    else:
      scalars[key] = float(value)
  return scalars, images


# ----------------------------------------------------------------------------
# The loop.


BatchSource = Union[Callable[[int], Iterable[Batch]], Iterable[Batch]]


def batches_from_fn(batch_for_step: Callable[[int], Batch]
                    ) -> Callable[[int], Iterator[Batch]]:
  """Adapts `batch_for_step(step)` (step = 0-based index of the update) to
  the `start_step -> iterator` form `train_loop` takes."""
  return lambda start: (batch_for_step(s) for s in itertools.count(start))


def batch_iterator(batches: BatchSource, start_step: int) -> Iterator[Batch]:
  """The batches from update `start_step` on (see `train_loop`)."""
  if callable(batches):
    return iter(batches(start_step))
  it = iter(batches)
  for _ in range(start_step):
    next(it)
  return it


def checked_batches(batches: BatchSource, required: Mapping[str, int]
                    ) -> Callable[[int], Iterator[Batch]]:
  """`batches` as a `start_step -> iterator` source whose batches are
  validated with `check_batch(batch, required)`."""
  def source(start_step: int) -> Iterator[Batch]:
    for batch in batch_iterator(batches, start_step):
      check_batch(batch, required)
      yield batch
  return source


def train_loop(config, workdir: Union[str, os.PathLike],
               init_state_fn: Callable[[jax.Array], TrainState],
               p_train_step: Callable[[TrainState, Batch],
                                      tuple[TrainState, Metrics]],
               batches: BatchSource,
               eval_fn: Optional[Callable[[TrainState], Mapping[str, Any]]]
               = None,
               stop_at_step: Optional[int] = None) -> TrainState:
  """Runs (or resumes) training to `config.num_train_steps` updates.

  Args:
    config: reads num_train_steps, seed, log_every, checkpoint_every,
      keep_checkpoints, eval_every (0: only at the end), use_tensorboard.
    workdir: checkpoints in <workdir>/checkpoints, TensorBoard in
      <workdir>/tensorboard.
    init_state_fn: PRNG key -> fresh unreplicated TrainState (only its
      structure matters when a checkpoint exists).
    p_train_step: the stage's step, pmapped over AXIS (see module
      docstring), taking and returning replicated states.
    batches: `start_step -> iterator` of [D, B, ...] numpy batches, the first
      being the batch of update `start_step` (0-based); or an iterator,
      advanced by start_step.
    eval_fn: unreplicated state -> {name: scalar or [N, H, W, C] image}.
    stop_at_step: stop (with a checkpoint) after this many updates, e.g. for
      time-limited jobs; the next call resumes.

  Returns:
    The final unreplicated TrainState (on device 0).
  """
  num_steps = int(config.num_train_steps)
  checkpoints = CheckpointManager(workdir, config.checkpoint_every,
                                  config.get('keep_checkpoints', 3))
  state = init_state_fn(jax.random.PRNGKey(config.get('seed', 0)))
  restored = checkpoints.restore(state)
  if restored is not None:
    state = restored
    logging.info('Resuming from %s at step %d', checkpoints.directory,
                 int(state.step))
  start = int(jax.device_get(state.step))
  writer = SummaryWriter(workdir, config.get('use_tensorboard', True))
  progress = ProgressLogger(num_steps, config.get('log_every', 100), start)
  eval_every = int(config.get('eval_every', 0))
  rstate = replicate(state)
  del state
  batch_iter = batch_iterator(batches, start)

  def evaluate(step, rstate):
    if eval_fn is None:
      return
    scalars, images = split_summaries(eval_fn(unreplicate(rstate)))
    logging.info('eval step %d | %s', step,
                 ' '.join(f'{k}={v:.4g}' for k, v in sorted(scalars.items())))
    writer.scalars(step, scalars)
    writer.images(step, images)

  try:
    for step in range(start + 1, num_steps + 1):
      try:
        batch = next(batch_iter)
      except StopIteration as e:
        raise RuntimeError(f'batch source ran out before update {step}') from e
      rstate, metrics = p_train_step(rstate, batch)
      if progress.due(step):
        metrics = jax.tree_util.tree_map(
            lambda x: float(np.asarray(x)[0]), jax.device_get(metrics))
        progress(step, metrics)
        writer.scalars(step, {f'train/{k}': v for k, v in metrics.items()})
      stopping = stop_at_step is not None and step >= stop_at_step
      final = step == num_steps or stopping
      if final or step % checkpoints.save_every == 0:
        checkpoints.save(unreplicate(rstate), force=final)
      if (eval_every and step % eval_every == 0) or step == num_steps:
        evaluate(step, rstate)
      if stopping:
        break
    if start >= num_steps and eval_fn is not None:
      evaluate(start, rstate)
  finally:
    checkpoints.close()
    writer.flush()
  return unreplicate(rstate)
