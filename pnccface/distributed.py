"""Multi-host setup: every launch script calls `initialize()` once, first.

On a multi-host TPU slice or GPU cluster each host runs the same launch
script; `jax.distributed.initialize` connects them so that pmapped steps
reduce over the devices of all hosts (`jax.device_count()`), while each host
feeds its own `jax.local_device_count()` devices. Modes:

  --distributed=auto (default): initialise when the environment names a
    cluster JAX detects itself -- a TPU pod slice, SLURM with several
    tasks, Open MPI with several ranks -- or when --coordinator_address is
    given; else stay single-process (laptops, Colab, one GPU).
  --distributed=on: always initialise (auto-detection, or the flags below).
  --distributed=off: never.

Explicit set-up (e.g. two processes on one machine):
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I
On CPU, several processes need CPU collectives (gloo), enabled here.

Info logs of the other processes are silenced here; outputs that must be
written once (summaries, reports, figures, config.json, annotated datasets)
are guarded by `is_main_process()`; work on a shared disk that must happen
once before the others read it (building a TFDS dataset, claiming a workdir)
runs under `main_process_first`. Evaluation: each process evaluates its
`process_share` of the batches and `sum_across_processes` adds the sums;
per-image results (the Table-1 predictions) are computed on each process's
`process_rows` and put back together, in order, on every process by
`gather_rows`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

from absl import flags
from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

MODES = ('auto', 'on', 'off')


def define_flags() -> None:
  """Defines --distributed, --coordinator_address, --num_processes and
  --process_id (call once, at import time of a launch script)."""
  flags.DEFINE_enum('distributed', 'auto', MODES,
                    'Multi-host initialisation: auto, on or off.')
  flags.DEFINE_string('coordinator_address', None,
                      'HOST:PORT of process 0, for an explicit set-up.')
  flags.DEFINE_integer('num_processes', None,
                       'Number of processes, for an explicit set-up.')
  flags.DEFINE_integer('process_id', None,
                       'This process, 0 .. num_processes - 1.')


def _cluster_detected() -> bool:
  """Whether the environment is a cluster JAX auto-detects, with > 1 process."""
  env = os.environ
  if len(env.get('TPU_WORKER_HOSTNAMES', '').split(',')) > 1:
    return True  # a multi-host TPU slice
  if int(env.get('SLURM_NTASKS', env.get('SLURM_NPROCS', '1')) or 1) > 1:
    return True
  return int(env.get('OMPI_COMM_WORLD_SIZE', '1') or 1) > 1


def initialize(mode: str | None = None, coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None) -> int:
  """Connects this process to the others, where that applies.

  Arguments left None are read from the flags of `define_flags()` when they
  are defined (and parsed), else take the defaults above.

  Returns:
    This process's index (0 when single-process).
  """
  def from_flag(value, name, default=None):
    if value is not None:
      return value
    if name in flags.FLAGS and flags.FLAGS.is_parsed():
      return flags.FLAGS[name].value
    return default

  mode = from_flag(mode, 'distributed', 'auto')
  coordinator_address = from_flag(coordinator_address, 'coordinator_address')
  num_processes = from_flag(num_processes, 'num_processes')
  process_id = from_flag(process_id, 'process_id')
  if mode not in MODES:
    raise ValueError(f'distributed mode must be one of {MODES}, got {mode!r}')
  explicit = coordinator_address is not None
  if explicit and (num_processes is None or process_id is None):
    raise ValueError('--coordinator_address needs --num_processes and '
                     '--process_id')
  if mode == 'off' or (mode == 'auto' and not explicit and
                       not _cluster_detected()):
    return 0
  if num_processes is not None and num_processes > 1:
    # CPU processes reduce through gloo; harmless on GPU/TPU.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id)
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)  # progress logs: process 0 only
  logging.info('process %d of %d; %d local of %d devices',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return jax.process_index()


def is_main_process() -> bool:
  """True on process 0, which alone writes logs, summaries and reports."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process has reached the barrier `name` (the same
  name on all); a no-op in a single process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def main_process_first(name: str):
  """Process 0 runs the block first; the others run it once process 0 has
  finished (e.g. a dataset build on a shared disk: built once, then found
  by the others; on separate disks each host still builds its own)."""
  if not is_main_process():
    barrier(name)
  try:
    yield
  finally:  # also when process 0 raises: the others then raise the same
    if is_main_process():
      barrier(name)


def process_share(items: Iterable) -> Iterator:
  """This process's share of `items` (e.g. evaluation batches): every
  `process_count()`-th item from the `process_index()`-th; all of them in a
  single process."""
  return itertools.islice(items, jax.process_index(), None,
                          jax.process_count())


def sum_across_processes(values: Sequence[float]) -> np.ndarray:
  """[N] float32: `values` summed over all processes (every process calls
  it with its own N values, e.g. per-process sums and counts)."""
  values = np.asarray(values, np.float32)
  if jax.process_count() == 1:
    return values
  return np.asarray(multihost_utils.process_allgather(values)).sum(axis=0)


