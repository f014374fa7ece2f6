"""Two local CPU processes under `pnccface.distributed` vs one process.

Each process forces 2 CPU devices; the pair trains a pmapped least-squares
model whose gradients are averaged over all 4 devices, every process feeding
its own shard of the batch. The final parameters must equal one process with
4 forced devices on the same data and seed.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pnccface import distributed

_WORKER = textwrap.dedent('''
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from pnccface import distributed
    from pnccface.train import common
    num_processes, process_id, port, out = (int(sys.argv[1]),
        int(sys.argv[2]), sys.argv[3], sys.argv[4])
    if num_processes > 1:
      distributed.initialize('on', f'localhost:{port}', num_processes,
                             process_id)
    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype(np.float32)   # global batch of 8
    y = x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3
    per = 8 // jax.process_count()                   # this process's shard
    lo = jax.process_index() * per
    shard = lambda a: a[lo:lo + per].reshape(
        jax.local_device_count(), -1, *a.shape[1:])

    def step(w, x, y):
      grad = jax.grad(lambda w: jnp.mean((x @ w[:3] + w[3] - y)**2))(w)
      return w - 0.1 * jax.lax.pmean(grad, 'batch')

    step = jax.pmap(step, axis_name='batch')
    w = common.replicate(jnp.zeros(4))
    for _ in range(5):
      w = step(w, shard(x), shard(y))
    if distributed.is_main_process():
      with open(out, 'w') as f:
        json.dump(np.asarray(common.unreplicate(w)).tolist(), f)
''')


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run(num_processes, devices_each, out, timeout=240):
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=(
      f'--xla_force_host_platform_device_count={devices_each}'))
  port = str(_free_port())
  procs = [subprocess.Popen(
      [sys.executable, '-c', _WORKER, str(num_processes), str(i), port, out],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(num_processes)]
  try:
    logs = [p.communicate(timeout=timeout)[0] for p in procs]
  finally:
    for p in procs:  # always reaped, also on a timeout or a failure
      if p.poll() is None:
        p.kill()
      p.wait()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  with open(out) as f:
    return np.asarray(json.load(f))


@pytest.mark.slow
def test_two_processes_equal_one_process_with_four_devices(tmp_path):
  one = _run(1, 4, str(tmp_path / 'one.json'))
  two = _run(2, 2, str(tmp_path / 'two.json'))
  assert np.abs(one).max() > 0.1  # it trained
  np.testing.assert_allclose(two, one, rtol=1e-6, atol=1e-7)


def test_initialize_single_process_and_bad_arguments():
  assert distributed.initialize('off') == 0
  assert distributed.initialize('auto') == 0  # no cluster in the test env
  with pytest.raises(ValueError, match='num_processes'):
    distributed.initialize('on', 'localhost:1234')
  with pytest.raises(ValueError, match='mode'):
    distributed.initialize('sometimes')
  assert distributed.is_main_process()
