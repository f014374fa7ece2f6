"""Shared test helpers: ../shared/data (skipping when absent), a per-session
XLA compilation cache, the small procedural faces and face model the training
tests share, the brute-force rasterizer, MoFa's true code of synthetic faces,
the runner of README commands and several processes faked in one
(`as_processes`)."""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

# Tests call train() many times on the same tiny configs, and each call binds
# and compiles its own step (as a launch script does, once). A persistent
# compilation cache shared by the session, and by the subprocesses it starts
# (hence the environment, set before jax is imported), lets XLA compile each
# computation once. It is fresh per session: no stale entries from another jax
# or another checkout are ever read.
_COMPILATION_CACHE = None
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _COMPILATION_CACHE = tempfile.mkdtemp(prefix='pnccface_tests_xla_')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _COMPILATION_CACHE
  # jax's default (1 s) would skip most of the tests' small computations.
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

from pnccface import facemodel  # pylint: disable=g-import-not-at-top,wrong-import-position
from pnccface import geometry  # pylint: disable=g-import-not-at-top,wrong-import-position
from pnccface.data import synthesis  # pylint: disable=g-import-not-at-top,wrong-import-position
from pnccface.models import mofa as mofa_model  # pylint: disable=g-import-not-at-top,wrong-import-position
from pnccface.train import common  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get('PNCCFACE_SHARED_DATA',
                   pathlib.Path(__file__).resolve().parents[1].parent /
                   'shared' / 'data'))


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _COMPILATION_CACHE is not None:
    shutil.rmtree(_COMPILATION_CACHE, ignore_errors=True)


@pytest.fixture
def shared_data() -> pathlib.Path:
  """../shared/data (or $PNCCFACE_SHARED_DATA); skips the test when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'shared data not found at {SHARED_DATA}')
  return SHARED_DATA


def as_processes(monkeypatch, count, fn):
  """fn() run as each of `count` processes in turn (jax.process_index and
  process_count faked), its all-gathers answered from every process's
  calls: a first pass records each process's arguments (answering each with
  copies of its own), a second answers the k-th call with the k-th calls of
  all processes stacked. Returns the second pass's results by process."""
  sent = [[] for _ in range(count)]
  state = {}

  def allgather(x, tiled=False):
    assert not tiled
    process, calls = state['process'], sent[state['process']]
    if state['record']:
      calls.append(np.asarray(x))
      return np.stack([np.asarray(x)] * count)
    k = state['calls']
    state['calls'] += 1
    return np.stack([sent[q][k] for q in range(count)])

  monkeypatch.setattr(jax, 'process_count', lambda: count)
  monkeypatch.setattr(jax, 'process_index', lambda: state['process'])
  monkeypatch.setattr(multihost_utils, 'process_allgather', allgather)
  results = []
  for record in (True, False):
    results = []
    for process in range(count):
      state.update(process=process, record=record, calls=0)
      results.append(fn())
  return results


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


def few_shot_source(data: dict, batch_size: int):
  """Deterministic per-step batches [1, B, ...] drawn from `data`:
  step s uses RandomState(s), so any start step is cheap to seek to."""
  n = data['image'].shape[0]

  def batch_for_step(step):
    idx = np.random.RandomState(step).randint(0, n, batch_size)
    return {k: v[idx][None] for k, v in data.items()}

  return common.batches_from_fn(batch_for_step)


