"""Table 1, Figure 3, the stage-1 ablation and the AFLW2000-3D landmark
table of a pipeline workdir; and the whole paper (`run_paper`).

Layout of `run_paper(config, workdir)`:
  workdir/autoencoder        stage 0, the 3FabRec-style face autoencoder
  workdir/pncc_full          stage 1, PNCC predictor on all training faces
  workdir/pncc_few           stage 1, PNCC predictor on `num_few_shot` faces
  workdir/annotated_<p>/<s>  split s annotated by predictor p (full, few)
  workdir/mofa, workdir/mofa_pncc_few, workdir/mofa_pncc_full   stage 2
  workdir/mofa_pncc_gt       MoFaPNCC on ground-truth PNCCs (an ablation, when
                             `config.ground_truth_pncc_ablation`)
  workdir/report             table1.md, table1.json, figure3.png; on
                             AFLW2000-3D (configs/real.py):
                             aflw2000_3d_landmarks.md/.json,
                             figure3_aflw2000_3d.png/.md, pncc_aflw2000_3d.png
  workdir/ablation           `run_pncc_ablation`'s variants and table
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import types
from typing import Any, Mapping

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from pnccface import api
from pnccface import distributed
from pnccface import facemodel
from pnccface import fitting
from pnccface import geometry
from pnccface import stages
from pnccface import workdirs
from pnccface.data import crop
from pnccface.data import pipeline
from pnccface.data import synthesis
from pnccface.evaluation import aflw
from pnccface.evaluation import figures
from pnccface.evaluation import metrics
from pnccface.evaluation import pncc_pose
from pnccface.evaluation import report
from pnccface.facemodel import MorphableModel
from pnccface.train import common
from pnccface.train import mofa as mofa_train
from pnccface.train import pncc as pncc_train


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


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
  """A markdown table of already formatted cells, ending with a newline."""
  lines = [header, ['---'] * len(header), *rows]
  return '\n'.join('| ' + ' | '.join(line) + ' |' for line in lines) + '\n'


def predict_mofa_rows(config, workdir, arrays: Mapping[str, np.ndarray],
                      model: MorphableModel) -> dict[str, np.ndarray]:
  """'vertices_screen' [N, V, 3] and 'yaw_degrees' [N] of
  `stages.predict_mofa` on in-memory face-format arrays of N faces, on
  every process; with several processes each predicts only its block
  (`distributed.map_rows`): every face's prediction depends on that face
  alone, so the values are one process's (to float rounding: other batch
  shapes). `model`: the config's face model (its V vertices)."""

  def predict(rows: slice) -> dict[str, np.ndarray]:
    prediction = stages.predict_mofa(
        config, workdir, {k: v[rows] for k, v in arrays.items()})
    return {k: np.asarray(prediction[k], np.float32)
            for k in ('vertices_screen', 'yaw_degrees')}

  empty = {'vertices_screen': np.zeros((0, model.num_vertices, 3), np.float32),
           'yaw_degrees': np.zeros((0,), np.float32)}
  return distributed.map_rows(predict, len(arrays['image']), empty)


def evaluate_table1(methods: Mapping[str, tuple[Any, Any, Any]],
                    ground_truth: report.FaceGeometry, output_dir,
                    caption: str = '', figure_images: int = 4
                    ) -> dict[str, dict[str, float]]:
  """Table 1 for trained MoFa variants; writes table1.md/.json, figure3.png.

  With several processes each reconstructs its share of the faces
  (`predict_mofa_rows`), every process gets the same table, and process 0
  writes the files.

  Args:
    methods: name -> (config, workdir, in-memory face-format eval arrays
      whose order matches `ground_truth`).
    ground_truth: `synthetic_ground_truth` (or AFLW2000-3D's geometry).
    output_dir: where the report goes.
    caption: names the evaluation data, above the table.

  Returns:
    The rows under `report.DEFAULT_PROTOCOL` (PRNet's); table1.md and
    table1.json hold every protocol of `report.PROTOCOLS`.
  """
  by_protocol, overlays, inputs = {}, {}, None
  for name, (config, workdir, arrays) in methods.items():
    model = stages.load_face_model(config.face_model)
    prediction = predict_mofa_rows(config, workdir, arrays, model)
    for protocol, values in report.evaluate_protocols(
        mofa_train.predicted_geometry(prediction), ground_truth,
        model).items():
      by_protocol.setdefault(protocol, {})[name] = values
    if not distributed.is_main_process():
      continue  # the figure is drawn and written by process 0 only
    size = arrays['image'].shape[1]
    factor = max(FIGURE_SIZE, size) / size  # small inputs are drawn larger
    inputs = [figures.resize(image, round(size * factor))
              for image in arrays['image'][:figure_images]]
    overlays[name] = [
        figures.mesh_overlay(image, vertices * factor, model.triangles)
        for image, vertices in zip(inputs, prediction['vertices_screen'])]
  report.write_protocol_report(by_protocol, output_dir, caption=caption)
  if distributed.is_main_process():
    columns = [list(inputs)] + list(overlays.values())
    figure = figures.image_grid([list(r) for r in zip(*columns)])
    figures.save_png(pathlib.Path(output_dir) / 'figure3.png', figure)
  print(report.format_protocols(by_protocol, caption=caption))
  return by_protocol[report.DEFAULT_PROTOCOL]


