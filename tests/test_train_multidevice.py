"""A pmapped step over 4 (forced CPU) devices equals the single-device step.

XLA_FLAGS must be set before jax initialises, and pytest imports every test
module in one process, so the check runs in a subprocess.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent('''
    import json, os, sys
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
    sys.path.insert(0, %(root)r)
    import jax, numpy as np
    from pnccface.train import common, pncc, autoencoder as stage0
    from tests.conftest import ellipse_faces
    from configs import autoencoder as autoencoder_config
    from configs import pncc_few as pncc_few_config
    assert jax.local_device_count() == 4, jax.devices()

    def run(module, config, data, num_devices, steps=2):
      state = module.create_train_state(config, jax.random.PRNGKey(0))
      step = jax.pmap(module.make_train_step(config), axis_name=common.AXIS,
                      devices=jax.local_devices()[:num_devices])
      rstate = jax.tree_util.tree_map(
          lambda x: np.broadcast_to(np.asarray(x)[None],
                                    (num_devices,) + np.shape(x)), state)
      for s in range(steps):
        batch = {k: v[8 * s:8 * s + 8].reshape(
            (num_devices, 8 // num_devices) + v.shape[1:])
                 for k, v in data.items()}
        rstate, metrics = step(rstate, batch)
      return jax.tree_util.tree_map(lambda x: np.asarray(x)[0],
                                    (rstate.params, rstate.batch_stats,
                                     metrics))

    def max_diff(a, b):
      return max(float(np.max(np.abs(x - y)) / (1e-6 + np.max(np.abs(y))))
                 for x, y in zip(jax.tree_util.tree_leaves(a),
                                 jax.tree_util.tree_leaves(b)))

    which = sys.argv[1]
    data = ellipse_faces(0, 16)
    if which == 'pncc':
      config = pncc_few_config.get_config('tiny')
      # Train the decoder too, so cross-device batch norm is exercised.
      config.model.freeze_decoder = False
      config.optimizer.name = 'sgd'
      config.optimizer.lr = 0.05
      module = pncc
    else:
      config = autoencoder_config.get_config('tiny')
      config.loss.with_gan = False
      config.loss.with_zgan = False  # prior samples are per-device random
      config.optimizer.name = 'sgd'
      config.optimizer.lr = 1e-6  # the loss is in 0..255 units
      module = stage0
      data = {'image': data['image']}
    one = run(module, config, data, 1)
    four = run(module, config, data, 4)
    init = module.create_train_state(config, jax.random.PRNGKey(0))
    print(json.dumps({
        'params': max_diff(four[0], one[0]),
        'batch_stats': max_diff(four[1], one[1]),
        'metrics': max_diff(four[2], one[2]),
        'moved': max_diff(one[0], init.params)}))
''') % {'root': str(ROOT)}


def _run(which):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', _SCRIPT, which], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-4000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_pncc_step_four_devices_equals_one():
  diffs = _run('pncc')
  assert diffs['moved'] > 1e-4  # the steps changed the parameters
  assert diffs['params'] < 1e-4, diffs
  assert diffs['batch_stats'] < 1e-4, diffs  # synced batch norm
  assert diffs['metrics'] < 1e-5, diffs


@pytest.mark.slow
def test_autoencoder_step_four_devices_equals_one():
  diffs = _run('autoencoder')
  assert diffs['moved'] > 1e-6, diffs
  assert diffs['params'] < 1e-4, diffs
  assert diffs['batch_stats'] < 1e-4, diffs
  assert diffs['metrics'] < 1e-5, diffs
