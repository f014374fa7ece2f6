"""Speed and memory of each stage's train step (prints a markdown table).

    python benchmarks/train_bench.py [--stages autoencoder,pncc,mofa]
        [--sizes cpu,paper] [--devices 1,4] [--dtypes float32,bfloat16]
        [--steps 5] [--cpu_batch 16] [--paper_batch 8]

Quick run (about 2-3 minutes on 2 idle CPU cores):

    python benchmarks/train_bench.py --sizes=cpu --steps=3

Rows: the real pmapped train step of each stage (`make_train_step`, as
`train()` runs it) on random inputs of the right shapes:
  autoencoder: stage 0 with its image and latent discriminators (GAN on);
  pncc: stage 1 (frozen autoencoder + ITLs/SCAF, as the paper trains it);
  mofa: stage 2, encoder + 3DMM decode + render forward and backward.
Sizes: 'cpu' = configs/pipeline.py's CPU-sized stages (64 px), 'paper' =
each stage config's defaults (256 px for the autoencoder and PNCC, 240 for
MoFa). The global batch (`--cpu_batch`, `--paper_batch`) is split over
`--devices` devices: on CPU these are forced host devices
(`--xla_force_host_platform_device_count`, set before JAX starts: one child
process per row); on GPU/TPU rows needing more devices than present are
skipped. `--dtypes`: the conv nets' compute dtype (`config.model.dtype`,
pnccface/models/precision.py; params, losses, decode and renderer stay
float32), both by default so that one run gives both figures; on a CPU
without native bfloat16 matrix units, bfloat16 can be slower (it depends on the op).
Columns: compile time of the step; ms per step and images/s (mean
over `--steps` steps after one warm-up step); for MoFa the share of the step
spent in the renderer (a pmapped forward+backward of `render_shaded` alone,
with the step's per-device inputs: the vertices, albedo and light the
initial encoder predicts); peak memory (CPU: the child's max resident set;
GPU/TPU: the device's peak bytes in use).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
STAGES = ('autoencoder', 'pncc', 'mofa')
SIZES = ('cpu', 'paper')
DTYPES = ('float32', 'bfloat16')  # pnccface.models.precision.COMPUTE_DTYPES


def stage_config(stage: str, size: str, batch: int, dtype: str = 'float32'):
  """The stage's config at `size` ('cpu': configs/pipeline.py; 'paper': the
  stage config's defaults) with global batch `batch` and the nets' compute
  `dtype`."""
  sys.path.insert(0, str(ROOT))  # the `configs` package
  from configs import autoencoder, mofa, pipeline, pncc_full  # pylint: disable=g-import-not-at-top
  if size == 'cpu':
    config = pipeline.get_config()[{'autoencoder': 'autoencoder',
                                    'pncc': 'pncc_full', 'mofa': 'mofa'}[stage]]
  else:
    config = {'autoencoder': autoencoder, 'pncc': pncc_full,
              'mofa': mofa}[stage].get_config()
  if stage == 'autoencoder':
    config.loss.with_gan = True  # the step with both discriminators
    config.loss.with_zgan = True
  config.batch_size = batch
  config.model.dtype = dtype
  return config


def random_batch(stage: str, config, num_devices: int, rng) -> dict:
  """Inputs of the stage's step, [D, B / D, ...], uniform in [0, 1]."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  b = config.batch_size // num_devices
  uniform = lambda *shape: rng.uniform(size=(num_devices, b) + shape).astype(
      'float32')
  if stage == 'mofa':
    s = config.image_size
    return {'image': uniform(s, s, 3),
            'landmarks_2d': s * (0.3 + 0.4 * uniform(68, 2)),
            'landmark_weights': np.ones((num_devices, b, 68), np.float32)}
  r = config.model.resolution
  batch = {'image': uniform(r, r, 3)}
  if stage == 'pncc':
    batch['pncc'] = uniform(r, r, 3)
    batch['mask'] = (uniform(r, r, 1) > 0.5).astype('float32')
  return batch


def timed_steps(step, state, args, steps: int):
  """(state, seconds per step) over `steps` calls after one warm-up call."""
  import jax  # pylint: disable=g-import-not-at-top
  state, metrics = step(state, *args)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, *args)
  jax.block_until_ready((state, metrics))
  return state, (time.perf_counter() - start) / steps