# ----------------------------------------------------------------------------
# The whole paper.


def run_paper(config, workdir, data_dir=None, force=False, aflw2000_dir=None
              ) -> dict[str, dict[str, float]] | None:
  """Every stage (`stages.train_paper`), then Table 1 and Figure 3; prints
  where the outputs are. See the module docstring for the layout.

  `force`: go on in a workdir made with another config (`workdirs.claim`).
  Configs on real photos (configs/real.py: `config.evaluation =
  'aflw2000_3d'`) are scored on the AFLW2000-3D folder `aflw2000_dir`
  (default `config.aflw2000_dir`) by `evaluate_aflw_landmarks`; when their
  `config.data_root` is missing, one line is printed and None returned.
  """
  data_root = config.get('data_root', '')
  if data_root and not pathlib.Path(data_root).is_dir():
    print(f'pipeline skipped: no data_root {data_root} (from '
          f'{os.getcwd()}); the real photos are described in '
          'docs/real_data.md')
    return None
  workdir = pathlib.Path(workdir)
  start = time.time()
  pending = workdirs.claim(config, workdir, force)
  stages.train_paper(config, workdir, data_dir, force)
  if pending:  # every stage finished with the forced config
    workdirs.write_config(config, workdir)
  rows = evaluate_run(config, workdir, data_dir, aflw2000_dir)
  outputs = ('aflw2000_3d_landmarks.md, aflw2000_3d_landmarks.json, '
             f'{AFLW_FIGURE}' if _on_aflw(config) else
             'table1.md, table1.json, figure3.png')
  print(f'pipeline finished in {time.time() - start:.0f} s. Outputs:\n'
        f'  {workdir}/report/{outputs}\n'
        f'  stage workdirs in {workdir}/ (TensorBoard: <stage>/tensorboard)\n'
        f'  load: pnccface.api.load_reconstructor('
        f"'{workdir}/mofa_pncc_few', '{workdir}/pncc_few')")
  return rows


def _on_aflw(config) -> bool:
  """Whether a pipeline config is scored on AFLW2000-3D (configs/real.py)."""
  return config.get('evaluation', 'dataset') == 'aflw2000_3d'


def evaluate_run(config, workdir, data_dir=None, aflw2000_dir=None,
                 ddfa_dir=None) -> dict[str, dict[str, float]]:
  """The report of a finished `run_paper` workdir made with `config`.

  Real-photo configs (`config.evaluation == 'aflw2000_3d'`): the AFLW2000-3D
  table and figure (`evaluate_aflw_landmarks`) on `aflw2000_dir` (default
  `config.aflw2000_dir`), with the reference rows from `ddfa_dir` (default
  `config.ddfa_dir`, skipped with a warning when that folder is absent);
  relative paths are read from the working directory. Others: Table 1 and
  Figure 3 on the evaluation split (`evaluate_paper`), plus the AFLW2000-3D
  table when `aflw2000_dir` is given.
  """
  if not _on_aflw(config):
    rows = evaluate_paper(workdir, data_dir)
    if aflw2000_dir:
      evaluate_aflw_landmarks(workdir, aflw2000_dir, ddfa_dir)
    return rows
  aflw_dir = aflw2000_dir or config.aflw2000_dir
  if not pathlib.Path(aflw_dir).is_dir():
    raise FileNotFoundError(
        f'no AFLW2000-3D folder {aflw_dir} (from {os.getcwd()}; '
        f'{"--aflw2000_dir" if aflw2000_dir else "config.aflw2000_dir"}): '
        'pass --aflw2000_dir=DIR')
  ddfa_dir = ddfa_dir or config.get('ddfa_dir') or None
  if ddfa_dir is not None and not pathlib.Path(ddfa_dir).is_dir():
    logging.warning('no 3DDFA folder %s: the reference rows are left out',
                    ddfa_dir)
    ddfa_dir = None
  return evaluate_aflw_landmarks(workdir, aflw_dir, ddfa_dir,
                                 margin=config.aflw_crop_margin)


