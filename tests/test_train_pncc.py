"""Tests for stage 1 (pnccface/train/pncc.py): loss, freezing, few-shot."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnccface.train import common
from pnccface.train import pncc
from configs import pncc_few as pncc_few_config
from tests.conftest import ellipse_faces, few_shot_source


def test_pncc_loss_hand_computed():
  pred = np.zeros((1, 2, 2, 3), np.float32)
  target = np.zeros((1, 2, 2, 3), np.float32)
  target[0, 0, 0] = [0.3, 0.6, 0.9]  # face pixel: L1 = 0.6
  pred[0, 1, 1] = [0.2, 0.2, 0.2]  # background pixel: L1 = 0.2
  mask = np.zeros((1, 2, 2, 1), np.float32)
  mask[0, 0, :] = 1  # two face pixels (L1 0.6 and 0), two background
  loss, aux = pncc.pncc_loss(jnp.asarray(pred), jnp.asarray(target),
                             jnp.asarray(mask), background_weight=0.5)
  np.testing.assert_allclose(aux['face_l1'], 0.3, rtol=1e-6)
  np.testing.assert_allclose(aux['background_l1'], 0.1, rtol=1e-6)
  np.testing.assert_allclose(loss, 0.3 + 0.5 * 0.1, rtol=1e-6)
  # Targets at twice the output size are area-averaged.
  big = np.repeat(np.repeat(target, 2, 1), 2, 2)
  big_mask = np.repeat(np.repeat(mask, 2, 1), 2, 2)
  loss2, _ = pncc.pncc_loss(jnp.asarray(pred), jnp.asarray(big),
                            jnp.asarray(big_mask), 0.5)
  np.testing.assert_allclose(loss2, loss, rtol=1e-6)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _run_steps(config, num_steps, data):
  state = pncc.create_train_state(config, jax.random.PRNGKey(0))
  # Non-trivial batch statistics so "unchanged" is not "still at init".
  state = state.replace(batch_stats=jax.tree_util.tree_map(
      lambda x: x + 0.25, state.batch_stats))
  step = jax.pmap(pncc.make_train_step(config), axis_name=common.AXIS)
  rstate = common.replicate(state)
  for batch in (b for _, b in zip(range(num_steps), few_shot_source(data, 8)(0))):
    rstate, _ = step(rstate, batch)
  return state, common.unreplicate(rstate)


def test_frozen_encoder_decoder_are_bit_identical():
  config = pncc_few_config.get_config('tiny')
  config.optimizer.weight_decay = 0.1  # AdamW must not touch frozen params
  before, after = _run_steps(config, 4, ellipse_faces(0, 16))
  for part in ('encoder', 'decoder'):
    for x, y in zip(_leaves(before.params[part]), _leaves(after.params[part])):
      assert np.array_equal(x, y), part
    for x, y in zip(_leaves(before.batch_stats[part]),
                    _leaves(after.batch_stats[part])):
      assert np.array_equal(x, y), part
  for part in ('itl_1', 'itl_2', 'skip_1', 'skip_2', 'pncc_out'):
    assert any(not np.array_equal(x, y) for x, y in zip(
        _leaves(before.params[part]), _leaves(after.params[part]))), part
  # Frozen parts carry no optimizer state (no Adam moments).
  trained = sum(x.size for x in _leaves(after.opt_state))
  itl = sum(x.size for k, v in after.params.items()
            if k not in ('encoder', 'decoder') for x in _leaves(v))
  assert trained < 3 * itl + 100


def test_unfrozen_decoder_trains_and_updates_its_batch_stats():
  config = pncc_few_config.get_config('tiny')
  config.model.freeze_decoder = False
  before, after = _run_steps(config, 2, ellipse_faces(0, 16))
  for x, y in zip(_leaves(before.params['encoder']),
                  _leaves(after.params['encoder'])):
    assert np.array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(
      _leaves(before.params['decoder']), _leaves(after.params['decoder'])))
  assert any(not np.array_equal(x, y) for x, y in zip(
      _leaves(before.batch_stats['decoder']),
      _leaves(after.batch_stats['decoder'])))


def test_config_errors():
  config = pncc_few_config.get_config('tiny')
  config.from_scratch_decoder = True  # with a frozen decoder: invalid
  with pytest.raises(ValueError, match='from_scratch_decoder'):
    pncc.init_variables(config, jax.random.PRNGKey(0))
  config = pncc_few_config.get_config('tiny')
  config.init_from = '/nonexistent/stage0'
  with pytest.raises(FileNotFoundError, match='/nonexistent/stage0'):
    pncc.init_variables(config, jax.random.PRNGKey(0))


def test_bad_batch_is_named(tmp_path):
  config = pncc_few_config.get_config('tiny')
  data = ellipse_faces(0, 8)
  del data['mask']
  with pytest.raises(KeyError, match="'mask'"):
    pncc.train(config, tmp_path, few_shot_source(data, 8))


def test_few_shot_training_lowers_heldout_masked_l1(tmp_path):
  config = pncc_few_config.get_config('tiny')
  assert config.num_train_samples == 50
  train_data = ellipse_faces(10, config.num_train_samples)
  held_out = ellipse_faces(11, 64)
  eval_fn = pncc.make_eval_fn(config, [held_out])
  start = pncc.create_train_state(config, jax.random.PRNGKey(config.seed))
  before = eval_fn(start)['eval/face_l1']
  state = pncc.train(config, tmp_path,
                     few_shot_source(train_data, config.batch_size),
                     eval_batches=[held_out])
  after = eval_fn(state)['eval/face_l1']
  # Untrained sigmoid outputs sit near 0.5 (L1 ~ 0.2 on the face); 60
  # updates of the ITLs/skips on 50 samples must cut that clearly.
  print(f'held-out face L1: before {before:.4f}, after {after:.4f}')
  assert after < 0.75 * before, (before, after)
  assert int(state.step) == config.num_train_steps