def _rows_per_process(num_rows: int) -> int:
  return -(-num_rows // jax.process_count())  # ceil


def process_rows(num_rows: int) -> slice:
  """This process's contiguous block of `num_rows` rows (e.g. the images of
  an evaluation): blocks of ceil(num_rows / process_count()) in process
  order, the last ones shorter or empty; slice(0, num_rows) in a single
  process. `gather_rows` puts the blocks' results back in row order."""
  if num_rows < 0:
    raise ValueError(f'num_rows must be >= 0, got {num_rows}')
  per = _rows_per_process(num_rows)
  start = min(jax.process_index() * per, num_rows)
  return slice(start, min(start + per, num_rows))


def map_rows(compute: Callable[[slice], Any], num_rows: int,
             empty: Any) -> Any:
  """Per-row work split across processes, the result on every process.

  Each process runs `compute(process_rows(num_rows))` on its block (or takes
  `empty` when its block is empty: more processes than rows) and
  `gather_rows` puts the blocks back in row order. Use it where every row's
  result depends on that row alone (an evaluation image's reconstruction).

  Args:
    compute: this process's block (a slice of the rows) -> a pytree of
      arrays [block length, ...].
    num_rows: the total.
    empty: the pytree of an empty block: `compute`'s trailing shapes and
      dtypes with 0 rows.
  """
  rows = process_rows(num_rows)
  local = compute(rows) if rows.stop > rows.start else empty
  return gather_rows(local, num_rows)


# Bytes of one all-gather call, over all processes: bounds the host (and
# accelerator) memory of gathering e.g. [N, V, 3] vertices in chunks of rows.
_GATHER_CHUNK_BYTES = 1 << 28


def gather_rows(local: Any, num_rows: int) -> Any:
  """Every process's per-row results of its `process_rows(num_rows)`, in row
  order, on every process (each calls it with its own block).

  Args:
    local: a pytree of arrays [n, ...] with n = this process's block length;
      trailing shapes and dtypes the same on every process, also where n = 0
      (more processes than rows). Any dtype: rows travel as raw bytes, so
      float64 stays float64 and the values are exact.
    num_rows: the total, as given to `process_rows`.

  Returns:
    The pytree of numpy arrays [num_rows, ...]; in a single process `local`
    itself (as numpy).
  """
  leaves, treedef = jax.tree_util.tree_flatten(local)
  leaves = [np.asarray(x) for x in leaves]
  if jax.process_count() == 1:
    return jax.tree_util.tree_unflatten(treedef, leaves)
  block = process_rows(num_rows)
  count = block.stop - block.start
  widths = []  # bytes per row of each leaf
  for x in leaves:
    if x.ndim == 0 or len(x) != count:
      raise ValueError(
          f'gather_rows: process {jax.process_index()} holds rows '
          f'{block.start}:{block.stop} ({count}) but a leaf has shape '
          f'{x.shape}')
    widths.append(x.dtype.itemsize * int(np.prod(x.shape[1:])))
  row_bytes = sum(widths)
  # Collective calls below are the same on every process (their count
  # depends only on num_rows and row_bytes, checked equal first).
  meta = np.asarray(multihost_utils.process_allgather(
      np.array([count, row_bytes], np.int32)))
  if len(set(meta[:, 1].tolist())) > 1:
    raise ValueError('gather_rows: the processes\' rows differ in shape or '
                     f'dtype: bytes per row by process {meta[:, 1].tolist()}')
  per = _rows_per_process(num_rows)
  # This block's rows as raw bytes, leaves side by side, padded to `per`.
  padded = np.zeros((per, row_bytes), np.uint8)
  offset = 0
  for x, width in zip(leaves, widths):
    padded[:count, offset:offset + width] = np.ascontiguousarray(
        x).reshape(count, width // x.dtype.itemsize).view(np.uint8)
    offset += width
  step = max(1, _GATHER_CHUNK_BYTES // max(1, row_bytes * len(meta)))
  chunks = [np.asarray(multihost_utils.process_allgather(
      padded[start:start + step])) for start in range(0, per, step)
            if row_bytes]  # each [processes, rows, row_bytes]
  gathered = (np.concatenate(chunks, axis=1) if chunks else
              np.zeros((len(meta), per, row_bytes), np.uint8))
  # Block p starts at row p * per: flattening puts every row in its place.
  flat = gathered.reshape(-1, row_bytes)[:num_rows]
  out, offset = [], 0
  for x, width in zip(leaves, widths):
    out.append(np.ascontiguousarray(flat[:, offset:offset + width]).view(
        x.dtype).reshape(num_rows, *x.shape[1:]))
    offset += width
  return jax.tree_util.tree_unflatten(treedef, out)