def evaluate_workdir(workdir, data_dir=None, aflw2000_dir=None,
                     ddfa_dir=None) -> dict[str, dict[str, float]]:
  """`evaluate_run` with the config the workdir was made with (its
  config.json): re-evaluates a finished pipeline without retraining."""
  return evaluate_run(workdirs.load_config(workdir), workdir, data_dir,
                      aflw2000_dir, ddfa_dir)


def evaluate_paper(workdir, data_dir=None) -> dict[str, dict[str, float]]:
  """Table 1 and Figure 3 of a `run_paper` workdir, on its evaluation split.

  Every stage is rebuilt from the config its workdir was trained with
  (`config.json`), so no config needs to be passed.
  """
  workdir = pathlib.Path(workdir)
  config = workdirs.load_config(workdir)
  mofa_size = config.mofa.image_size
  split = stages.eval_split(config.mofa)
  logging.info('report: Table 1 on %s/%s', config.mofa.dataset, split)
  ground_truth = synthetic_ground_truth(
      config.mofa.dataset, split, mofa_size,
      stages.load_face_model(config.mofa.face_model), data_dir)
  methods = {'MoFa': (
      workdirs.load_config(workdir / 'mofa'), workdir / 'mofa',
      stages.mofa_arrays(config.mofa, split, data_dir=data_dir))}
  for variant in ('few', 'full'):
    folder = workdir / f'mofa_pncc_{variant}'
    methods[f'MoFaPNCC_{variant}'] = (
        workdirs.load_config(folder), folder,
        pipeline.face_dataset(
            os.fspath(workdir / f'annotated_{variant}' / 'eval'), 'all',
            image_size=mofa_size))
  if (workdir / 'mofa_pncc_gt').is_dir():  # the ground-truth PNCC ablation
    gt_config = workdirs.load_config(workdir / 'mofa_pncc_gt')
    methods['MoFaPNCC_gt (ablation)'] = (
        gt_config, workdir / 'mofa_pncc_gt',
        stages.mofa_arrays(gt_config, split, data_dir=data_dir))
  caption = (f'Measured rows: {len(ground_truth.yaw_degrees)} faces of '
             f'{config.mofa.dataset} ({split}) at {mofa_size} px; '
             '"(paper)" rows: the paper\'s Table 1 on AFLW2000-3D.')
  return evaluate_table1(methods, ground_truth, workdir / 'report', caption)


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
  batches = stages.stage_eval_batches(pncc_config,
                                      pncc_config.model.resolution, data_dir)
  eval_fn = pncc_train.make_eval_fn(pncc_config, batches, num_images=0)
  return float(eval_fn(state)['eval/face_l1'])


def pncc_target_model(pncc_config, data_dir=None) -> MorphableModel | None:
  """The face model whose NCC colours a stage-1 dataset's PNCC targets (the
  TFDS builder's `model`: synthetic_faces, fitted_faces); None for mixed or
  release datasets (their PNCCs come from a user's BFM)."""
  name = pncc_config.dataset
  if '+' in name or name in pipeline.RELEASE_DATASETS:
    return None
  # Registers the project's builders (as pipeline.load_split does).
  from pnccface.data import fitted_faces  # pylint: disable=g-import-not-at-top,unused-import
  from pnccface.data import synthetic_faces  # pylint: disable=g-import-not-at-top,unused-import
  return getattr(tfds.builder(name, data_dir=data_dir), 'model', None)


def heldout_yaw_degrees(pncc_config, data_dir=None) -> np.ndarray:
  """[N] stored yaw (degrees) of a stage-1 config's eval faces, in the order
  of `stages.stage_eval_batches` (the fitted or rendered face's pose)."""
  split = pipeline.load_split(pncc_config.dataset,
                              stages.eval_split(pncc_config),
                              data_dir=data_dir,
                              manual_dir=pncc_config.get('manual_dir', None))
  return np.array([float(r['pose']['yaw']) for r in tfds.as_numpy(split)])