def renderer_seconds(config, face_model, state, batch, steps: int,
                     devices) -> float:
  """Seconds of a pmapped forward+backward of the renderer alone on the
  step's per-device inputs (the initial encoder's vertices, albedo, light)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from pnccface import render  # pylint: disable=g-import-not-at-top
  from pnccface.train import common, mofa as mofa_train  # pylint: disable=g-import-not-at-top
  model = mofa_train.face_model_for(config, face_model)
  predict = mofa_train.make_predict_fn(config, face_model)
  variables = {'params': common.unreplicate(state.params)}
  if state.batch_stats:
    variables['batch_stats'] = common.unreplicate(state.batch_stats)
  image = jnp.asarray(batch['image'][0])
  recon, code = predict(variables, image)
  albedo = model.albedo(code.albedo * model.albedo_std)
  size = config.image_size
  triangles = model.triangles

  def loss(screen, albedo, sh, background):
    rendered, _ = render.render_shaded(screen, triangles, albedo, sh, size,
                                       size, background=background)
    return jnp.mean(rendered)

  grads = jax.pmap(jax.grad(loss, argnums=(0, 1, 2)), devices=devices)
  args = common.replicate((recon.vertices_screen, albedo, code.sh, image),
                          devices)
  out = grads(*args)
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    out = grads(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def peak_memory_mib() -> float:
  import jax  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != 'cpu':
    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get('peak_bytes_in_use', float('nan')) / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def run_row(stage: str, size: str, num_devices: int, batch: int,
            steps: int, dtype: str = 'float32') -> dict:
  """One row, in this process (the parent set the device count)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pnccface import stages  # pylint: disable=g-import-not-at-top
  from pnccface.train import autoencoder, common, mofa, pncc  # pylint: disable=g-import-not-at-top
  if jax.local_device_count() < num_devices:
    return {'skipped': f'{jax.local_device_count()} devices'}
  config = stage_config(stage, size, batch, dtype)
  module = {'autoencoder': autoencoder, 'pncc': pncc, 'mofa': mofa}[stage]
  devices = jax.local_devices()[:num_devices]
  key = jax.random.PRNGKey(0)
  extra = ()
  if stage == 'mofa':
    face_model = stages.load_face_model(config.face_model)
    model = mofa.face_model_for(config, face_model)
    state = mofa.create_train_state(config, model, key)
    train_step = mofa.make_train_step(config, model)
    extra = (common.replicate(model, devices),)
  else:
    state = module.create_train_state(config, key)
    train_step = module.make_train_step(config)
  step = jax.pmap(train_step, axis_name=common.AXIS, devices=devices,
                  donate_argnums=(0,))
  batch_arrays = random_batch(stage, config, num_devices,
                              np.random.default_rng(0))
  state = common.replicate(state, devices)
  start = time.perf_counter()
  compiled = step.lower(state, batch_arrays, *extra).compile()
  compile_s = time.perf_counter() - start
  state, seconds = timed_steps(compiled, state, (batch_arrays, *extra), steps)
  device = jax.devices()[0]
  row = {'device': f'jax {jax.__version__}, {device.platform} '
                   f'({device.device_kind}), {os.cpu_count()} CPU cores',
         'compile_s': compile_s, 'ms_per_step': 1e3 * seconds,
         'images_per_s': batch / seconds,
         'pixels': config.image_size if stage == 'mofa' else
                   config.model.resolution}
  if stage == 'mofa':
    row['render_share'] = renderer_seconds(config, face_model, state,
                                           batch_arrays, steps,
                                           devices) / seconds
  row['peak_mib'] = peak_memory_mib()
  return row


def child_row(stage, size, num_devices, batch, steps, dtype) -> dict:
  """`run_row` in a fresh process with `num_devices` forced CPU devices."""
  flags = os.environ.get('XLA_FLAGS', '')
  env = dict(os.environ, XLA_FLAGS=(
      f'{flags} --xla_force_host_platform_device_count={num_devices}'))
  command = [sys.executable, __file__, '--row',
             f'{stage},{size},{num_devices},{batch},{steps},{dtype}']
  result = subprocess.run(command, env=env, capture_output=True, text=True)
  if result.returncode != 0:
    return {'skipped': 'failed: ' + (result.stderr.strip().splitlines() or
                                     ['?'])[-1][:120]}
  return json.loads(result.stdout.strip().splitlines()[-1])


def markdown_row(stage, size, num_devices, batch, dtype, row) -> str:
  cells = [stage, size, str(row.get('pixels', '')), str(batch),
           str(num_devices), dtype]
  if 'skipped' in row:
    return '| ' + ' | '.join(cells + [f'skipped: {row["skipped"]}'] +
                             [''] * 5) + ' |'
  share = (f'{100 * row["render_share"]:.0f}%' if 'render_share' in row
           else '')
  return '| ' + ' | '.join(cells + [
      f'{row["compile_s"]:.1f}', f'{row["ms_per_step"]:.1f}',
      f'{row["images_per_s"]:.1f}', share, f'{row["peak_mib"]:.0f}']) + ' |'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--stages', default=','.join(STAGES))
  parser.add_argument('--sizes', default=','.join(SIZES))
  parser.add_argument('--devices', default='1,4')
  parser.add_argument('--dtypes', default='float32,bfloat16',
                      help='compute dtypes of the conv nets (float32, '
                      'bfloat16)')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--cpu_batch', type=int, default=16,
                      help='global batch at the CPU size (the configs\')')
  parser.add_argument('--paper_batch', type=int, default=8,
                      help='global batch at the paper\'s size (one that fits '
                      'in a CPU machine\'s memory)')
  parser.add_argument('--row', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.row:  # a child: one row, printed as JSON
    stage, size, devices, batch, steps, dtype = args.row.split(',')
    print(json.dumps(run_row(stage, size, int(devices), int(batch),
                             int(steps), dtype)))
    return
  stage_names = args.stages.split(',')
  size_names = args.sizes.split(',')
  dtype_names = args.dtypes.split(',')
  for name, known in ((stage_names, STAGES), (size_names, SIZES),
                      (dtype_names, DTYPES)):
    unknown = set(name) - set(known)
    if unknown:
      parser.error(f'unknown {sorted(unknown)}; known: {known}')
  # No JAX here: on a GPU the children need its memory.
  print(f'{args.steps} timed steps per row\n')
  print('| stage | size | px | global batch | devices | dtype | compile s '
        '| ms/step | images/s | renderer share | peak MiB |')
  print('|---|---|---|---|---|---|---|---|---|---|---|')
  machine = '?'
  for stage in stage_names:
    for size in size_names:
      batch = args.cpu_batch if size == 'cpu' else args.paper_batch
      for devices in (int(d) for d in args.devices.split(',')):
        for dtype in dtype_names:
          if batch % devices:
            row = {'skipped': f'batch {batch} not divisible by {devices}'}
          else:
            row = child_row(stage, size, devices, batch, args.steps, dtype)
          print(markdown_row(stage, size, devices, batch, dtype, row),
                flush=True)
          machine = row.get('device', machine)
  print(f'\nmeasured with {machine}')


if __name__ == '__main__':
  main()
