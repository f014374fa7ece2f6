"""The renderer under jax.pmap over 4 forced CPU devices equals one device.

XLA_FLAGS must be set before jax initialises, and pytest imports every test
module into one process, so the check runs in a subprocess.
"""

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    from pnccface import render
    from pnccface.render import meshes
    assert jax.local_device_count() == 4, jax.devices()
    vertices, triangles = meshes.uv_sphere(30, 40)
    rng = np.random.default_rng(0)
    size = 48
    batch = []
    for _ in range(8):  # 4 devices x 2 images, different scales and shifts
      scale = rng.uniform(10, 30)
      shift = rng.uniform(14, 34, 2)
      v = vertices * scale
      batch.append(np.stack([v[:, 0] + shift[0], -v[:, 1] + shift[1],
                             -v[:, 2]], -1))
    batch = jnp.asarray(np.stack(batch), jnp.float32)
    ncc = render.vertex_normals(vertices, triangles) * 0.5 + 0.5

    def pncc(v):
      return render.render_pncc(v, triangles, ncc, size, size)

    single_image, single_mask = jax.jit(pncc)(batch)
    shards = batch.reshape(4, 2, *batch.shape[1:])
    multi_image, multi_mask = jax.pmap(pncc)(shards)
    np.testing.assert_array_equal(np.asarray(multi_mask).reshape(
        single_mask.shape), single_mask)
    np.testing.assert_allclose(np.asarray(multi_image).reshape(
        single_image.shape), single_image, atol=1e-6)
    assert 0.05 < float(single_mask.mean()) < 0.9
    print('PMAP_OK')
''')


def test_pmap_over_four_cpu_devices_matches_single_device():
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      ' --xla_force_host_platform_device_count=4').strip()
  env['JAX_PLATFORMS'] = 'cpu'
  result = subprocess.run([sys.executable, '-c', _SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  assert 'PMAP_OK' in result.stdout