def pncc_yaw_errors(pncc_config, workdir, model: MorphableModel,
                    data_dir=None) -> dict[str, np.ndarray]:
  """Yaw read from PNCCs (`pncc_pose`) on a stage-1 config's eval faces.

  The camera is fitted, at the predictor's output size, on the pixels that
  are wholly face in the ground-truth mask (border pixels mix in the
  background's 0), for the predicted PNCC (`workdir`'s checkpoint) and for
  the ground-truth one (the method's floor: identity and expression are its
  only error).

  Returns:
    {'truth': [N] stored yaw, 'ground_truth_pncc': [N], 'predicted': [N]}
    in degrees.
  """
  predict = pncc_train.make_predict_fn(pncc_config)
  variables = common.load_apply_variables(workdir)
  decoder = pncc_pose.ncc_decoder(model)  # once, not per batch
  out = {'ground_truth_pncc': [], 'predicted': []}
  for batch in stages.stage_eval_batches(
      pncc_config, pncc_config.model.resolution, data_dir):
    pncc = {'predicted': np.asarray(predict(
        variables, common.unshard(batch['image'], 4)))}
    size = pncc['predicted'].shape[1]
    pncc['ground_truth_pncc'] = pncc_train.resize_area(
        common.unshard(batch['pncc'], 4), size)
    mask = np.asarray(pncc_train.resize_area(
        common.unshard(batch['mask'], 4), size))[..., 0] > 0.99
    for key, value in pncc.items():
      out[key].append(pncc_pose.pncc_pose_degrees(
          value, mask, decoder=decoder)[:, 1])
  out = {k: np.concatenate(v) for k, v in out.items()}
  out['truth'] = heldout_yaw_degrees(pncc_config, data_dir)
  return out


def _same_stage(config, workdir) -> bool:
  """Whether `workdir` is a finished stage trained with exactly `config`."""
  if not (pathlib.Path(workdir) / workdirs.CONFIG_FILE).is_file():
    return False
  return not workdirs.config_diff(
      workdirs.as_json_dict(workdirs.load_config(workdir)),
      workdirs.as_json_dict(config)) and stages.is_finished(
          workdir, config.num_train_steps)


def run_pncc_ablation(config, workdir, data_dir=None, force=False
                      ) -> dict[str, dict[str, dict[str, float]]]:
  """Held-out PNCC quality of the stage-1 variants, few and full.

  Uses (and trains if needed) `workdir/autoencoder`; variants go to
  `workdir/ablation/<few|full>_<k>`, except that the pipeline's own
  `workdir/pncc_<few|full>` is reused when it is finished and was trained
  with exactly the variant's config (the paper's variant: ITL+SCAF on the
  frozen decoder). Per variant: face-pixel L1 (`pncc_heldout_l1`), the yaw
  MAE (degrees) of the pose read from the predicted PNCC against the eval
  face's stored yaw (`pncc_yaw_errors`; when the dataset's face model is
  known, `pncc_target_model`), and the seconds this call spent training it
  (0 when it was already trained). A reference row gives the same yaw read
  from the ground-truth PNCCs.

  Returns {variant: {'PNCC_few' | 'PNCC_full': {'face_l1', 'yaw_mae',
  'train_s', 'workdir'}}} and writes workdir/ablation/pncc_ablation.md and
  .json.
  """
  # Absolute: each variant's config.json records `init_from` (as in
  # stages.train_paper), so reruns from another cwd match it.
  workdir = pathlib.Path(workdir).resolve()
  stages.run_autoencoder(config.autoencoder, workdir / 'autoencoder',
                         data_dir, force)
  model = pncc_target_model(config.pncc_few, data_dir)
  # The caption's count of yaw-scored faces: pncc_few's eval split, which it
  # names.
  num_eval = (None if model is None else
              len(heldout_yaw_degrees(config.pncc_few, data_dir)))
  table, reference = {}, {}
  for k, (name, (skips, decoder)) in enumerate(ABLATION_VARIANTS.items()):
    table[name] = {}
    for label, base in (('PNCC_few', config.pncc_few),
                        ('PNCC_full', config.pncc_full)):
      variant = base.copy_and_resolve_references()
      variant.init_from = os.fspath(workdir / 'autoencoder')
      variant.model.use_skips = skips
      variant.model.freeze_decoder = decoder == 'frozen'
      variant.from_scratch_decoder = decoder == 'scratch'
      out = workdir / label.lower()
      if not _same_stage(variant, out):
        out = workdir / 'ablation' / f'{label.lower()}_{k}'
      finished = stages.is_finished(out, variant.num_train_steps)
      start = time.time()
      stages.run_pncc(variant, out, data_dir, force)
      row = {'face_l1': pncc_heldout_l1(variant, out, data_dir),
             'train_s': 0.0 if finished else time.time() - start,
             'workdir': os.fspath(out)}
      if model is not None:
        yaws = pncc_yaw_errors(variant, out, model, data_dir)
        row['yaw_mae'] = float(metrics.yaw_absolute_error(
            yaws['predicted'], yaws['truth']).mean())
        reference.setdefault(label, float(metrics.yaw_absolute_error(
            yaws['ground_truth_pncc'], yaws['truth']).mean()))
      table[name][label] = row
      logging.info('ablation | %s | %s | %s', name, label, row)
  text = _ablation_markdown(table, reference, config, num_eval)
  if distributed.is_main_process():
    (workdir / 'ablation').mkdir(parents=True, exist_ok=True)
    (workdir / 'ablation' / 'pncc_ablation.md').write_text(text)
    (workdir / 'ablation' / 'pncc_ablation.json').write_text(json.dumps(
        {'rows': table, 'ground_truth_pncc_yaw_mae': reference}, indent=1))
  print(text)
  return table


