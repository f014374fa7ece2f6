"""The rasterizer of a past commit vs today's, in one process, interleaved.

    python benchmarks/render_ab.py --old=COMMIT [--mode fwd|fwd_bwd]
        [--repeats 5] [--threads 1|all]

Loads `pnccface/render/rasterizer.py` as of COMMIT (`git show`) beside the
working tree's, renders the 3DDFA no-neck mesh (else render_bench's sphere)
at 224x224, batch 16, with each, checks that the triangle ids are identical,
then times them alternately: the forward PNCC render (rasterize +
interpolate of the NCC) or forward+backward of a photometric loss through
`interpolate`. Prints CPU time per image (process_time; min and median) and
the median of the per-round new/old ratios.
`--threads=1` (default) pins the process to one core with XLA's
multi-threaded Eigen off, as render_bench's single-thread row.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_old(commit):
  """The rasterizer module as of `commit`."""
  source = subprocess.run(
      ['git', 'show', f'{commit}:pnccface/render/rasterizer.py'], cwd=REPO,
      capture_output=True, text=True, check=True).stdout
  folder = tempfile.mkdtemp()
  path = os.path.join(folder, 'old_rasterizer.py')
  with open(path, 'w') as f:
    f.write(source)
  spec = importlib.util.spec_from_file_location('old_rasterizer', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--old', required=True, help='git commit to compare')
  parser.add_argument('--mode', default='fwd', choices=('fwd', 'fwd_bwd'))
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--threads', default='1', choices=('1', 'all'))
  args = parser.parse_args()
  if args.threads == '1' and '--xla_cpu_multi_thread_eigen=false' not in (
      os.environ.get('XLA_FLAGS', '')):
    # XLA reads its flags once, at start-up: re-run with them set.
    env = dict(os.environ, XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                                      ' --xla_cpu_multi_thread_eigen=false'))
    os.execve(sys.executable, [sys.executable] + sys.argv, env)
  if args.threads == '1':
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(REPO / 'benchmarks'))
  import render_bench  # pylint: disable=g-import-not-at-top
  from pnccface import render  # pylint: disable=g-import-not-at-top
  from pnccface.render import rasterizer  # pylint: disable=g-import-not-at-top

  vertices, triangles = list(render_bench.load_meshes().values())[-1]
  batch, size = 16, 224
  screen = render_bench.to_screen(vertices, size, batch)
  ncc = jnp.asarray(render.vertex_normals(vertices, triangles) * 0.5 + 0.5)
  target = jnp.full((batch, size, size, 3), 0.4)
  modules = {'old': load_old(args.old), 'new': rasterizer}

  def forward(module):
    def fn(v):
      raster = module.rasterize(v, triangles, size, size)
      return module.interpolate(ncc, raster, v, triangles), raster.triangle_id
    return jax.jit(fn)

  def forward_backward(module):
    def loss(v, colours):
      raster = module.rasterize(v, triangles, size, size)
      image = module.interpolate(colours, raster, v, triangles)
      return jnp.mean((image - target)**2)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))

  outputs = {k: forward(m)(screen) for k, m in modules.items()}
  same = bool(jnp.all(outputs['old'][1] == outputs['new'][1]))
  print(f'triangle ids identical: {same}; PNCC max |difference|: '
        f'{float(jnp.max(jnp.abs(outputs["old"][0] - outputs["new"][0]))):.2g}')
  if args.mode == 'fwd':
    fns = {k: forward(m) for k, m in modules.items()}
    inputs = (screen,)
  else:
    fns = {k: forward_backward(m) for k, m in modules.items()}
    inputs = (screen, ncc)
  for fn in fns.values():
    jax.block_until_ready(fn(*inputs))
  times = {k: [] for k in fns}
  for _ in range(args.repeats):
    for k, fn in fns.items():
      start = time.process_time()
      jax.block_until_ready(fn(*inputs))
      times[k].append(1e3 * (time.process_time() - start) / batch)
  for k, t in times.items():
    print(f'{args.mode} {k}: min {min(t):.2f}, median {np.median(t):.2f} '
          f'ms/image CPU time ({args.threads} thread(s), {args.repeats} '
          'repeats, interleaved)')
  # Each round times old and new back to back: their ratio is steadier than
  # either time when other processes share the machine.
  ratios = np.asarray(times['new']) / np.asarray(times['old'])
  print(f'{args.mode} new/old per round: median {np.median(ratios):.3f} '
        f'(min {ratios.min():.3f}, max {ratios.max():.3f})')


if __name__ == '__main__':
  main()
