"""The paper's stages wired to data.

Each `run_*` function takes a stage config (configs/*.py) and a workdir, reads
its data through `pnccface.data.pipeline`, trains with the stage's module in
`pnccface.train` and leaves an orbax checkpoint in the workdir. Re-running a
finished stage returns at once; an interrupted one resumes. The whole
pipeline and its evaluation are in `pnccface.evaluation.paper`.
"""

from __future__ import annotations

import functools
import os
import pathlib
import time
from typing import Any, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from pnccface import distributed
from pnccface import facemodel
from pnccface import workdirs
from pnccface.data import annotated
from pnccface.data import pipeline
from pnccface.facemodel import MorphableModel
from pnccface.train import autoencoder as autoencoder_train
from pnccface.train import common
from pnccface.train import mofa as mofa_train
from pnccface.train import pncc as pncc_train


# ----------------------------------------------------------------------------
# Helpers.


def load_face_model(name: str) -> MorphableModel:
  """'default' (ICT-FaceKit), 'procedural', a 3DDFA_V2 .pkl or a BFM .mat."""
  if name in ('', 'default', 'ict_facekit'):
    return facemodel.default_model()
  if name == 'procedural':
    return facemodel.procedural_model()
  if name.endswith('.pkl'):
    return facemodel.load_3ddfa_v2_bfm(name)
  if name.endswith('.mat'):
    # 3DDFA's expression basis and trimming file, when beside the BFM.
    folder = pathlib.Path(name).parent
    extra = {key: folder / file for key, file in (
        ('expression_path', 'Model_Exp.mat'),
        ('expression_path', 'Model_Expression.mat'),
        ('model_info_path', 'model_info.mat')) if (folder / file).is_file()}
    return facemodel.load_bfm2009(name, **extra)
  raise ValueError(f'unknown face model {name!r}: use "default", '
                   '"procedural", a 3DDFA_V2 .pkl or a BFM2009 '
                   '01_MorphableModel.mat')


def _finished_or_claim(config, workdir, force: bool, name: str):
  """(finished, write_config_after) for a stage about to run in `workdir`
  (see `workdirs.claim`); logs the stage's start line."""
  pending = workdirs.claim(config, workdir, force)
  if is_finished(workdir, config.num_train_steps):
    logging.info('%s: %s is finished (step %d)', name, workdir,
                 config.num_train_steps)
    return True, pending
  logging.info('%s: training in %s', name, workdir)
  return False, pending


def _finish(config, workdir, pending: bool, name: str, start: float,
            stop_at_step=None) -> None:
  if stop_at_step is not None and stop_at_step < config.num_train_steps:
    logging.info('%s: stopped at step %d in %.0f s', name, stop_at_step,
                 time.time() - start)
    return  # a forced config is written once the stage has finished
  if pending:
    workdirs.write_config(config, workdir)
  logging.info('%s: done in %.0f s', name, time.time() - start)


def is_finished(workdir, num_train_steps: int) -> bool:
  """Whether `workdir` holds a checkpoint at `num_train_steps`."""
  if not (pathlib.Path(workdir) / common.CHECKPOINT_SUBDIR).is_dir():
    return False
  try:
    return int(common.load_variables(workdir)['step']) >= num_train_steps
  except FileNotFoundError:
    return False


def _samples(config_value) -> int | None:
  value = int(config_value)
  return None if value < 0 else value


def release_face_model(config):
  """A lazy loader of `config.face_model` for 300W-LP / AFLW2000-3D, whose
  coefficients are the BFM's; None for the embedded model, which cannot
  read them."""
  name = config.get('face_model', '')
  if name in ('', 'default'):
    return None
  return functools.partial(load_face_model, name)


def eval_split(config) -> str:
  """The evaluation split: the first `num_eval_samples` of `eval_split`."""
  count = _samples(config.num_eval_samples)
  return (config.eval_split if count is None else
          f'{config.eval_split}[:{count}]')