def _ablation_markdown(table, reference, config, num_eval) -> str:
  """The ablation table: L1 and yaw MAE per variant, few and full."""
  labels = ('PNCC_few', 'PNCC_full')
  cell = lambda row, key, fmt: fmt.format(row[key]) if key in row else '-'
  rows = [[name] + [cell(row[label], key, fmt) for label in labels
                    for key, fmt in (('face_l1', '{:.4f}'),
                                     ('yaw_mae', '{:.2f}'),
                                     ('train_s', '{:.0f}'))]
          for name, row in table.items()]
  if reference:
    rows.append(['ground-truth PNCC (reference)'] + [
        v for label in labels for v in ('0', f'{reference[label]:.2f}', '-')])
  header = ['stage-1 variant']
  for label in labels:
    count = config[label.lower()].num_train_samples
    header += [f'{label} ({"all" if count < 0 else count}) L1',
               f'{label} yaw MAE (deg)', f'{label} train (s)']
  caption = (f'Held-out PNCC quality on {config.pncc_few.dataset} '
             f'({stages.eval_split(config.pncc_few)}'
             f'{"" if num_eval is None else f", {num_eval} faces"}): mean L1 '
             'on face pixels; yaw MAE of the weak-perspective camera fitted '
             'to the PNCC-implied correspondences (face pixels) against the '
             'face\'s stored yaw; train: seconds this run spent training it '
             '(0: already trained, or the pipeline\'s own stage reused).\n\n')
  return caption + markdown_table(header, rows)


def aflw_pose_errors(predicted_degrees: np.ndarray, params
                     ) -> dict[str, float]:
  """Pitch / yaw / roll MAE (degrees, wrapped) against `Pose_Para`.

  predicted_degrees: [N, 3] (pitch, yaw, roll); the ground truth is the
  canonical Euler triple of the rotation the file's three angles build
  (`geometry.rotation_to_euler_degrees`, as the predictions' own), so the
  few files whose raw angles leave [-180, 180] count as the same rotation.
  """
  truth = np.stack([np.asarray(geometry.rotation_to_euler_degrees(
      geometry.euler_to_rotation(*p.pose_para[:3])), np.float64)
                    for p in params])
  return {f'{angle}_mae': float(metrics.yaw_absolute_error(
      predicted_degrees[:, k], truth[:, k]).mean())
          for k, angle in enumerate(('pitch', 'yaw', 'roll'))}


def ict_fit_reference(params) -> dict[str, float]:
  """NME and pose MAE of ICT-FaceKit fitted to the true 68 landmarks.

  What the face model can explain when given the answer's landmarks; its
  pose error checks that our frame and Euler conventions read `Pose_Para`
  the way the release means it (about 2 degrees of yaw on the 60 shared
  images, docs/results.md).
  """
  landmarks, angles = ict_fit_rows(params)
  row = aflw.evaluate_landmarks(landmarks, params)
  row.update(aflw_pose_errors(angles, params))
  return row


def ict_fit_rows(params) -> tuple[np.ndarray, np.ndarray]:
  """`ict_fit_reference`'s fitted 68 landmarks [N, 68, 2] (450 x 450 image
  frame) and (pitch, yaw, roll) [N, 3] in degrees, on every process; with
  several processes each fits only its block (`distributed.map_rows`; each
  face's Levenberg-Marquardt fit is its own)."""

  def fit_block(rows: slice) -> dict[str, np.ndarray]:
    fit = fitting.fit_landmarks(facemodel.default_model(),
                                aflw.ground_truth(params[rows])[0],
                                aflw.IMAGE_SIZE)
    angles = [geometry.rotation_to_euler_degrees(
        geometry.euler_to_rotation(*pose[:3]))
              for pose in np.asarray(fit.pose_para)]
    return {'landmarks': np.asarray(fit.landmarks_2d, np.float32),
            'angles': np.asarray(angles, np.float64)}

  empty = {'landmarks': np.zeros((0, 68, 2), np.float32),
           'angles': np.zeros((0, 3), np.float64)}
  gathered = distributed.map_rows(fit_block, len(params), empty)
  return gathered['landmarks'], gathered['angles']


