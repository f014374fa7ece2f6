"""Tests for pnccface.train.common: checkpoints, resume, loop, optimizers.

Also home of `ellipse_faces`, the procedural data the training tests share.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from pnccface.train import common


def ellipse_faces(seed: int, n: int, size: int = 32) -> dict:
  """Procedural 'faces': a shaded ellipse on a coloured background.

  Returns {'image': [n, size, size, 3], 'pncc': [n, size, size, 3],
  'mask': [n, size, size, 1]} float32. The fake PNCC inside the ellipse is
  ((u + 1) / 2, (v + 1) / 2, sqrt(1 - u^2 - v^2)) of the ellipse's own
  normalised coordinates (u, v) (like NCC of a posed half-sphere); 0 outside.
  """
  rng = np.random.RandomState(seed)
  c = (np.arange(size) + 0.5) / size
  x, y = np.meshgrid(c, c)
  images = np.empty((n, size, size, 3), np.float32)
  pnccs = np.zeros((n, size, size, 3), np.float32)
  masks = np.zeros((n, size, size, 1), np.float32)
  for i in range(n):
    cx, cy = rng.uniform(0.35, 0.65, 2)
    ax, ay = rng.uniform(0.18, 0.32, 2)
    t = rng.uniform(-0.6, 0.6)
    dx, dy = x - cx, y - cy
    u = (np.cos(t) * dx + np.sin(t) * dy) / ax
    v = (-np.sin(t) * dx + np.cos(t) * dy) / ay
    inside = u**2 + v**2 < 1
    w = np.sqrt(np.clip(1 - u**2 - v**2, 0, 1))
    skin = rng.uniform(0.4, 0.9, 3)
    background = rng.uniform(0.0, 1.0, 3)
    light = rng.uniform(-0.5, 0.5, 2)
    shade = np.clip(0.6 + 0.4 * w + 0.2 * (light[0] * u + light[1] * v), 0, 1)
    image = np.where(inside[..., None], shade[..., None] * skin, background)
    image += rng.normal(0, 0.02, image.shape)
    images[i] = np.clip(image, 0, 1)
    pnccs[i] = np.where(inside[..., None],
                        np.stack([(u + 1) / 2, (v + 1) / 2, w], -1), 0)
    masks[i, ..., 0] = inside
  return {'image': images, 'pncc': pnccs, 'mask': masks}


def load_config(name: str, arg=None):
  """configs/<name>.py's get_config(arg) (configs are loaded by path)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), 'configs', name + '.py')
  spec = importlib.util.spec_from_file_location(f'_cfg_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def few_shot_source(data: dict, batch_size: int):
  """Deterministic per-step batches [1, B, ...] drawn from `data`:
  step s uses RandomState(s), so any start step is cheap to seek to."""
  n = data['image'].shape[0]

  def batch_for_step(step):
    idx = np.random.RandomState(step).randint(0, n, batch_size)
    return {k: v[idx][None] for k, v in data.items()}

  return common.batches_from_fn(batch_for_step)


class _Interrupt(Exception):
  pass


def _interrupting(source, at_step):
  """A source that raises (like a killed job) when asked for update
  `at_step`."""
  def make(start):
    for step, batch in enumerate(source(start), start):
      if step == at_step:
        raise _Interrupt()
      yield batch
  return make


def _tiny_pncc_config(steps=8):
  config = load_config('pncc_few', 'tiny')
  config.num_train_steps = steps
  config.checkpoint_every = 3
  config.log_every = 2
  return config


def _leaves_equal(a, b):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb)
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(la, lb))


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
  from pnccface.train import pncc  # pylint: disable=g-import-not-at-top
  config = _tiny_pncc_config(steps=8)
  source = few_shot_source(ellipse_faces(0, 20), 4)
  full = pncc.train(config, tmp_path / 'full', source)
  assert int(full.step) == 8

  # Killed while fetching the batch of update 5 (0-based): the last
  # checkpoint is at step 3, so the restart replays updates 3..7.
  with pytest.raises(_Interrupt):
    pncc.train(config, tmp_path / 'resumed', _interrupting(source, 5))
  assert common.CheckpointManager(tmp_path / 'resumed').latest_step() == 3
  resumed = pncc.train(config, tmp_path / 'resumed', source)
  assert int(resumed.step) == 8
  assert _leaves_equal(full.params, resumed.params)
  assert _leaves_equal(full.opt_state, resumed.opt_state)
  # The run did change something (the comparison is not vacuous).
  fresh = pncc.create_train_state(config, jax.random.PRNGKey(config.seed))
  assert not _leaves_equal(fresh.params, full.params)