def _face_arrays(config, split: str, image_size: int, num_samples=None,
                 data_dir=None):
  return pipeline.face_dataset(config.dataset, split, data_dir=data_dir,
                               num_samples=num_samples,
                               subset_seed=config.get('seed', 0),
                               image_size=image_size,
                               manual_dir=config.get('manual_dir', None),
                               face_model=release_face_model(config))


def stage_eval_batches(config, image_size: int, data_dir=None) -> list:
  arrays = _face_arrays(config, eval_split(config), image_size,
                        data_dir=data_dir)
  return list(pipeline.eval_batches(arrays, config.batch_size))


# ----------------------------------------------------------------------------
# Stages 0 and 1.


def _run_autoencoder_stage(train_fn, config, workdir, data_dir, force,
                           name, stop_at_step=None) -> None:
  """Trains a stage-0/1 model (images at `config.model.resolution`)."""
  start = time.time()
  finished, pending = _finished_or_claim(config, workdir, force, name)
  if finished:  # nothing trained with a forced config: keep the old one
    return
  size = config.model.resolution
  train = _face_arrays(config, config.train_split, size,
                       _samples(config.num_train_samples), data_dir)
  train_fn(config, workdir,
           pipeline.training_batch_source(train, config),
           stage_eval_batches(config, size, data_dir),
           stop_at_step=stop_at_step)
  _finish(config, workdir, pending, name, start, stop_at_step)


def run_autoencoder(config, workdir, data_dir=None, force=False) -> None:
  """Stage 0: unsupervised autoencoder pre-training.

  `force`: go on in a workdir made with another config (see
  `workdirs.claim`); refused otherwise.
  """
  _run_autoencoder_stage(autoencoder_train.train, config, workdir, data_dir,
                         force, 'autoencoder')


def run_pncc(config, workdir, data_dir=None, force=False,
             stop_at_step=None) -> None:
  """Stage 1: the PNCC predictor (full or few-shot), from `init_from`.

  `stop_at_step`: checkpoint and return after that many updates (a later
  call resumes), as `common.train_loop`.
  """
  init_from = config.get('init_from', '')
  if init_from:
    _check_stage(init_from, 'autoencoder', 'config.init_from')
  _run_autoencoder_stage(pncc_train.train, config, workdir, data_dir, force,
                         'pncc', stop_at_step)


def _check_stage(workdir, stage: str, what: str) -> None:
  """Raises naming `what` unless `workdir` is a finished-or-partial `stage`
  workdir (its config.json says so)."""
  found = workdirs.stage_of(workdirs.load_config(workdir))
  if found != stage:
    raise ValueError(f'{what}={os.fspath(workdir)} is a {found} workdir, not '
                     f'a {stage} one')


def annotate(pncc_config, pncc_workdir, dataset: str, split: str,
             image_size: int, output_dir, data_dir=None,
             manual_dir=None) -> int:
  """Writes `dataset/split` with PNCCs predicted by a stage-1 checkpoint.

  Images are resized to the predictor's input for prediction; the PNCC is
  resized back to `image_size`, the size stored (stage 2's input size).
  `manual_dir` is where a release dataset ('celeb_a', ...) or a face_photos
  folder lies (`pipeline.face_dataset`). Resumable (see
  `pnccface.data.annotated`). Several processes: each loads the model and
  data, process 0 alone predicts and writes, the others wait for it.
  """
  manifest = pathlib.Path(output_dir) / annotated.MANIFEST
  if manifest.is_file() and annotated.read_manifest(output_dir)['complete']:
    return annotated.read_manifest(output_dir)['num_examples']
  _check_stage(pncc_workdir, 'pncc', 'pncc_workdir')
  logging.info('annotate: %s/%s -> %s', dataset, split, output_dir)
  variables = common.load_apply_variables(pncc_workdir)
  predict = pncc_train.make_predict_fn(pncc_config)
  input_size = pncc_config.model.resolution

  def predict_pncc(images: np.ndarray) -> np.ndarray:
    inputs = jax.image.resize(jnp.asarray(images),
                              images.shape[:1] + (input_size, input_size, 3),
                              'linear', antialias=True)
    pncc = predict(variables, inputs)
    return np.asarray(jax.image.resize(pncc, images.shape, 'linear'))

  data = pipeline.face_dataset(dataset, split, data_dir=data_dir,
                               image_size=image_size, manual_dir=manual_dir)
  if isinstance(data, dict):
    count = len(data['image'])
    examples = ({k: v[i] for k, v in data.items()} for i in range(count))
  else:
    count = int(data.cardinality())
    examples = tfds.as_numpy(data)
  with distributed.main_process_first(f'annotate {os.fspath(output_dir)}'):
    if distributed.is_main_process():
      annotated.write_annotated(
          examples, predict_pncc, output_dir, num_examples=count,
          shard_size=256, provenance={
              'source': f'{dataset}/{split}',
              'pncc_checkpoint': os.fspath(pncc_workdir)})
    return annotated.read_manifest(output_dir)['num_examples']