def tiny_face_model(grid: int = 33, seed: int = 0):
  """A small smooth 'face': a bumped elliptic cap on a grid (mm units)."""
  rng = np.random.default_rng(seed)
  u = np.linspace(-1.0, 1.0, grid)
  xs, ys = np.meshgrid(u, u)  # row i: y = u[i] (up), column j: x = u[j]
  r2 = xs**2 + ys**2
  nose = 12.0 * np.exp(-(xs**2 + (ys + 0.05)**2) / 0.02)
  z = 35.0 * (1.0 - 0.6 * r2) + nose
  mean = np.stack([70.0 * xs, 90.0 * ys, z], -1).reshape(-1, 3)
  idx = np.arange(grid * grid).reshape(grid, grid)
  a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
  c, d = idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
  triangles = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
  # 68 landmarks: a jaw arc, brows, nose, eyes and a mouth ring.
  t = np.linspace(0, 1, 17)
  jaw = np.stack([-0.8 + 1.6 * t, -0.1 - 0.7 * np.sin(np.pi * t)], 1)
  brows = np.stack([np.r_[np.linspace(-0.6, -0.15, 5), np.linspace(0.15, 0.6, 5)],
                    np.full(10, 0.45)], 1)
  nose_pts = np.r_[np.stack([np.zeros(4), np.linspace(0.3, 0.0, 4)], 1),
                   np.stack([np.linspace(-0.15, 0.15, 5), np.full(5, -0.08)], 1)]
  eye = lambda cx: np.stack([cx + 0.15 * np.cos(np.linspace(0, 2 * np.pi, 7)[:-1]),
                             0.25 + 0.06 * np.sin(np.linspace(0, 2 * np.pi, 7)[:-1])], 1)
  mouth = lambda rx, ry, n: np.stack(
      [rx * np.cos(np.linspace(0, 2 * np.pi, n + 1)[:-1]),
       -0.4 + ry * np.sin(np.linspace(0, 2 * np.pi, n + 1)[:-1])], 1)
  pts = np.concatenate([jaw, brows, nose_pts, eye(-0.35), eye(0.35),
                        mouth(0.35, 0.12, 12), mouth(0.2, 0.05, 8)])
  grid_xy = np.stack([xs.ravel(), ys.ravel()], 1)
  landmarks = np.argmin(((pts[:, None] - grid_xy[None])**2).sum(-1), 1)
  def smooth_fields(k, amp):
    f = []
    for _ in range(k):
      fx, fy, px, py = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), *rng.uniform(0, 6.3, 2)
      base = np.cos(fx * np.pi * xs + px) * np.cos(fy * np.pi * ys + py)
      f.append(base.reshape(-1, 1) * rng.normal(size=(1, 3)) * amp)
    return np.stack(f, -1).astype(np.float32)
  shape_basis = smooth_fields(6, 1.0)
  expression_basis = smooth_fields(3, 1.0)
  albedo_basis = smooth_fields(4, 1.0)
  skin = np.array([0.75, 0.55, 0.45])
  dark = (np.exp(-((np.abs(xs) - 0.35)**2 + (ys - 0.25)**2) / 0.01) +
          np.exp(-(xs**2 / 0.1 + (ys + 0.4)**2 / 0.005)))
  stripes = 0.1 * np.cos(3 * np.pi * xs)[..., None] * np.array([1.0, -0.5, 0.2])
  albedo = (skin * (1 - 0.6 * np.clip(dark, 0, 1))[..., None] + stripes)
  return facemodel.make_model(
      mean_shape=mean, triangles=triangles, landmark_indices=landmarks,
      shape_basis=shape_basis, shape_std=np.full(6, 4.0),
      expression_basis=expression_basis, expression_std=np.full(3, 3.0),
      albedo_mean=albedo.reshape(-1, 3), albedo_basis=albedo_basis,
      albedo_std=np.full(4, 0.05), name='tiny_test_face')


def rendered_faces(face_model, seed: int, count: int, size: int) -> dict:
  """`count` synthetic faces of `face_model` at `size` px, seeded.

  {'image', 'pncc': [count, size, size, 3], 'landmarks_2d': [count, 68, 2]
  pixels, 'landmark_weights': [count, 68] ones}, float32 numpy.
  """
  rng = np.random.default_rng(seed)
  ranges = synthesis.SamplingRanges(yaw_degrees=30.0, pitch_degrees=10.0,
                                    roll_degrees=10.0)
  params = synthesis.sample_face_params(rng, face_model, count, size, ranges)
  faces = synthesis.render_faces(
      face_model, params,
      jnp.asarray(synthesis.random_backgrounds(rng, count, size, size)), size)
  return {'image': np.asarray(faces.image), 'pncc': np.asarray(faces.pncc),
          'landmarks_2d': np.asarray(faces.landmarks_2d),
          'landmark_weights': np.ones((count, 68), np.float32)}


# Independent reference: float64 NumPy, every pixel centre in every
# triangle's bounding box (no windows, tiers or quantisation), inclusive
# edges, nearest depth then smaller id.


