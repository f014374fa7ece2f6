"""Speed and memory of the JAX rasterizer (prints a table).

    python benchmarks/render_bench.py [--sizes 128,224] [--batches 1,16]
        [--repeats 10] [--method scatter|sort|native] [--single_thread_only]
        [--profile]

Rows: the embedded face model (skipped while it raises NotImplementedError),
the 3DDFA neck-free topology (76,073 triangles on 38,365 of the 53,215
vertices; tri_noneck.pkl indexes the indices_noneck.npy subset, 0-based) read
from ../shared/data/3ddfa when present, else a generated sphere of similar
size. Per row: forward PNCC render and forward+backward of a photometric loss
(ms per image, best of `repeats` after warm-up; wall clock and process CPU
time), compile time of the forward+backward, and XLA's temp-buffer size of
the compiled forward+backward (`memory_analysis`). Last, a brute-force NumPy
rasterizer on a small case, for the ratio. Then the single-thread row: the
3DDFA mesh at 224x224, batch 16, in a child process pinned to one core with
XLA's multi-threaded Eigen off (the setting of 3DDFA_V2's single-thread C++
Sim3DR renderer, 3.35 ms/image there). `--profile` prints where the forward
PNCC render spends its time, per XLA op (from a `jax.profiler` trace).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import pickle
import re
import resource
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from pnccface import render
from pnccface.render import meshes

SHARED = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data'


def load_meshes():
  """{name: (vertices [V, 3] model frame, triangles [T, 3]) or exception}."""
  out = {}
  try:
    from pnccface.facemodel import default_model  # pylint: disable=g-import-not-at-top
    model = default_model()
    out['embedded model'] = (np.asarray(model.mean_shape),
                             np.asarray(model.triangles))
  except NotImplementedError as e:
    out['embedded model'] = e
  folder = SHARED / '3ddfa'
  if (folder / 'tri_noneck.pkl').exists():
    vertices = (np.load(folder / 'u_shp.npy') +
                np.load(folder / 'u_exp.npy')).reshape(-1, 3)
    vertices = vertices[np.load(folder / 'indices_noneck.npy')]
    with open(folder / 'tri_noneck.pkl', 'rb') as f:
      triangles = np.asarray(pickle.load(f)).T.astype(np.int32)
    out['3DDFA no-neck'] = (vertices, triangles)
  else:
    out['sphere (no 3DDFA)'] = meshes.uv_sphere(180, 212)
  return out


def to_screen(vertices, size, batch, seed=0):
  """Centred, filling ~90% of the image, small random shifts per image."""
  lo, hi = vertices.min(0), vertices.max(0)
  scale = 0.9 * size / (hi - lo)[:2].max()
  centre = (lo + hi) / 2
  screen = np.stack([(vertices[:, 0] - centre[0]) * scale + size / 2,
                     -(vertices[:, 1] - centre[1]) * scale + size / 2,
                     -(vertices[:, 2] - centre[2]) * scale], -1)
  shifts = np.random.default_rng(seed).normal(0, 0.5, (batch, 1, 3))
  return jnp.asarray(screen[None] + shifts, jnp.float32)


def best_time(fn, args, repeats):
  jax.block_until_ready(fn(*args))
  walls, cpus = [], []
  for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  return min(walls), min(cpus)


def bench_row(vertices, triangles, size, batch, repeats, method):
  screen = to_screen(vertices, size, batch)
  ncc = jnp.asarray(render.vertex_normals(vertices, triangles) * 0.5 + 0.5)
  albedo = jnp.full(vertices.shape, 0.6, jnp.float32)
  sh = render.ambient_sh_coefficients(batch)
  target = jnp.full((batch, size, size, 3), 0.4)

  forward = jax.jit(lambda v: render.render_pncc(
      v, triangles, ncc, size, size, method=method)[0])

  def loss(v, a, s):
    image, _ = render.render_shaded(v, triangles, a, s, size, size,
                                    method=method)
    return jnp.mean((image - target)**2)

  backward = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  start = time.perf_counter()
  compiled = backward.lower(screen, albedo, sh).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  temp_mb = (getattr(memory, 'temp_size_in_bytes', 0) / 2**20
             if memory is not None else float('nan'))
  fwd_wall, fwd_cpu = best_time(forward, (screen,), repeats)
  bwd_wall, bwd_cpu = best_time(compiled, (screen, albedo, sh), repeats)
  return dict(fwd=1e3 * fwd_wall / batch, fwd_cpu=1e3 * fwd_cpu / batch,
              fb=1e3 * bwd_wall / batch, fb_cpu=1e3 * bwd_cpu / batch,
              compile=compile_s, temp_mb=temp_mb)


def brute_force_ratio(method):
  """Vectorised NumPy all-pixels x all-triangles test vs the JAX rasterizer."""
  vertices, triangles = meshes.uv_sphere(20, 26)  # ~1k triangles
  size = 64
  screen = np.asarray(to_screen(vertices, size, 1))[0].astype(np.float64)
  tv = screen[triangles]
  rows, cols = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5,
                           indexing='ij')
  centres = np.stack([cols, rows], -1).reshape(-1, 1, 2)  # (x, y)

  def brute():
    px, py = centres[..., 0], centres[..., 1]
    a, b, c = tv[None, :, 0], tv[None, :, 1], tv[None, :, 2]
    edge = lambda p, q: ((q[..., 0] - p[..., 0]) * (py - p[..., 1]) -
                         (q[..., 1] - p[..., 1]) * (px - p[..., 0]))
    w = np.stack([edge(b, c), edge(c, a), edge(a, b)], -1)
    area = w.sum(-1)
    inside = np.all(w * np.sign(area)[..., None] >= 0, -1) & (area != 0)
    depth = np.where(inside, (w * tv[None, :, :, 2]).sum(-1) / np.where(
        area == 0, 1, area), np.inf)
    return np.where(np.isfinite(depth.min(1)), depth.argmin(1), -1)

  start = time.perf_counter()
  ref = brute()
  brute_s = time.perf_counter() - start
  fn = jax.jit(lambda v: render.rasterize(v, triangles, size, size,
                                          method=method).triangle_id)
  jax_s, _ = best_time(fn, (jnp.asarray(screen, jnp.float32)[None],), 10)
  ids = np.asarray(fn(jnp.asarray(screen, jnp.float32)[None]))
  agree = np.mean(ids.reshape(-1) == ref)
  return len(triangles), size, brute_s, jax_s, agree


def profile_forward(vertices, triangles, size, batch, method, top=25):
  """Prints the forward PNCC render's time per XLA op (ms/image, wall)."""
  screen = to_screen(vertices, size, batch)
  ncc = jnp.asarray(render.vertex_normals(vertices, triangles) * 0.5 + 0.5)
  forward = jax.jit(lambda v: render.render_pncc(
      v, triangles, ncc, size, size, method=method)[0])
  jax.block_until_ready(forward(screen))
  repeats = 3
  with tempfile.TemporaryDirectory() as folder:
    jax.profiler.start_trace(folder)
    for _ in range(repeats):
      jax.block_until_ready(forward(screen))
    jax.profiler.stop_trace()
    trace, = glob.glob(f'{folder}/plugins/profile/*/*.trace.json.gz')
    with gzip.open(trace) as f:
      events = json.load(f)['traceEvents']
  # HLO instruction name -> (shape, the JAX op it came from).
  ops = {}
  for line in forward.lower(screen).compile().as_text().splitlines():
    match = re.match(r'\s*(?:ROOT )?%(\S+) = (\S+) ', line)
    if match:
      origin = re.search(r'op_name="([^"]*)"', line)
      ops[match.group(1)] = (match.group(2).split('{')[0],
                             origin.group(1) if origin else '')
  total = collections.Counter()
  for event in events:
    # A while loop's time includes its body's ops, which are counted.
    if (event.get('ph') == 'X' and event['name'] in ops and
        not event['name'].startswith('while')):
      total[event['name']] += event['dur'] * 1e-3 / repeats / batch
  print(f'\nforward PNCC render, {size}x{size}, batch {batch}: '
        f'{sum(total.values()):.2f} ms/image (wall) in XLA ops; the top {top} '
        '(ms/image, HLO op, shape, JAX op):')
  for name, ms in total.most_common(top):
    shape, origin = ops[name]
    print(f'{ms:7.3f}  {name:<28} {shape:<26} {origin[-50:]}')