# `evaluate_aflw_landmarks`' row of a stage-1 predictor ('full', 'few') alone.
PNCC_ALONE_ROW = 'PNCC_{} alone: mean face, PNCC pose'
AFLW_COLUMNS = ('[0,30]', '(30,60]', '(60,90]', 'balanced', 'overall',
                'yaw_mae', 'pitch_mae', 'roll_mae')


def evaluate_aflw_landmarks(workdir, aflw_dir, ddfa_dir=None,
                            margin: float = 0.2
                            ) -> dict[str, dict[str, float]]:
  """68-landmark NME and head-pose MAE of the pipeline's MoFa variants on
  AFLW2000-3D.

  Needs only the release's .mat/.jpg files: NME per |yaw| bin, balanced and
  overall (3DDFA's protocol, `aflw.evaluate_landmarks`), and pitch / yaw /
  roll MAE in degrees against `Pose_Para` (`aflw_pose_errors`). Faces are
  cropped around their ground-truth landmarks with `margin`
  (`aflw.predict_on_crops`; configs/real.py's models were trained on
  face_photos crops, margin 0.4). With `ddfa_dir` (3DDFA's `u_base.txt`,
  `w_shp_base.txt`, ... files) two references are added: the landmarks
  rebuilt from each file's parameters and the mean face under the true pose
  (their pose error is 0 by construction). Writes
  <workdir>/report/aflw2000_3d_landmarks.md and .json, and Figure 3 on
  these photos (`aflw_figure3`: <workdir>/report/figure3_aflw2000_3d.png
  and .md) when the workdir has a trained MoFa variant. Each finished
  stage-1 predictor whose dataset names its face model (`pncc_target_model`)
  adds a row of its own (`aflw_pncc_rows`: the mean face under the pose its
  PNCCs imply), so stage 1's transfer to these photos is scored too, and
  their PNCCs are drawn (`aflw_pncc_figure`: <workdir>/report/
  pncc_aflw2000_3d.png).
  """
  workdir = pathlib.Path(workdir)
  params = aflw.read_release(aflw_dir)
  rows = {'ICT-FaceKit fit to the true landmarks (reference)':
          ict_fit_reference(params)}
  if ddfa_dir is not None:
    sparse = facemodel.load_3ddfa_sparse_model(ddfa_dir)
    rows['3DDFA parameters (reference)'] = aflw.evaluate_landmarks(
        aflw.posed_landmarks(params, sparse), params)
    rows['mean face, true pose (reference)'] = aflw.evaluate_landmarks(
        aflw.posed_landmarks(params, sparse, use_coefficients=False), params)
  methods = {'MoFa': ('mofa', None), 'MoFaPNCC_few': ('mofa_pncc_few', 'few'),
             'MoFaPNCC_full': ('mofa_pncc_full', 'full')}
  loaded_predictors = {}  # each stage-1 checkpoint is read once

  def pncc_predictor(predictor):
    if predictor not in loaded_predictors:
      loaded_predictors[predictor] = api.load_pncc_predictor(
          workdir / f'pncc_{predictor}')
    return loaded_predictors[predictor]

  reconstructors = {}
  for name, (folder, predictor) in methods.items():
    if not (workdir / folder).is_dir():
      continue
    reconstructor = reconstructors[name] = api.load_reconstructor(
        workdir / folder,
        None if predictor is None else pncc_predictor(predictor))
    landmarks, angles = predict_aflw_rows(reconstructor, aflw_dir, params,
                                          margin)
    rows[name] = aflw.evaluate_landmarks(landmarks, params)
    rows[name].update(aflw_pose_errors(angles, params))
  predictors = {}  # stage 1 alone (`aflw_pncc_rows`)
  for predictor in ('full', 'few'):
    folder = workdir / f'pncc_{predictor}'
    if not (folder / workdirs.CONFIG_FILE).is_file():
      continue
    pncc_config = workdirs.load_config(folder)
    model = pncc_target_model(pncc_config)
    if model is None or not stages.is_finished(folder,
                                               pncc_config.num_train_steps):
      continue
    predictors[f'PNCC_{predictor}'] = pncc_predictor(predictor)
    landmarks, angles = aflw_pncc_rows(predictors[f'PNCC_{predictor}'],
                                       params, margin, model)
    name = PNCC_ALONE_ROW.format(predictor)
    rows[name] = aflw.evaluate_landmarks(landmarks, params)
    rows[name].update(aflw_pose_errors(angles, params))
  text = (f'68-landmark 2D NME (%) on AFLW2000-3D ({aflw_dir}), '
          f'{len(params)} images, by |yaw| bin (3DDFA\'s rule); head-pose '
          'MAE (degrees) against Pose_Para\n\n' + markdown_table(
              ['method', *AFLW_COLUMNS], [[name] + [
                  _aflw_cell(row, key) for key in AFLW_COLUMNS]
                                          for name, row in rows.items()]))
  if distributed.is_main_process():
    (workdir / 'report').mkdir(parents=True, exist_ok=True)
    (workdir / 'report' / 'aflw2000_3d_landmarks.md').write_text(text)
    (workdir / 'report' / 'aflw2000_3d_landmarks.json').write_text(
        json.dumps({'aflw2000_dir': os.fspath(aflw_dir),
                    'num_images': len(params), 'rows': rows}, indent=1))
  print(text)
  if reconstructors and distributed.is_main_process():
    aflw_figure3(reconstructors, params, margin,
                 workdir / 'report' / AFLW_FIGURE)
  if predictors and distributed.is_main_process():
    aflw_pncc_figure(predictors, params, margin,
                     workdir / 'report' / AFLW_PNCC_FIGURE)
  return rows