def test_stop_at_step_then_resume(tmp_path):
  from pnccface.train import pncc  # pylint: disable=g-import-not-at-top
  config = _tiny_pncc_config(steps=6)
  source = few_shot_source(ellipse_faces(1, 20), 4)
  part = pncc.train(config, tmp_path / 'w', source, stop_at_step=4)
  assert int(part.step) == 4
  assert common.CheckpointManager(tmp_path / 'w').latest_step() == 4
  done = pncc.train(config, tmp_path / 'w', source)
  assert int(done.step) == 6
  full = pncc.train(config, tmp_path / 'w2', source)
  assert _leaves_equal(full.params, done.params)
  # load_params reads the final checkpoint without a model/optimizer.
  loaded = common.load_variables(tmp_path / 'w')
  assert loaded['step'] == 6
  assert _leaves_equal(loaded['params'], done.params)
  assert _leaves_equal(loaded['batch_stats'], done.batch_stats)
  assert _leaves_equal(common.load_params(tmp_path / 'w'), done.params)


def test_checkpoint_keeps_k_and_restores_latest(tmp_path):
  tx = optax.adam(0.1)
  params = {'w': jnp.arange(3.0)}
  state = common.TrainState.create(apply_fn=None, params=params, tx=tx,
                                   batch_stats={'m': jnp.ones(2)},
                                   rng=jax.random.PRNGKey(0))
  manager = common.CheckpointManager(tmp_path, save_every=2, keep=2)
  for step in range(1, 8):
    state = state.apply_gradients(grads={'w': jnp.ones(3)})
    manager.save(state)
  manager.wait()
  assert manager.latest_step() == 6
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()
                if p.name.isdigit()) == [4, 6]
  template = common.TrainState.create(apply_fn=None, params=params, tx=tx,
                                      batch_stats={'m': jnp.zeros(2)},
                                      rng=jax.random.PRNGKey(1))
  restored = manager.restore(template)
  manager.close()
  assert int(restored.step) == 6
  # Adam moves each weight by ~lr per step: 7 steps minus the unsaved last.
  np.testing.assert_allclose(restored.params['w'], np.arange(3.0) - 0.6,
                             atol=1e-4)
  np.testing.assert_array_equal(restored.batch_stats['m'], np.ones(2))
  np.testing.assert_array_equal(restored.rng, jax.random.PRNGKey(0))


def test_load_variables_missing_workdir_names_it(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere'):
    common.load_variables(tmp_path / 'nowhere')


def test_learning_rate_schedule_warmup_cosine():
  opt = ml_collections.ConfigDict(dict(lr=1.0, warmup_steps=10,
                                       schedule='cosine'))
  schedule = common.learning_rate_schedule(opt, 110)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(5)), 0.5, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(10)), 1.0, rtol=1e-6)
  # Half way through the 100 cosine steps: (1 + cos(pi / 2)) / 2 = 0.5.
  np.testing.assert_allclose(float(schedule(60)), 0.5, rtol=1e-5)
  np.testing.assert_allclose(float(schedule(110)), 0.0, atol=1e-7)
  const = common.learning_rate_schedule(
      ml_collections.ConfigDict(dict(lr=0.3)), 100)
  assert float(const(77)) == pytest.approx(0.3)


def test_progress_logger_line():
  logger = common.ProgressLogger(num_train_steps=100, log_every=10,
                                 start_step=0)
  assert logger.due(10) and logger.due(100) and not logger.due(11)
  line = logger(10, {'loss': 0.5})
  assert line.startswith('step 10/100 | loss=0.5 |')
  assert 'steps/s' in line and 'ETA' in line


def test_shard_and_check_batch_errors():
  batch = {'image': np.zeros((8, 4, 4, 3), np.float32)}
  sharded = common.shard_batch(batch, num_devices=2)
  assert sharded['image'].shape == (2, 4, 4, 4, 3)
  with pytest.raises(ValueError, match='not divisible'):
    common.shard_batch({'image': np.zeros((3, 2))}, num_devices=2)
  with pytest.raises(KeyError, match="'pncc'"):
    common.check_batch(sharded, {'pncc': 5}, num_devices=2)
  with pytest.raises(ValueError, match=r"batch\['image'\] has shape"):
    common.check_batch(batch, {'image': 5}, num_devices=1)


def test_summary_writer_writes_tensorboard_events(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  writer = common.SummaryWriter(tmp_path)
  writer.scalars(3, {'loss': 0.25})
  writer.images(3, {'image/x': np.full((2, 4, 4, 3), 0.5, np.float32)})
  writer.flush()
  events = list((tmp_path / 'tensorboard').glob('events.out.tfevents.*'))
  assert len(events) == 1
  found = {}
  for event in tf.compat.v1.train.summary_iterator(str(events[0])):
    for value in event.summary.value:
      found[value.tag] = (event.step, value)
  assert found['loss'][0] == 3
  assert tf.make_ndarray(found['loss'][1].tensor) == np.float32(0.25)
  assert 'image/x' in found
