"""The paper's stages wired to data, and the whole pipeline.

Each `run_*` function takes a stage config (configs/*.py) and a workdir, reads
its data through `pnccface.data.pipeline`, trains with the stage's module in
`pnccface.train` and leaves an orbax checkpoint in the workdir. Re-running a
finished stage returns at once; an interrupted one resumes.

Layout of `run_paper(config, workdir)`:
  workdir/autoencoder        stage 0, the 3FabRec-style face autoencoder
  workdir/pncc_full          stage 1, PNCC predictor on all training faces
  workdir/pncc_few           stage 1, PNCC predictor on `num_few_shot` faces
  workdir/annotated_<p>/<s>  split s annotated by predictor p (full, few)
  workdir/mofa, workdir/mofa_pncc_few, workdir/mofa_pncc_full   stage 2
  workdir/mofa_pncc_gt       MoFaPNCC on ground-truth PNCCs (an ablation, when
                             `config.ground_truth_pncc_ablation`)
  workdir/report             table1.md, table1.json, figure3.png
"""

from __future__ import annotations

import os
import pathlib
import time
import types
from typing import Any, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from pnccface import facemodel
from pnccface.data import annotated
from pnccface.data import crop
from pnccface.data import pipeline
from pnccface.data import synthesis
from pnccface.evaluation import figures
from pnccface.evaluation import report
from pnccface.facemodel import MorphableModel
from pnccface.train import autoencoder as autoencoder_train
from pnccface.train import common
from pnccface.train import mofa as mofa_train
from pnccface.train import pncc as pncc_train


# ----------------------------------------------------------------------------
# Helpers.


def load_face_model(name: str) -> MorphableModel:
  """'default' (the embedded model), a 3DDFA_V2 .pkl, or a BFM2009 .mat."""
  if name in ('', 'default'):
    return facemodel.default_model()
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
  raise ValueError(f'unknown face model {name!r}: use "default", a 3DDFA_V2 '
                   '.pkl or a BFM2009 01_MorphableModel.mat')