def predict_aflw_rows(reconstructor: api.Reconstructor, aflw_dir, params,
                      margin: float) -> tuple[np.ndarray, np.ndarray]:
  """A reconstructor's 68 landmarks [N, 68, 2] (450 x 450 image frame) and
  (pitch, yaw, roll) [N, 3] in degrees on the release's crops
  (`aflw.predict_on_crops`, `margin`), on every process; with several
  processes each crops and reconstructs only its block
  (`distributed.map_rows`)."""

  def predict_block(rows: slice) -> dict[str, np.ndarray]:
    angles = []  # predict's calls, batch by batch

    def predict(images):
      result = reconstructor.reconstruct(images)
      angles.append(np.stack([result.pitch_degrees, result.yaw_degrees,
                              result.roll_degrees], -1).astype(np.float32))
      return result.landmarks_2d

    landmarks = aflw.predict_on_crops(
        aflw_dir, params[rows], predict, crop_size=reconstructor.input_size,
        margin=margin)
    return {'landmarks': landmarks, 'angles': np.concatenate(angles)}

  empty = {'landmarks': np.zeros((0, 68, 2), np.float32),
           'angles': np.zeros((0, 3), np.float32)}
  gathered = distributed.map_rows(predict_block, len(params), empty)
  return gathered['landmarks'], gathered['angles']


def aflw_pncc_rows(predictor: api.PNCCPredictor, params, margin: float,
                   model: MorphableModel) -> tuple[np.ndarray, np.ndarray]:
  """Stage 1 alone on AFLW2000-3D: what a predictor's PNCCs say of the head.

  Each release crop (`aflw.face_crops`, `margin`, at the predictor's input
  size) gets its PNCC; the weak-perspective camera those correspondences
  imply (`pncc_pose`, on the PNCC's own face pixels:
  `pncc_pose.predicted_face_mask`, as there is no true mask) gives the pose,
  and `model`'s mean face under that camera gives 68 landmarks. So stage 1's
  transfer to the evaluation photos is measured on the same NME and pose
  columns as the MoFa variants, with no PNCC ground truth.

  Args:
    predictor: a stage-1 predictor (`api.load_pncc_predictor`).
    params: the release's faces (`aflw.read_release`).
    margin: the crop margin (`evaluate_aflw_landmarks`' `margin`).
    model: the face model whose NCC the predictor's PNCCs use (the stage-1
      dataset's, `pncc_target_model`).

  Returns:
    landmarks [N, 68, 2] in the 450 x 450 image frame and (pitch, yaw, roll)
    [N, 3] in degrees, on every process (`distributed.map_rows`).
  """
  size = predictor.input_size
  decoder = pncc_pose.ncc_decoder(model)
  mean_landmarks = np.asarray(model.mean_shape)[np.asarray(
      model.landmark_indices)]

  def predict_block(rows: slice) -> dict[str, np.ndarray]:
    angles = []  # predict's calls, batch by batch

    def predict(images):  # crops -> the mean face's landmarks in the crop
      pncc = predictor.predict_pncc(images)
      camera = pncc_pose.pncc_camera(
          pncc, pncc_pose.predicted_face_mask(pncc), decoder=decoder)
      angles.append(np.stack([np.asarray(a) for a in
                              geometry.rotation_to_euler_degrees(
                                  camera.rotation)], -1))
      return np.asarray(geometry.weak_perspective_to_screen(
          mean_landmarks, camera, size))[..., :2]

    landmarks = aflw.predict_on_crops(None, params[rows], predict,
                                      crop_size=size, margin=margin)
    return {'landmarks': landmarks.astype(np.float32),
            'angles': np.concatenate(angles).astype(np.float32)}

  empty = {'landmarks': np.zeros((0, 68, 2), np.float32),
           'angles': np.zeros((0, 3), np.float32)}
  gathered = distributed.map_rows(predict_block, len(params), empty)
  return gathered['landmarks'], gathered['angles']