def single_thread_row(repeats, method):
  """The 3DDFA row in a child process on one core, Eigen single-threaded."""
  env = dict(os.environ, XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                                    ' --xla_cpu_multi_thread_eigen=false'))
  command = [sys.executable, __file__, '--single_thread_only',
             f'--repeats={repeats}'] + ([f'--method={method}'] if method else [])
  result = subprocess.run(command, env=env, capture_output=True, text=True,
                          check=True)
  return result.stdout.strip()


def print_row(name, triangles, size, batch, r):
  print(f'{name:<18} {len(triangles):>7} {size:>3}x{size:<3} '
        f'{batch:>3} {r["fwd"]:>11.2f} {r["fwd_cpu"]:>7.2f} '
        f'{r["fb"]:>15.2f} {r["fb_cpu"]:>7.2f} {r["compile"]:>9.2f} '
        f'{r["temp_mb"]:>9.1f}', flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', default='128,224')
  parser.add_argument('--batches', default='1,16')
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--method', default=None, choices=render.METHODS)
  parser.add_argument('--single_thread_only', action='store_true',
                      help='only the 3DDFA (or sphere) 224x224 batch-16 row, '
                      'in this process (the parent pins it to one core)')
  parser.add_argument('--profile', action='store_true',
                      help='also print the forward render time per XLA op')
  args = parser.parse_args()
  if args.single_thread_only:
    # Before JAX starts its thread pool: its threads inherit the affinity.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  method = args.method or render.default_method()
  sizes = [int(s) for s in args.sizes.split(',')]
  batches = [int(b) for b in args.batches.split(',')]
  meshes_by_name = load_meshes()
  big_name = list(meshes_by_name)[-1]  # 3DDFA no-neck, else the sphere
  if args.single_thread_only:
    vertices, triangles = meshes_by_name[big_name]
    r = bench_row(vertices, triangles, 224, 16, args.repeats, method)
    print_row(big_name + ' 1 core', triangles, 224, 16, r)
    return
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} '
        f'({jax.local_device_count()} devices, {os.cpu_count()} cores), '
        f'method={method}')
  header = (f'{"mesh":<18} {"tris":>7} {"HxW":>7} {"B":>3} '
            f'{"fwd ms/img":>11} {"(cpu)":>7} {"fwd+bwd ms/img":>15} '
            f'{"(cpu)":>7} {"compile s":>9} {"temp MiB":>9}')
  print(header)
  print('-' * len(header))
  for name, mesh in meshes_by_name.items():
    if isinstance(mesh, Exception):
      print(f'{name:<18} skipped: {mesh}')
      continue
    vertices, triangles = mesh
    for size in sizes:
      for batch in batches:
        r = bench_row(vertices, triangles, size, batch, args.repeats, method)
        print_row(name, triangles, size, batch, r)
  if jax.default_backend() == 'cpu':
    print(single_thread_row(args.repeats, args.method), flush=True)
  if args.profile:
    profile_forward(*meshes_by_name[big_name], 224, 16, method)
  tris, size, brute_s, jax_s, agree = brute_force_ratio(method)
  print(f'\nbrute-force NumPy (all pixels x all triangles), {tris} triangles, '
        f'{size}x{size}: {1e3 * brute_s:.1f} ms; JAX rasterize: '
        f'{1e3 * jax_s:.2f} ms (x{brute_s / jax_s:.0f}); ids agree on '
        f'{100 * agree:.2f}% of pixels')
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
  print(f'peak resident memory of this process: {peak:.0f} MiB')


if __name__ == '__main__':
  main()
