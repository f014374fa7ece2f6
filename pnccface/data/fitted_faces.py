"""`fitted_faces`: a 300W-LP analogue built from real photos.

300W-LP's parameters are 3DMM fits to 68 landmarks; this builder does the
same on `face_photos` crops that have landmarks (faces68): it fits the
ICT-FaceKit model (`facemodel.ict_facekit_model`) with
`fitting.fit_landmarks`, stores the fitted pose (`Pose_Para` form, crop
frame), identity and expression, and renders the ground-truth PNCC and mask
in the crop. Importing this module registers the builder; it reads the photos
through `face_photos` (same `data_dir` and `manual_dir`).

Face profiling (3DDFA's way of building 300W-LP, Zhu et al. 2016, Sec. 5.1):
with `profile`, every photo also yields `copies` copies re-rendered at larger
yaws. The photo's colours are sampled onto the fitted mesh's vertices that
are visible in the photo (depth test against the z-buffer), the mesh is
rotated about its landmark centroid to `sign(yaw) * U(a_k, b_k)` for copy k,
[a_k, b_k] the k-th of `copies` equal parts of [min_yaw, max_yaw] (pitch and
roll kept), and rendered with those colours over the photo as background;
vertices hidden in the photo take the mean visible colour. Its PNCC, mask and
landmarks are those of the new pose. Unlike 3DDFA, the background is not
warped with the face, so the original face can show beside the rotated one.

Determinism: the profiled yaw of copy k of example `name` is drawn from
`np.random.default_rng([seed, crc32(name), k])`.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from pnccface import facemodel
from pnccface import fitting
from pnccface import geometry
from pnccface import render
from pnccface.data import face_photos
from pnccface.data import synthesis
from pnccface.data import synthetic_faces
from pnccface.facemodel import MorphableModel
from pnccface.render import rasterizer

_BATCH = 16
# A vertex is visible in the photo when it is at most this many pixels
# behind the z-buffer's surface at its pixel.
_DEPTH_TOLERANCE = 1.5


@dataclasses.dataclass
class FittedFacesConfig(tfds.core.BuilderConfig):
  """source: the `face_photos` config (with landmarks); image_size: crop side;
  profile: add `copies` profiled copies per photo, copy k at |yaw| in the
  k-th of `copies` equal parts of [min_yaw, max_yaw] degrees; max_images:
  only the first N source photos per split (tests)."""
  source: str = 'faces68'
  image_size: int = 128
  profile: bool = False
  min_yaw: float = 60.0
  max_yaw: float = 90.0
  copies: int = 1
  seed: int = 0
  max_images: int | None = None


@functools.partial(jax.jit, static_argnames=('size',))
def render_targets(model: MorphableModel, shape, expression, pose_para,
                   size: int):
  """PNCC [B, S, S, 3], mask [B, S, S, 1], landmarks [B, 68, 2] of fits."""
  screen = synthesis.face_vertices_screen(model, shape, expression, pose_para,
                                          size)
  pncc, mask = render.render_pncc(screen, model.triangles, model.ncc, size,
                                  size)
  return pncc, mask, model.landmarks(screen)[..., :2]


def profiled_pose(model: MorphableModel, shape, expression, pose_para,
                  yaw) -> np.ndarray:
  """`pose_para` [B, 7] turned to `yaw` [B] (rad) about the landmark centroid.

  The weak perspective `s R v + t` keeps the centroid c of the fitted 3D
  landmarks in place when t' = t + s (R - R') c.
  """
  pose_para = np.asarray(pose_para, np.float64)
  landmarks = np.asarray(model.vertices(shape, expression))[
      :, np.asarray(model.landmark_indices)]
  centroid = landmarks.mean(axis=1)
  pitch, _, roll = pose_para[:, 0], pose_para[:, 1], pose_para[:, 2]
  old = np.asarray(geometry.euler_to_rotation(*pose_para[:, :3].T))
  new = np.asarray(geometry.euler_to_rotation(pitch, yaw, roll))
  out = pose_para.copy()
  out[:, 1] = yaw
  out[:, 3:6] += pose_para[:, 6:7] * np.einsum('bij,bj->bi', old - new,
                                               centroid)
  return out.astype(np.float32)


@functools.partial(jax.jit, static_argnames=('size',))
def photo_vertex_colours(model: MorphableModel, images, shape, expression,
                         pose_para, size: int):
  """The photos' colours on their fitted meshes' vertices (module docstring).

  Args:
    images: [B, S, S, 3] float crops in [0, 1]; pose_para: [B, 7] in the
      crop frame.

  Returns:
    [B, V, 3]: each vertex's colour at its projection where the depth test
    shows it, the mean visible colour where the photo hides it.
  """
  screen = synthesis.face_vertices_screen(model, shape, expression, pose_para,
                                          size)
  raster = rasterizer.rasterize(screen, model.triangles, size, size)
  x, y = screen[..., 0] - 0.5, screen[..., 1] - 0.5
  sample = jax.vmap(lambda image, yy, xx: jnp.stack([
      jax.scipy.ndimage.map_coordinates(image[..., c], [yy, xx], order=1,
                                        mode='nearest') for c in range(3)],
                                                    -1))
  colours = sample(images, y, x)
  i = jnp.clip(jnp.floor(y + 0.5).astype(jnp.int32), 0, size - 1)
  j = jnp.clip(jnp.floor(x + 0.5).astype(jnp.int32), 0, size - 1)
  batch = jnp.arange(screen.shape[0])[:, None]
  surface = raster.depth[batch, i, j]
  covered = raster.triangle_id[batch, i, j] >= 0
  visible = covered & (screen[..., 2] <= surface + _DEPTH_TOLERANCE)
  weight = visible[..., None].astype(jnp.float32)
  mean = (colours * weight).sum(1, keepdims=True) / jnp.maximum(
      weight.sum(1, keepdims=True), 1.0)
  return weight * colours + (1 - weight) * mean


@functools.partial(jax.jit, static_argnames=('size',))
def render_coloured_faces(model: MorphableModel, images, colours, shape,
                          expression, pose_para, size: int):
  """Fitted meshes with vertex `colours` [B, V, 3] rendered at `pose_para`
  [B, 7] over `images` [B, S, S, 3] (the background).

  Returns:
    image [B, S, S, 3], pncc, mask, landmarks [B, 68, 2] at that pose.
  """
  screen = synthesis.face_vertices_screen(model, shape, expression, pose_para,
                                          size)
  raster = rasterizer.rasterize(screen, model.triangles, size, size)
  face = rasterizer.interpolate(colours, raster, screen, model.triangles)
  mask = raster.mask
  pncc = rasterizer.interpolate(model.ncc, raster, screen,
                                model.triangles) * mask
  image = face * mask + images * (1 - mask)
  return image, pncc, mask, model.landmarks(screen)[..., :2]


def profile_faces(model: MorphableModel, images, shape, expression, pose_para,
                  new_pose_para, size: int):
  """Re-renders photos' fitted faces at a new pose (see module docstring).

  Args:
    images: [B, S, S, 3] float crops in [0, 1]; pose_para, new_pose_para:
      [B, 7] in the crop frame.

  Returns:
    image [B, S, S, 3], pncc, mask, landmarks [B, 68, 2] at the new pose.
  """
  colours = photo_vertex_colours(model, images, shape, expression, pose_para,
                                 size)
  return render_coloured_faces(model, images, colours, shape, expression,
                               new_pose_para, size)


def _uint8(x) -> np.ndarray:
  return np.round(np.clip(np.asarray(x), 0.0, 1.0) * 255).astype(np.uint8)


class FittedFaces(synthetic_faces.ModelBuilder):
  """Photos with 3DMM fits to their landmarks and rendered PNCC targets.

  `model` defaults to `facemodel.ict_facekit_model()`.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = face_photos.__doc__
  BUILDER_CONFIGS = [
      FittedFacesConfig(name='faces68', description='ICT fits to faces68.'),
      # faces68's own photos reach |yaw| ~40 deg (docs/real_data.md), so one
      # copy at 60-90 deg left 40-60 deg empty; 300W-LP spreads its
      # profiles over the whole range up to 90 deg (3DDFA, Sec. 5.1).
      FittedFacesConfig(
          name='faces68_profiled', profile=True, min_yaw=30.0, copies=2,
          version=tfds.core.Version('1.1.0'), release_notes={
              '1.0.0': 'One profiled copy per photo, |yaw| in [60, 90].',
              '1.1.0': 'Two profiled copies, |yaw| in [30, 60] and [60, 90].'},
          description='faces68 fits plus two copies per photo profiled to '
          '|yaw| in [30, 60] and [60, 90] deg.'),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'faces68'  # the attribute TFDS reads

  def __init__(self, *, max_images: int | None = None, **kwargs):
    """`max_images`: only the first N source photos
    (`face_photos.first_images_config`), e.g. in a dataset name
    'fitted_faces/faces68_profiled/max_images=64'."""
    super().__init__(config=face_photos.first_images_config(
        type(self), kwargs.pop('config', None), max_images), **kwargs)

  def default_model(self) -> MorphableModel:
    return facemodel.ict_facekit_model()

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    model = self.model
    f32 = np.float32
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            **synthetic_faces.rendered_image_features(size),
            'landmarks_2d': tfds.features.Tensor(shape=(68, 2), dtype=f32),
            'landmark_weights': tfds.features.Tensor(shape=(68,), dtype=f32),
            'fitted_landmarks_2d': tfds.features.Tensor(shape=(68, 2),
                                                        dtype=f32),
            'pose_para': tfds.features.Tensor(shape=(7,), dtype=f32),
            'pose': tfds.features.FeaturesDict({
                'pitch': tfds.features.Scalar(dtype=f32),
                'yaw': tfds.features.Scalar(dtype=f32),
                'roll': tfds.features.Scalar(dtype=f32),
            }),
            'shape': tfds.features.Tensor(shape=(model.num_shape,), dtype=f32),
            'expression': tfds.features.Tensor(shape=(model.num_expression,),
                                               dtype=f32),
            'residual': tfds.features.Scalar(dtype=f32),
            'profiled': tfds.features.Scalar(dtype=np.bool_),
            'name': tfds.features.Text(),
            'model_name': tfds.features.Text(),
        }),
    )

  def _source(self, dl_manager):
    config = self.builder_config
    base = face_photos.FacePhotos.builder_configs[config.source]
    if config.image_size != base.image_size or config.max_images:
      base = dataclasses.replace(
          base, name=f'{config.source}_{config.image_size}_'
          f'{config.max_images or "all"}', image_size=config.image_size,
          max_images=config.max_images)
    builder = face_photos.FacePhotos(config=base,
                                     data_dir=self._data_dir_root)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=dl_manager.manual_dir))
    return builder

  def _split_generators(self, dl_manager):
    source = self._source(dl_manager)
    return {split: self._generate_examples(source, split)
            for split in source.info.splits}

  def _generate_examples(self, source, split):
    config = self.builder_config
    rows = list(tfds.as_numpy(source.as_dataset(split=split)))
    rows = [r for r in rows if r['landmark_weights'].min() > 0]
    if not rows:
      return
    model = jax.device_put(self.model)
    residuals = []
    for start in range(0, len(rows), _BATCH):
      chunk = rows[start:start + _BATCH]
      pad = chunk + [chunk[-1]] * (_BATCH - len(chunk))  # one compile
      yield from self._examples(model, pad, len(chunk), residuals)
    logging.info('fitted_faces/%s %s: %d photos, median residual %.4f',
                 config.name, split, len(rows), np.median(residuals))

  def _examples(self, model, rows, count, residuals):
    config = self.builder_config
    size = config.image_size
    landmarks = np.stack([r['landmarks_2d'] for r in rows])
    fit = jax.device_get(fitting.fit_landmarks(model, landmarks, size))
    pncc, mask, fitted = jax.device_get(render_targets(
        model, fit.shape, fit.expression, fit.pose_para, size))
    residuals.extend(np.asarray(fit.residual[:count]).tolist())
    names = [r['name'].decode() for r in rows]
    common = lambda k: {
        'shape': fit.shape[k], 'expression': fit.expression[k],
        'residual': fit.residual[k], 'model_name': model.name,
        'fitted_landmarks_2d': fitted[k]}
    for k in range(count):
      yield names[k], dict(
          common(k), image=rows[k]['image'], pncc=_uint8(pncc[k]),
          mask=_uint8(mask[k]), landmarks_2d=landmarks[k],
          landmark_weights=np.ones(68, np.float32),
          pose_para=fit.pose_para[k], pose=_pose_degrees(fit.pose_para[k]),
          profiled=False, name=names[k])
    if not config.profile:
      return
    images = np.stack([r['image'] for r in rows]).astype(np.float32) / 255
    # Sampled once: every copy shows the same photo colours at a new pose.
    colours = photo_vertex_colours(model, images, fit.shape, fit.expression,
                                   fit.pose_para, size)
    for copy in range(config.copies):
      yaw = np.array([self._profiled_yaw(n, p[1], copy) for n, p in
                      zip(names, fit.pose_para)])
      new_pose = profiled_pose(model, fit.shape, fit.expression,
                               fit.pose_para, yaw)
      image, pncc, mask, new_landmarks = jax.device_get(
          render_coloured_faces(model, images, colours, fit.shape,
                                fit.expression, new_pose, size))
      for k in range(count):
        yield f'{names[k]}/profiled{copy}', dict(
            common(k), image=_uint8(image[k]), pncc=_uint8(pncc[k]),
            mask=_uint8(mask[k]), landmarks_2d=new_landmarks[k],
            landmark_weights=np.ones(68, np.float32),
            fitted_landmarks_2d=new_landmarks[k], pose_para=new_pose[k],
            pose=_pose_degrees(new_pose[k]), profiled=True, name=names[k])

  def _profiled_yaw(self, name: str, yaw: float, copy: int) -> float:
    """|yaw| (rad) of profiled copy `copy` of photo `name`, on the side the
    photo's fitted `yaw` already turns to."""
    config = self.builder_config
    width = (config.max_yaw - config.min_yaw) / config.copies
    low = config.min_yaw + copy * width
    rng = np.random.default_rng([config.seed, zlib.crc32(name.encode()), copy])
    sign = 1.0 if yaw >= 0 else -1.0
    return sign * np.radians(rng.uniform(low, low + width))


def _pose_degrees(pose_para) -> dict:
  pitch, yaw, roll = np.degrees(np.asarray(pose_para[:3], np.float64))
  return {'pitch': pitch, 'yaw': yaw, 'roll': roll}