AFLW_FIGURE = 'figure3_aflw2000_3d.png'
AFLW_PNCC_FIGURE = 'pncc_aflw2000_3d.png'  # `aflw_pncc_figure`


def aflw_figure3(reconstructors: Mapping[str, api.Reconstructor], params,
                 margin: float, path, num_faces: int = 6) -> np.ndarray:
  """The paper's Figure 3 on AFLW2000-3D photos; returns the picked indices.

  Rows: `num_faces` faces spread over |yaw| (`aflw.yaw_spread`), cropped as
  the table's (`aflw.face_crops`, `margin`) at FIGURE_SIZE pixels; columns:
  the input (labelled with its yaw in degrees), then each reconstructor's
  mesh overlay, in the mapping's order. Green dots: the ground-truth 68
  landmarks (`pt3d_68`). Process 0 writes `path` (PNG) and, beside it, a
  .md caption naming the rows' images and yaws.
  """
  picked = aflw.yaw_spread(params, min(num_faces, len(params)))
  images, boxes = aflw.face_crops(params, picked, FIGURE_SIZE, margin)
  gt, _ = aflw.ground_truth([params[i] for i in picked])
  dots = [crop.transform_points(p, box, FIGURE_SIZE)
          for p, box in zip(gt, boxes)]
  yaws = aflw.yaw_degrees(params, aflw.YAW_ROTATION)
  columns = [[figures.draw_label(figures.draw_points(im, d),
                                 f'{round(yaws[i]):+d}\N{DEGREE SIGN}')
              for im, d, i in zip(images, dots, picked)]]
  for reconstructor in reconstructors.values():
    result = reconstructor.reconstruct(images)
    triangles = reconstructor.face_model.triangles
    columns.append([figures.draw_points(
        figures.mesh_overlay(im, vertices, triangles), d)
                    for im, vertices, d in zip(images, result.vertices_screen,
                                               dots)])
  path = figures.save_png(path, figures.image_grid(
      [list(row) for row in zip(*columns)]))
  rows = '\n'.join(
      f'{k + 1}. {pathlib.Path(params[i].path).stem}: yaw {yaws[i]:+.1f} deg'
      for k, i in enumerate(picked))
  if not distributed.is_main_process():
    return picked
  path.with_suffix('.md').write_text(
      f'![Figure 3 on AFLW2000-3D]({path.name})\n\nColumns: input | '
      f'{" | ".join(reconstructors)} (mesh overlays); green dots: the '
      'ground-truth 68 landmarks. Rows, by |yaw| (canonical yaw of '
      f'Pose_Para\'s rotation):\n\n{rows}\n')
  return picked


def aflw_pncc_figure(predictors: Mapping[str, api.PNCCPredictor], params,
                     margin: float, path, num_faces: int = 6) -> np.ndarray:
  """Stage 1's PNCCs on AFLW2000-3D photos; returns the picked indices.

  The faces of `aflw_figure3` (`aflw.yaw_spread`, the same crops); columns:
  the input (labelled with its yaw in degrees), then each predictor's PNCC
  (predicted at its input size, shown at FIGURE_SIZE) in the mapping's
  order: what MoFaPNCC reads beside the photo. Process 0 writes `path`.
  """
  picked = aflw.yaw_spread(params, min(num_faces, len(params)))
  images, _ = aflw.face_crops(params, picked, FIGURE_SIZE, margin)
  yaws = aflw.yaw_degrees(params, aflw.YAW_ROTATION)
  columns = [[figures.draw_label(im, f'{round(yaws[i]):+d}\N{DEGREE SIGN}')
              for im, i in zip(images, picked)]]
  columns += [list(predictor.predict_pncc(images))
              for predictor in predictors.values()]
  figures.save_png(path, figures.image_grid(
      [list(row) for row in zip(*columns)]))
  return picked


def _aflw_cell(row: Mapping[str, float], key: str) -> str:
  """NME in percent; angles in degrees; '-' where a row has no value."""
  if key not in row:
    return '-'
  return f'{row[key]:.2f}' if key.endswith('_mae') else f'{100 * row[key]:.2f}'