# ----------------------------------------------------------------------------
# Stage 2.


def mofa_arrays(config, split: str, annotated_dir=None, num_samples=None,
                 data_dir=None):
  source = (os.fspath(annotated_dir) if annotated_dir is not None else
            config.dataset)
  return pipeline.face_dataset(source, split, data_dir=data_dir,
                               num_samples=num_samples,
                               subset_seed=config.get('seed', 0),
                               image_size=config.image_size,
                               manual_dir=config.get('manual_dir', None),
                               face_model=release_face_model(config))


def run_mofa(config, workdir, *, annotated_train=None, annotated_eval=None,
             data_dir=None, force=False, stop_at_step=None) -> None:
  """Stage 2: MoFa (RGB) or MoFaPNCC (RGB + PNCC).

  The PNCC input is the dataset's own (`pncc_source='ground_truth'`) or
  that of an annotated dataset (`annotated_train` / `annotated_eval` folders
  written by `annotate`). `stop_at_step`: see `run_pncc`.
  """
  use_annotated = config.use_pncc and config.pncc_source == 'annotated'
  if use_annotated:
    if annotated_train is None or annotated_eval is None:
      raise ValueError('MoFaPNCC with annotated PNCCs needs the annotated '
                       'train and eval datasets')
    for flag, folder in (('annotated_train', annotated_train),
                         ('annotated_eval', annotated_eval)):
      if not (pathlib.Path(folder) / annotated.MANIFEST).is_file():
        raise FileNotFoundError(
            f'{flag}={os.fspath(folder)} is not an annotated dataset (no '
            f'{annotated.MANIFEST}; write one with launch/annotate.py)')
  name = 'mofa_pncc' if config.use_pncc else 'mofa'
  start = time.time()
  finished, pending = _finished_or_claim(config, workdir, force, name)
  if finished:  # nothing trained with a forced config: keep the old one
    return
  train = mofa_arrays(config, config.train_split,
                       annotated_train if use_annotated else None,
                       _samples(config.num_train_samples), data_dir)
  evaluation = mofa_arrays(config, eval_split(config),
                            annotated_eval if use_annotated else None,
                            data_dir=data_dir)
  mofa_train.train(
      config, workdir, load_face_model(config.face_model),
      pipeline.training_batch_source(train, config),
      list(pipeline.eval_batches(evaluation, config.batch_size)),
      stop_at_step=stop_at_step)
  _finish(config, workdir, pending, name, start, stop_at_step)


def continued_mofa_config(source_workdir, num_train_steps: int,
                          overrides: Mapping[str, str] | None = None):
  """The config that trains a finished MoFa workdir for more steps.

  Its own config (`config.json`) with `init_from` = the source (weights,
  batch statistics) and `num_train_steps` = the new run's length, on a
  fresh schedule (warm-up and cosine decay again, as runs 4-6 of
  docs/results.md were continued). `overrides` {'loss.w_landmark': '300',
  ...} change leaves, each value parsed as its leaf's type.
  """
  source = pathlib.Path(source_workdir).resolve()
  config = workdirs.load_config(source)
  if workdirs.stage_of(config) != 'mofa':
    raise ValueError(f'{os.fspath(source)} is a {workdirs.stage_of(config)} '
                     'workdir: only MoFa workdirs are continued this way')
  if not is_finished(source, config.num_train_steps):
    raise ValueError(f'{os.fspath(source)} has not finished its '
                     f'{config.num_train_steps} steps: resume it first')
  if num_train_steps <= 0:
    raise ValueError(f'num_train_steps must be positive, got {num_train_steps}')
  config.init_from = os.fspath(source)
  config.num_train_steps = int(num_train_steps)
  for key, text in (overrides or {}).items():
    config.update_from_flattened_dict({key: _parse_leaf(config, key, text)})
  return config