def save_config(config, workdir) -> None:
  """Writes `<workdir>/config.json`, which `pnccface.api` loads the stage by."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2))


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
                               face_model=config.get('face_model', None))


def _eval_batches(config, image_size: int, data_dir=None) -> list:
  arrays = _face_arrays(config, eval_split(config), image_size,
                        data_dir=data_dir)
  return list(pipeline.eval_batches(arrays, config.batch_size))


# ----------------------------------------------------------------------------
# Stages 0 and 1.


def _run_autoencoder_stage(train_fn, config, workdir, data_dir) -> None:
  """Trains a stage-0/1 model (images at `config.model.resolution`)."""
  save_config(config, workdir)
  if is_finished(workdir, config.num_train_steps):
    logging.info('%s is finished', workdir)
    return
  size = config.model.resolution
  train = _face_arrays(config, config.train_split, size,
                       _samples(config.num_train_samples), data_dir)
  train_fn(config, workdir,
           pipeline.training_batch_source(train, config),
           _eval_batches(config, size, data_dir))


def run_autoencoder(config, workdir, data_dir=None) -> None:
  """Stage 0: unsupervised autoencoder pre-training."""
  _run_autoencoder_stage(autoencoder_train.train, config, workdir, data_dir)


def run_pncc(config, workdir, data_dir=None) -> None:
  """Stage 1: the PNCC predictor (full or few-shot), from `init_from`."""
  _run_autoencoder_stage(pncc_train.train, config, workdir, data_dir)


def annotate(pncc_config, pncc_workdir, dataset: str, split: str,
             image_size: int, output_dir, data_dir=None) -> int:
  """Writes `dataset/split` with PNCCs predicted by a stage-1 checkpoint.

  Images are resized to the predictor's input for prediction; the PNCC is
  resized back to `image_size`, the size stored (stage 2's input size).
  Resumable (see `pnccface.data.annotated`).
  """
  manifest = pathlib.Path(output_dir) / annotated.MANIFEST
  if manifest.is_file() and annotated.read_manifest(output_dir)['complete']:
    return annotated.read_manifest(output_dir)['num_examples']
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
                               image_size=image_size)
  if isinstance(data, dict):
    count = len(data['image'])
    examples = ({k: v[i] for k, v in data.items()} for i in range(count))
  else:
    count = int(data.cardinality())
    examples = tfds.as_numpy(data)
  return annotated.write_annotated(
      examples, predict_pncc, output_dir, num_examples=count,
      shard_size=256, provenance={'source': f'{dataset}/{split}',
                                  'pncc_checkpoint': os.fspath(pncc_workdir)})


# ----------------------------------------------------------------------------
# Stage 2.


def _mofa_arrays(config, split: str, annotated_dir=None, num_samples=None,
                 data_dir=None):
  source = (os.fspath(annotated_dir) if annotated_dir is not None else
            config.dataset)
  return pipeline.face_dataset(source, split, data_dir=data_dir,
                               num_samples=num_samples,
                               subset_seed=config.get('seed', 0),
                               image_size=config.image_size,
                               manual_dir=config.get('manual_dir', None),
                               face_model=config.get('face_model', None))


def run_mofa(config, workdir, *, annotated_train=None, annotated_eval=None,
             data_dir=None) -> None:
  """Stage 2: MoFa (RGB) or MoFaPNCC (RGB + PNCC).

  The PNCC input is the dataset's own (`pncc_source='ground_truth'`) or
  that of an annotated dataset (`annotated_train` / `annotated_eval` folders
  written by `annotate`).
  """
  save_config(config, workdir)
  if is_finished(workdir, config.num_train_steps):
    logging.info('mofa: %s is finished', workdir)
    return
  if config.use_pncc and config.pncc_source == 'annotated' and (
      annotated_train is None or annotated_eval is None):
    raise ValueError('MoFaPNCC with annotated PNCCs needs the annotated '
                     'train and eval datasets')
  use_annotated = config.use_pncc and config.pncc_source == 'annotated'
  train = _mofa_arrays(config, config.train_split,
                       annotated_train if use_annotated else None,
                       _samples(config.num_train_samples), data_dir)
  evaluation = _mofa_arrays(config, eval_split(config),
                            annotated_eval if use_annotated else None,
                            data_dir=data_dir)
  mofa_train.train(
      config, workdir, load_face_model(config.face_model),
      pipeline.training_batch_source(train, config),
      list(pipeline.eval_batches(evaluation, config.batch_size)))


def predict_mofa(config, workdir, arrays: Mapping[str, np.ndarray],
                 batch_size: int = 32) -> dict[str, Any]:
  """A trained MoFa's predictions on face-format arrays (see
  `mofa_train.evaluate`)."""
  return mofa_train.evaluate(
      config, load_face_model(config.face_model),
      common.load_apply_variables(workdir),
      list(pipeline.eval_batches(arrays, batch_size)))


# ----------------------------------------------------------------------------
# Evaluation.


def synthetic_ground_truth(dataset: str, split: str, image_size: int,
                           model: MorphableModel,
                           data_dir=None) -> report.FaceGeometry:
  """Ground-truth screen vertices and yaw of synthetic_faces at `image_size`.

  Re-renders the stored parameters' geometry (no images), with the stored
  pose mapped to the resized image by `crop.transform_pose_para`.
  """
  rows = list(tfds.as_numpy(pipeline.load_split(dataset, split,
                                                data_dir=data_dir)))
  source_size = rows[0]['image'].shape[0]
  box = crop.CropBox(0.0, 0.0, float(source_size))
  pose = np.stack([crop.transform_pose_para(r['pose_para'], box, image_size,
                                            source_size) for r in rows])
  shape = np.stack([r['shape'] for r in rows])
  expression = np.stack([r['expression'] for r in rows])
  vertices = np.asarray(synthesis.face_vertices_screen(
      model, shape, expression, pose, image_size))
  return report.FaceGeometry(
      vertices=vertices,
      yaw_degrees=np.asarray([r['pose']['yaw'] for r in rows], np.float32))


FIGURE_SIZE = 192  # pixels per face in figure3.png


def evaluate_table1(methods: Mapping[str, tuple[Any, Any, Any]],
                    ground_truth: report.FaceGeometry, output_dir,
                    figure_images: int = 4) -> dict[str, dict[str, float]]:
  """Table 1 for trained MoFa variants; writes table1.md/.json, figure3.png.

  Args:
    methods: name -> (config, workdir, face-format eval arrays whose order
      matches `ground_truth`).
    ground_truth: `synthetic_ground_truth` (or AFLW2000-3D's geometry).
    output_dir: where the report goes.
  """
  rows, overlays, inputs = {}, {}, None
  for name, (config, workdir, arrays) in methods.items():
    prediction = predict_mofa(config, workdir, arrays)
    rows[name] = report.evaluate_method(
        mofa_train.predicted_geometry(prediction), ground_truth)
    logging.info('Table 1 | %s | %s', name, rows[name])
    model = load_face_model(config.face_model)
    size = arrays['image'].shape[1]
    factor = max(FIGURE_SIZE, size) / size  # small inputs are drawn larger
    inputs = [figures.resize(image, round(size * factor))
              for image in arrays['image'][:figure_images]]
    overlays[name] = [
        figures.mesh_overlay(image, vertices * factor, model.triangles)
        for image, vertices in zip(inputs, prediction['vertices_screen'])]
  report.write_report(rows, output_dir)
  columns = [list(inputs)] + list(overlays.values())
  figure = figures.image_grid([list(r) for r in zip(*columns)])
  figures.save_png(pathlib.Path(output_dir) / 'figure3.png', figure)
  print(report.format_markdown(rows))
  return rows


# ----------------------------------------------------------------------------
# The whole paper.


def run_paper(config, workdir, data_dir=None) -> dict[str, dict[str, float]]:
  """Autoencoder -> PNCC_full, PNCC_few -> annotation -> MoFa, MoFaPNCC_few,
  MoFaPNCC_full -> Table 1 and Figure 3. See the module docstring."""
  workdir = pathlib.Path(workdir)
  start = time.time()

  def stage(name):
    logging.info('=== %s (%.0f s into the pipeline)', name,
                 time.time() - start)
    return workdir / name

  run_autoencoder(config.autoencoder, stage('autoencoder'), data_dir)
  predictors = {'full': config.pncc_full, 'few': config.pncc_few}
  for variant, pncc_config in predictors.items():
    with pncc_config.unlocked():
      pncc_config.init_from = os.fspath(workdir / 'autoencoder')
    run_pncc(pncc_config, stage(f'pncc_{variant}'), data_dir)

  mofa_size = config.mofa.image_size
  splits = {'train': config.mofa.train_split, 'eval': eval_split(config.mofa)}
  for variant, pncc_config in predictors.items():
    for folder, split in splits.items():
      annotate(pncc_config, workdir / f'pncc_{variant}', config.mofa.dataset,
               split, mofa_size, stage(f'annotated_{variant}') / folder,
               data_dir)

  run_mofa(config.mofa, stage('mofa'), data_dir=data_dir)
  for variant in predictors:
    run_mofa(config.mofa_pncc, stage(f'mofa_pncc_{variant}'),
             annotated_train=workdir / f'annotated_{variant}' / 'train',
             annotated_eval=workdir / f'annotated_{variant}' / 'eval',
             data_dir=data_dir)

  if config.get('ground_truth_pncc_ablation', False):
    run_mofa(_ground_truth_pncc_config(config), stage('mofa_pncc_gt'),
             data_dir=data_dir)

  stage('report')
  rows = evaluate_paper(config, workdir, data_dir)
  logging.info('pipeline finished in %.0f s', time.time() - start)
  return rows


def _ground_truth_pncc_config(config):
  """MoFaPNCC reading the dataset's own PNCC (the ablation of `run_paper`)."""
  gt_config = config.mofa_pncc.copy_and_resolve_references()
  gt_config.pncc_source = 'ground_truth'
  return gt_config


def evaluate_paper(config, workdir, data_dir=None
                   ) -> dict[str, dict[str, float]]:
  """Table 1 and Figure 3 of a `run_paper` workdir, on its evaluation split."""
  workdir = pathlib.Path(workdir)
  mofa_size = config.mofa.image_size
  split = eval_split(config.mofa)
  ground_truth = synthetic_ground_truth(
      config.mofa.dataset, split, mofa_size,
      load_face_model(config.mofa.face_model), data_dir)
  methods = {'MoFa': (config.mofa, workdir / 'mofa',
                      _mofa_arrays(config.mofa, split, data_dir=data_dir))}
  for variant in ('few', 'full'):
    methods[f'MoFaPNCC_{variant}'] = (
        config.mofa_pncc, workdir / f'mofa_pncc_{variant}',
        pipeline.face_dataset(
            os.fspath(workdir / f'annotated_{variant}' / 'eval'), 'all',
            image_size=mofa_size))
  if (workdir / 'mofa_pncc_gt').is_dir():  # the ground-truth PNCC ablation
    gt_config = _ground_truth_pncc_config(config)
    methods['MoFaPNCC_gt (ablation)'] = (
        gt_config, workdir / 'mofa_pncc_gt',
        _mofa_arrays(gt_config, split, data_dir=data_dir))
  return evaluate_table1(methods, ground_truth, workdir / 'report')


# ----------------------------------------------------------------------------
# Stage-1 ablation: the paper's claim that the pre-trained decoder + ITLs make
# 50 samples enough.

ABLATION_VARIANTS = {
    # name: (use_skips, decoder: 'frozen' | 'scratch')
    'ITL+SCAF, frozen decoder': (True, 'frozen'),
    'ITL only, frozen decoder': (False, 'frozen'),
    'ITL+SCAF, decoder from scratch': (True, 'scratch'),
}


def pncc_heldout_l1(pncc_config, workdir, data_dir=None) -> float:
  """Held-out mean L1 of a stage-1 checkpoint on face pixels (its eval set)."""
  variables = common.load_variables(workdir)
  # The eval function reads only the state's params and batch_stats.
  state = types.SimpleNamespace(params=variables['params'],
                                batch_stats=variables['batch_stats'])
  eval_fn = pncc_train.make_eval_fn(
      pncc_config, _eval_batches(pncc_config, pncc_config.model.resolution,
                                 data_dir), num_images=0)
  return float(eval_fn(state)['eval/face_l1'])


def run_pncc_ablation(config, workdir, data_dir=None
                      ) -> dict[str, dict[str, float]]:
  """Held-out PNCC error of the stage-1 variants, few and full.

  Uses (and trains if needed) `workdir/autoencoder`; variants go to
  `workdir/ablation/<few|full>_<k>`. Returns {variant: {'PNCC_few': l1,
  'PNCC_full': l1}} and writes workdir/ablation/pncc_ablation.md.
  """
  workdir = pathlib.Path(workdir)
  run_autoencoder(config.autoencoder, workdir / 'autoencoder', data_dir)
  table = {}
  for k, (name, (skips, decoder)) in enumerate(ABLATION_VARIANTS.items()):
    table[name] = {}
    for label, base in (('PNCC_few', config.pncc_few),
                        ('PNCC_full', config.pncc_full)):
      variant = base.copy_and_resolve_references()
      variant.init_from = os.fspath(workdir / 'autoencoder')
      variant.model.use_skips = skips
      variant.model.freeze_decoder = decoder == 'frozen'
      variant.model.from_scratch_decoder = decoder == 'scratch'
      out = workdir / 'ablation' / f'{label.lower()}_{k}'
      run_pncc(variant, out, data_dir)
      table[name][label] = pncc_heldout_l1(variant, out, data_dir)
      logging.info('ablation | %s | %s | %.4f', name, label,
                   table[name][label])
  lines = ['| stage-1 variant | PNCC_few (50) | PNCC_full |', '|---|---|---|']
  lines += [f'| {name} | {row["PNCC_few"]:.4f} | {row["PNCC_full"]:.4f} |'
            for name, row in table.items()]
  text = '\n'.join(lines) + '\n'
  (workdir / 'ablation').mkdir(parents=True, exist_ok=True)
  (workdir / 'ablation' / 'pncc_ablation.md').write_text(text)
  print(text)
  return table


def evaluate_aflw_landmarks(config, workdir, aflw_dir, ddfa_dir=None
                            ) -> dict[str, dict[str, float]]:
  """Sparse 68-landmark NME of the pipeline's MoFa variants on AFLW2000-3D.

  Needs only the release's .mat/.jpg files. With `ddfa_dir` (3DDFA's
  `u_base.txt`, `w_shp_base.txt`, ... files) two references are added: the
  landmarks rebuilt from each file's parameters and the mean face under the
  true pose. Writes <workdir>/report/aflw2000_3d_landmarks.md.
  """
  from pnccface import api  # pylint: disable=g-import-not-at-top
  from pnccface.evaluation import aflw  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  params = aflw.read_release(aflw_dir)
  rows = {}
  if ddfa_dir is not None:
    sparse = facemodel.load_3ddfa_sparse_model(ddfa_dir)
    rows['3DDFA parameters (reference)'] = aflw.evaluate_landmarks(
        aflw.posed_landmarks(params, sparse), params)
    rows['mean face, true pose (reference)'] = aflw.evaluate_landmarks(
        aflw.posed_landmarks(params, sparse, use_coefficients=False), params)
  methods = {'MoFa': ('mofa', None), 'MoFaPNCC_few': ('mofa_pncc_few', 'few'),
             'MoFaPNCC_full': ('mofa_pncc_full', 'full')}
  for name, (folder, predictor) in methods.items():
    if not (workdir / folder).is_dir():
      continue
    reconstructor = api.load_reconstructor(
        workdir / folder,
        None if predictor is None else workdir / f'pncc_{predictor}')
    rows[name] = aflw.evaluate_landmarks(aflw.predict_on_crops(
        aflw_dir, params,
        lambda images: reconstructor.reconstruct(images).landmarks_2d,
        crop_size=config.mofa.image_size), params)
  lines = ['| method | [0,30] | (30,60] | (60,90] | balanced | overall |',
           '|---|---|---|---|---|---|']
  for name, r in rows.items():
    lines.append(f'| {name} | ' + ' | '.join(
        f'{100 * r[k]:.2f}' for k in ('[0,30]', '(30,60]', '(60,90]',
                                       'balanced', 'overall')) + ' |')
  text = ('68-landmark 2D NME (%) on AFLW2000-3D, ' +
          f'{len(params)} images\n\n' + '\n'.join(lines) + '\n')
  (workdir / 'report').mkdir(parents=True, exist_ok=True)
  (workdir / 'report' / 'aflw2000_3d_landmarks.md').write_text(text)
  print(text)
  return rows
