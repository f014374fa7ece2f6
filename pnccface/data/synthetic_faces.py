"""`synthetic_faces`: the embedded default dataset, rendered from a 3DMM.

Importing this module registers the TFDS builder, so after
`import pnccface.data` the call `tfds.load('synthetic_faces/tiny')` builds the
dataset offline (nothing is downloaded) and loads it.

Each example is a face of the default model, ICT-FaceKit Light (or of any
`MorphableModel` handed to the builder) with random identity, expression,
albedo, SH light and weak-perspective pose (yaw uniform in +-90 deg, pitch and
roll in +-30 deg), scale/translation jitter, over a textured background.
Everything needed to re-render it, or to evaluate dense metrics, is stored.

Determinism: split k of config c draws from `np.random.default_rng([c.seed,
k])` in a fixed order, so a build is reproducible given the config.
"""

from __future__ import annotations

import dataclasses

from absl import logging
import jax
import numpy as np
import tensorflow_datasets as tfds

from pnccface import facemodel
from pnccface.data import synthesis
from pnccface.facemodel import MorphableModel

_SPLITS = ('train', 'validation', 'test')
_RENDER_BATCH = 32


@dataclasses.dataclass
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  """Size of a synthetic_faces variant.

  image_size: square image side in pixels.
  num_examples: examples per split, in the order of `_SPLITS`.
  seed: base seed of the random faces.
  """
  image_size: int = 128
  num_examples: tuple[int, int, int] = (2000, 200, 200)
  seed: int = 0


def rendered_image_features(size: int) -> dict:
  """The TFDS features of a face image with its PNCC and mask (uint8)."""
  return {'image': tfds.features.Image(shape=(size, size, 3)),
          'pncc': tfds.features.Image(shape=(size, size, 3)),
          'mask': tfds.features.Image(shape=(size, size, 1))}


class ModelBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder that renders with a `MorphableModel`: the one given, else
  `default_model()`."""

  def __init__(self, *, model: MorphableModel | None = None, **kwargs):
    self._model = model
    super().__init__(**kwargs)

  def default_model(self) -> MorphableModel:
    return facemodel.default_model()

  @property
  def model(self) -> MorphableModel:
    if self._model is None:
      self._model = self.default_model()
    return self._model


class SyntheticFaces(ModelBuilder):
  """Faces rendered from a morphable model, with full ground truth.

  `model` defaults to `facemodel.default_model()`.
  """

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.',
                   '2.0.0': 'Default model: ICT-FaceKit Light.'}
  BUILDER_CONFIGS = [
      SyntheticFacesConfig(
          name='tiny', description='For tests: 128x128, 192/32/32 examples.',
          image_size=128, num_examples=(192, 32, 32)),
      SyntheticFacesConfig(
          name='small', description='CPU-sized runs: 128x128, 4000/500/500.',
          image_size=128, num_examples=(4000, 500, 500)),
      SyntheticFacesConfig(
          name='default', description='128x128, 50000/2000/2000 examples.',
          image_size=128, num_examples=(50000, 2000, 2000)),
      SyntheticFacesConfig(
          name='large256', description='256x256, 50000/2000/2000 examples.',
          image_size=256, num_examples=(50000, 2000, 2000)),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'default'  # the attribute TFDS reads

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    model = self.model
    f32 = np.float32
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            **rendered_image_features(size),
            'shape': tfds.features.Tensor(shape=(model.num_shape,), dtype=f32),
            'expression': tfds.features.Tensor(
                shape=(model.num_expression,), dtype=f32),
            'albedo': tfds.features.Tensor(shape=(model.num_albedo,),
                                           dtype=f32),
            'sh': tfds.features.Tensor(shape=(27,), dtype=f32),
            'pose_para': tfds.features.Tensor(shape=(7,), dtype=f32),
            'pose': tfds.features.FeaturesDict({
                'pitch': tfds.features.Scalar(dtype=f32),
                'yaw': tfds.features.Scalar(dtype=f32),
                'roll': tfds.features.Scalar(dtype=f32),
                'scale': tfds.features.Scalar(dtype=f32),
                'translation': tfds.features.Tensor(shape=(3,), dtype=f32),
            }),
            'landmarks_2d': tfds.features.Tensor(shape=(68, 2), dtype=f32),
            'landmarks_3d': tfds.features.Tensor(shape=(68, 3), dtype=f32),
            'model_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'pncc'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: everything is rendered.
    return {
        split: self._generate_examples(split_index=k, num_examples=n)
        for k, (split, n) in enumerate(
            zip(_SPLITS, self.builder_config.num_examples))
    }

  def _generate_examples(self, split_index: int, num_examples: int):
    config = self.builder_config
    rng = np.random.default_rng([config.seed, split_index])
    size = config.image_size
    model = jax.device_put(self.model)
    num_empty = 0
    for start in range(0, num_examples, _RENDER_BATCH):
      batch = min(_RENDER_BATCH, num_examples - start)
      params = synthesis.sample_face_params(rng, model, _RENDER_BATCH, size)
      background = synthesis.random_backgrounds(rng, _RENDER_BATCH, size, size)
      faces = jax.device_get(
          synthesis.render_faces(model, params, background, size))
      for i in range(batch):
        if faces.mask[i].sum() == 0:
          num_empty += 1
        yield start + i, _example(model, params, faces, i)
    if num_empty:
      logging.warning('synthetic_faces: %d of %d examples have no visible '
                      'face pixel (kept).', num_empty, num_examples)


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _example(model: MorphableModel, params: synthesis.RandomFaceParams,
             faces: synthesis.RenderedFaces, i: int) -> dict:
  pose_para = params.pose_para[i]
  pitch, yaw, roll = np.degrees(pose_para[:3])
  return {
      'image': _to_uint8(faces.image[i]),
      'pncc': _to_uint8(faces.pncc[i]),
      'mask': _to_uint8(faces.mask[i]),
      'shape': params.shape[i],
      'expression': params.expression[i],
      'albedo': params.albedo[i],
      'sh': params.sh[i],
      'pose_para': pose_para,
      'pose': {
          'pitch': pitch, 'yaw': yaw, 'roll': roll,
          'scale': pose_para[6], 'translation': pose_para[3:6],
      },
      'landmarks_2d': np.asarray(faces.landmarks_2d[i], np.float32),
      'landmarks_3d': np.asarray(faces.landmarks_3d[i], np.float32),
      'model_name': model.name,
  }