def _parse_leaf(config, key: str, text: str):
  """`text` as the type of `config`'s leaf `key` (dotted), named on error."""
  node = config
  for part in key.split('.'):
    if not hasattr(node, 'keys') or part not in node:
      raise KeyError(f'{key}: no such key in the MoFa config')
    node = node[part]
  if isinstance(node, bool):
    if text.lower() not in ('true', 'false'):
      raise ValueError(f'{key}: expected true or false, got {text!r}')
    return text.lower() == 'true'
  if isinstance(node, (int, float, str)):
    try:
      return type(node)(text)
    except ValueError:
      raise ValueError(f'{key}: expected {type(node).__name__}, got '
                       f'{text!r}') from None
  raise ValueError(f'{key} is a {type(node).__name__}: only number, text and '
                   'true/false leaves can be set')


def predict_mofa(config, workdir, arrays: Mapping[str, np.ndarray],
                 batch_size: int = 32) -> dict[str, Any]:
  """A trained MoFa's predictions on face-format arrays (see
  `mofa_train.evaluate`)."""
  return mofa_train.evaluate(
      config, load_face_model(config.face_model),
      common.load_apply_variables(workdir),
      list(pipeline.eval_batches(arrays, batch_size)))


# ----------------------------------------------------------------------------
# Every stage of the paper (`pnccface.evaluation.paper.run_paper` adds the
# evaluation).


def train_paper(config, workdir, data_dir=None, force=False) -> None:
  """Autoencoder -> PNCC_full, PNCC_few -> annotation -> MoFa, MoFaPNCC_few,
  MoFaPNCC_full (and the ground-truth PNCC ablation when configured), each
  in `workdir/<stage>` (layout in `pnccface.evaluation.paper`)."""
  # Absolute, because each PNCC stage's config.json records `init_from`: a
  # rerun from another cwd (or with an absolute --workdir) must match it.
  workdir = pathlib.Path(workdir).resolve()
  run_autoencoder(config.autoencoder, workdir / 'autoencoder', data_dir, force)
  predictors = {}
  for variant in ('full', 'few'):
    pncc_config = config[f'pncc_{variant}'].copy_and_resolve_references()
    pncc_config.init_from = os.fspath(workdir / 'autoencoder')
    predictors[variant] = pncc_config
    run_pncc(pncc_config, workdir / f'pncc_{variant}', data_dir, force)

  mofa_size = config.mofa.image_size
  splits = {'train': config.mofa.train_split, 'eval': eval_split(config.mofa)}
  for variant, pncc_config in predictors.items():
    for folder, split in splits.items():
      annotate(pncc_config, workdir / f'pncc_{variant}', config.mofa.dataset,
               split, mofa_size, workdir / f'annotated_{variant}' / folder,
               data_dir, config.mofa.get('manual_dir', None))

  run_mofa(config.mofa, workdir / 'mofa', data_dir=data_dir, force=force)
  for variant in predictors:
    run_mofa(config.mofa_pncc, workdir / f'mofa_pncc_{variant}',
             annotated_train=workdir / f'annotated_{variant}' / 'train',
             annotated_eval=workdir / f'annotated_{variant}' / 'eval',
             data_dir=data_dir, force=force)

  if config.get('ground_truth_pncc_ablation', False):
    run_mofa(ground_truth_pncc_config(config), workdir / 'mofa_pncc_gt',
             data_dir=data_dir, force=force)


def ground_truth_pncc_config(config):
  """MoFaPNCC reading the dataset's own PNCC (an ablation of the paper)."""
  gt_config = config.mofa_pncc.copy_and_resolve_references()
  gt_config.pncc_source = 'ground_truth'
  return gt_config

