"""The programmatic API: load trained stages, predict PNCCs, reconstruct faces.

    from pnccface import api
    predictor = api.load_pncc_predictor('workdirs/tiny/pncc_few')
    pncc = predictor.predict_pncc(images)          # [N, S, S, 3] in [0, 1]
    reconstructor = api.load_reconstructor('workdirs/tiny/mofa_pncc_few',
                                           pncc_predictor=predictor)
    result = reconstructor.reconstruct(images)
    result.yaw_degrees, result.vertices_screen      # pose, mesh in the image
    api.export_mesh(result, 0, 'face.obj', reconstructor.face_model)

Images are [N, H, W, 3] (or one [H, W, 3], or a list of equal-sized
[H, W, 3]), square, already cropped to the face (see `pnccface.data.crop`):
uint8 in 0..255, or float in [0, 1], or float in [0, 255] (a float batch
whose maximum exceeds 1, such as `crop.crop_image` of a uint8 photo, is read
as 0..255). They are resized to each model's input size, and outputs refer
to the image size given. A workdir is a stage's output folder: its
`config.json` (written by `pnccface.stages`) and its latest orbax checkpoint.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pnccface import stages
from pnccface import workdirs
from pnccface.facemodel import MorphableModel
from pnccface.train import common
from pnccface.train import mofa as mofa_train
from pnccface.train import pncc as pncc_train

CONFIG_FILE = workdirs.CONFIG_FILE


def load_workdir_config(workdir, stage: str | None = None
                        ) -> ml_collections.ConfigDict:
  """The config a stage was trained with (`<workdir>/config.json`); with
  `stage`, raises unless the workdir is of that stage (`workdirs.STAGES`)."""
  config = workdirs.load_config(workdir)
  if stage is not None and workdirs.stage_of(config) != stage:
    raise ValueError(f'{workdir} is a {workdirs.stage_of(config)} workdir, '
                     f'not a {stage} one')
  return config


def as_float_images(images, name: str = 'images') -> np.ndarray:
  """Validates and converts images to [N, H, W, 3] float32 in [0, 1].

  Accepts what the module docstring says. Raises ValueError/TypeError naming
  `name` and the shape, dtype, range or index that is wrong.
  """
  if isinstance(images, (list, tuple)):
    shapes = [np.shape(image) for image in images]
    for index, shape in enumerate(shapes):
      if shape != shapes[0]:
        raise ValueError(f'{name}[{index}] has shape {shape}, {name}[0] '
                         f'{shapes[0]}: crop them to one size first')
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[None]
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'{name} must have shape [N, H, W, 3] or [H, W, 3], got '
                     f'{images.shape}')
  if not images.shape[0]:
    raise ValueError(f'{name} is empty (shape {images.shape})')
  if images.shape[1] != images.shape[2]:
    raise ValueError(f'{name} must be square face crops, got '
                     f'{images.shape[1]}x{images.shape[2]}')
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  if not np.issubdtype(images.dtype, np.floating):
    raise TypeError(f'{name} must be uint8 or float, got {images.dtype}')
  finite = np.isfinite(images).all(axis=(1, 2, 3))
  if not finite.all():
    raise ValueError(f'{name}[{int(np.argmin(finite))}] has NaN or infinite '
                     'values')
  low, high = float(images.min()), float(images.max())
  if low < -1e-3 or high > 255 + 1e-3:
    raise ValueError(f'float {name} must lie in [0, 1] or [0, 255], got '
                     f'[{low:.3g}, {high:.3g}]')
  if high > 1 + 1e-3:  # 0..255 floats, e.g. crop.crop_image of a uint8 photo
    images = images / 255.0
  return np.clip(images, 0.0, 1.0).astype(np.float32)


def _resize(images, size: int) -> jnp.ndarray:
  images = jnp.asarray(images)
  if images.shape[1] == size:
    return images
  return jax.image.resize(images, (images.shape[0], size, size,
                                   images.shape[-1]), 'linear',
                          antialias=True)


@dataclasses.dataclass(frozen=True)
class PNCCPredictor:
  """A trained stage-1 PNCC predictor (see `load_pncc_predictor`)."""
  config: ml_collections.ConfigDict
  variables: Any
  _predict: Any = dataclasses.field(repr=False)

  @property
  def input_size(self) -> int:
    return int(self.config.model.resolution)

  def predict_pncc(self, images, batch_size: int = 32) -> np.ndarray:
    """PNCC images [N, H, W, 3] float32 in [0, 1] (0 on background) for
    images [N, H, W, 3] (see the module docstring), at the input's size."""
    images = as_float_images(images)
    out = []
    for start in range(0, len(images), batch_size):
      chunk = images[start:start + batch_size]
      pncc = self._predict(self.variables,
                           _resize(chunk, self.input_size))
      out.append(np.asarray(_resize(pncc, chunk.shape[1])))
    return np.concatenate(out) if out else np.zeros_like(images)


def load_pncc_predictor(workdir) -> PNCCPredictor:
  """Loads a stage-1 workdir (e.g. workdirs/tiny/pncc_few)."""
  config = load_workdir_config(workdir, 'pncc')
  return PNCCPredictor(config, common.load_apply_variables(workdir),
                       pncc_train.make_predict_fn(config))