def reference_rasterize(vertices, triangles, height, width):
  """[V, 3], [T, 3] -> ids [H, W] (-1 background), barycentrics [H, W, 3]."""
  v = np.asarray(vertices, np.float64)
  tv = v[np.asarray(triangles)]
  x, y = tv[..., 0], tv[..., 1]
  col0 = np.clip(np.ceil(x.min(1) - 0.5), 0, width)
  col1 = np.clip(np.floor(x.max(1) - 0.5), -1, width - 1)
  row0 = np.clip(np.ceil(y.min(1) - 0.5), 0, height)
  row1 = np.clip(np.floor(y.max(1) - 0.5), -1, height - 1)
  num_cols = np.maximum(col1 - col0 + 1, 0).astype(np.int64)
  num_rows = np.maximum(row1 - row0 + 1, 0).astype(np.int64)
  count = num_cols * num_rows
  tri = np.repeat(np.arange(len(tv)), count)
  offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
  rows = row0[tri].astype(np.int64) + offset // num_cols[tri]
  cols = col0[tri].astype(np.int64) + offset % num_cols[tri]
  px, py = cols + 0.5, rows + 0.5
  a, b, c = tv[tri, 0], tv[tri, 1], tv[tri, 2]

  def edge(p, q, qx, qy):
    return (q[:, 0] - p[:, 0]) * (qy - p[:, 1]) - (q[:, 1] - p[:, 1]) * (
        qx - p[:, 0])

  w = np.stack([edge(b, c, px, py), edge(c, a, px, py), edge(a, b, px, py)],
               -1)
  area = edge(a, b, c[:, 0], c[:, 1])
  inside = (area != 0) & np.all(w * np.sign(area)[:, None] >= 0, axis=-1)
  with np.errstate(divide='ignore', invalid='ignore'):
    bary = w / area[:, None]
  depth = np.sum(bary * np.stack([a[:, 2], b[:, 2], c[:, 2]], -1), -1)
  tri, pixel, depth, bary = (tri[inside], (rows * width + cols)[inside],
                             depth[inside], bary[inside])
  order = np.lexsort((tri, depth, pixel))
  pixel, tri, bary = pixel[order], tri[order], bary[order]
  first = np.r_[True, pixel[1:] != pixel[:-1]]
  ids = np.full(height * width, -1)
  ids[pixel[first]] = tri[first]
  out_bary = np.zeros((height * width, 3))
  out_bary[pixel[first]] = bary[first]
  return ids.reshape(height, width), out_bary.reshape(height, width, 3)


def true_face_code(face_model, params, size: int):
  """The MoFa `FaceCode` that reproduces synthetic faces' parameters
  (`synthesis.sample_face_params` output) at `size` px."""
  pose = params.pose_para
  rotation = np.asarray(geometry.euler_to_rotation(*pose[:, :3].T))
  lms = np.asarray(face_model.landmarks(face_model.mean_shape))
  centre_model = lms.mean(axis=0)
  p = pose[:, 6:7] * np.einsum('bij,j->bi', rotation, centre_model) + pose[:, 3:6]
  centre_image = np.stack([p[:, 0] - 0.5, size + 1.0 - p[:, 1] - 0.5], -1)
  s0 = float(mofa_model.default_scale(face_model, size))
  return mofa_model.FaceCode(
      shape=params.shape / np.asarray(face_model.shape_std),
      expression=params.expression / np.asarray(face_model.expression_std),
      albedo=params.albedo / np.asarray(face_model.albedo_std),
      angles=jnp.asarray(pose[:, :3]),
      centre=jnp.asarray((centre_image - size / 2) / size),
      log_scale=jnp.log(jnp.asarray(pose[:, 6]) / s0),
      sh=jnp.asarray(params.sh))


def run_readme_command(command: str, cwd, data_dir) -> str:
  """Runs a README `python ...` command in `cwd` (TFDS in `data_dir`);
  asserts it succeeds and returns its output."""
  env = dict(os.environ, PYTHONPATH=str(cwd), TFDS_DATA_DIR=str(data_dir))
  result = subprocess.run(command.replace('python ', f'{sys.executable} ', 1),
                          shell=True, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=3600)
  output = result.stdout + result.stderr
  assert result.returncode == 0, f'{command} failed:\n{output[-5000:]}'
  return output