class Reconstruction(NamedTuple):
  """Faces reconstructed from N images of side S.

  vertices_screen: [N, V, 3] (x, y pixels of the input image, depth in the
    same scale; `pnccface.geometry`).
  vertices_model: [N, V, 3] the face in the model frame (model units).
  landmarks_2d: [N, 68, 2] image pixels.
  yaw_degrees, pitch_degrees, roll_degrees: [N].
  pose_para: [N, 7] [pitch, yaw, roll (rad), tx, ty, tz, scale] at size S.
  shape, expression, albedo: [N, K] raw 3DMM coefficients; sh: [N, 27].
  rendered: [N, S, S, 3] the shaded reconstruction over the input.
  """
  vertices_screen: np.ndarray
  vertices_model: np.ndarray
  landmarks_2d: np.ndarray
  yaw_degrees: np.ndarray
  pitch_degrees: np.ndarray
  roll_degrees: np.ndarray
  pose_para: np.ndarray
  shape: np.ndarray
  expression: np.ndarray
  albedo: np.ndarray
  sh: np.ndarray
  rendered: np.ndarray


@dataclasses.dataclass(frozen=True)
class Reconstructor:
  """A trained stage-2 MoFa / MoFaPNCC (see `load_reconstructor`)."""
  config: ml_collections.ConfigDict
  variables: Any
  face_model: MorphableModel
  pncc_predictor: PNCCPredictor | None
  _predict: Any = dataclasses.field(repr=False)

  @property
  def input_size(self) -> int:
    return int(self.config.image_size)

  def reconstruct(self, images, pncc=None, batch_size: int = 32
                  ) -> Reconstruction:
    """3D faces, poses and coefficients for images [N, S, S, 3].

    MoFaPNCC needs the PNCC of each image: given as `pncc` (same shape as
    the images, in [0, 1]) or predicted by the `pncc_predictor`.
    """
    images = as_float_images(images)
    size = images.shape[1]
    if pncc is not None and not self.config.use_pncc:
      raise ValueError('this reconstructor is plain MoFa (RGB input): it '
                       'reads no `pncc`')
    if self.config.use_pncc:
      if pncc is None:
        if self.pncc_predictor is None:
          raise ValueError('this reconstructor reads a PNCC: pass `pncc` or '
                           'load it with a pncc_predictor')
        pncc = self.pncc_predictor.predict_pncc(images)
      pncc = as_float_images(pncc, 'pncc')
      if pncc.shape != images.shape:
        raise ValueError(f'pncc has shape {pncc.shape}, images {images.shape}')
    parts = []
    for start in range(0, len(images), batch_size):
      chunk = _resize(images[start:start + batch_size], self.input_size)
      chunk_pncc = (None if pncc is None else
                    _resize(pncc[start:start + batch_size], self.input_size))
      recon, code = self._predict(self.variables, chunk, chunk_pncc)
      parts.append(jax.device_get((recon, code)))
    recon = jax.tree.map(lambda *x: np.concatenate(x), *[p[0] for p in parts])
    code = jax.tree.map(lambda *x: np.concatenate(x), *[p[1] for p in parts])
    factor = size / self.input_size
    model = self.face_model
    shape = code.shape * np.asarray(model.shape_std)
    expression = code.expression * np.asarray(model.expression_std)
    return Reconstruction(
        vertices_screen=recon.vertices_screen * factor,
        vertices_model=np.asarray(model.vertices(shape, expression)),
        landmarks_2d=recon.landmarks_2d * factor,
        yaw_degrees=recon.yaw_degrees, pitch_degrees=recon.pitch_degrees,
        roll_degrees=recon.roll_degrees, pose_para=recon.pose_para,
        shape=shape, expression=expression,
        albedo=code.albedo * np.asarray(model.albedo_std), sh=code.sh,
        rendered=np.asarray(_resize(recon.image, size)))


def load_reconstructor(workdir, pncc_predictor: PNCCPredictor | str | None
                       = None) -> Reconstructor:
  """Loads a stage-2 workdir; `pncc_predictor` (object or stage-1 workdir)
  provides the PNCC input of MoFaPNCC."""
  config = load_workdir_config(workdir, 'mofa')
  if isinstance(pncc_predictor, (str, pathlib.Path)):
    pncc_predictor = load_pncc_predictor(pncc_predictor)
  face_model = stages.load_face_model(config.face_model)
  return Reconstructor(config, common.load_apply_variables(workdir), face_model,
                       pncc_predictor,
                       mofa_train.make_predict_fn(config, face_model))


def export_mesh(result: Reconstruction, index: int, path,
                face_model: MorphableModel, frame: str = 'model'):
  """Writes face `index` of `result` as a mesh (OBJ, PLY, ... by suffix).

  Args:
    frame: 'model' (model frame and units) or 'screen' (image pixels, y
      down, depth; handy to overlay on the image).
  Returns:
    The trimesh.Trimesh written.
  """
  import trimesh  # pylint: disable=g-import-not-at-top
  if not 0 <= index < len(result.vertices_model):
    raise IndexError(f'index {index} out of range for '
                     f'{len(result.vertices_model)} faces')
  if frame not in ('model', 'screen'):
    raise ValueError(f"frame must be 'model' or 'screen', got {frame!r}")
  vertices = (result.vertices_model if frame == 'model' else
              result.vertices_screen)[index]
  albedo = np.asarray(face_model.albedo(result.albedo[index]))
  mesh = trimesh.Trimesh(
      vertices=np.asarray(vertices), faces=np.asarray(face_model.triangles),
      vertex_colors=np.round(np.clip(albedo, 0, 1) * 255).astype(np.uint8),
      process=False)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  mesh.export(str(path))
  return mesh
