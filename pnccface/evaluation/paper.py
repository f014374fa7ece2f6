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
  workdir/report             table1.md, table1.json, figure3.png
"""

from __future__ import annotations

import os
import pathlib
import time
import types
from typing import Any, Mapping

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from pnccface import api
from pnccface import facemodel
from pnccface import stages
from pnccface import workdirs
from pnccface.data import crop
from pnccface.data import pipeline
from pnccface.data import synthesis
from pnccface.evaluation import aflw
from pnccface.evaluation import figures
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


def evaluate_table1(methods: Mapping[str, tuple[Any, Any, Any]],
                    ground_truth: report.FaceGeometry, output_dir,
                    caption: str = '', figure_images: int = 4
                    ) -> dict[str, dict[str, float]]:
  """Table 1 for trained MoFa variants; writes table1.md/.json, figure3.png.

  Args:
    methods: name -> (config, workdir, face-format eval arrays whose order
      matches `ground_truth`).
    ground_truth: `synthetic_ground_truth` (or AFLW2000-3D's geometry).
    output_dir: where the report goes.
    caption: names the evaluation data, above the table.

  Returns:
    The rows under `report.DEFAULT_PROTOCOL` (PRNet's); table1.md and
    table1.json hold every protocol of `report.PROTOCOLS`.
  """
  by_protocol, overlays, inputs = {}, {}, None
  for name, (config, workdir, arrays) in methods.items():
    prediction = stages.predict_mofa(config, workdir, arrays)
    model = stages.load_face_model(config.face_model)
    for protocol, values in report.evaluate_protocols(
        mofa_train.predicted_geometry(prediction), ground_truth,
        model).items():
      by_protocol.setdefault(protocol, {})[name] = values
    size = arrays['image'].shape[1]
    factor = max(FIGURE_SIZE, size) / size  # small inputs are drawn larger
    inputs = [figures.resize(image, round(size * factor))
              for image in arrays['image'][:figure_images]]
    overlays[name] = [
        figures.mesh_overlay(image, vertices * factor, model.triangles)
        for image, vertices in zip(inputs, prediction['vertices_screen'])]
  report.write_protocol_report(by_protocol, output_dir, caption=caption)
  columns = [list(inputs)] + list(overlays.values())
  figure = figures.image_grid([list(r) for r in zip(*columns)])
  figures.save_png(pathlib.Path(output_dir) / 'figure3.png', figure)
  print(report.format_protocols(by_protocol, caption=caption))
  return by_protocol[report.DEFAULT_PROTOCOL]


# ----------------------------------------------------------------------------
# The whole paper.


def run_paper(config, workdir, data_dir=None, force=False
              ) -> dict[str, dict[str, float]]:
  """Every stage (`stages.train_paper`), then Table 1 and Figure 3; prints
  where the outputs are. See the module docstring for the layout.

  `force`: go on in a workdir made with another config (`workdirs.claim`).
  """
  workdir = pathlib.Path(workdir)
  start = time.time()
  pending = workdirs.claim(config, workdir, force)
  stages.train_paper(config, workdir, data_dir, force)
  if pending:  # every stage finished with the forced config
    workdirs.write_config(config, workdir)
  rows = evaluate_paper(workdir, data_dir)
  print(f'pipeline finished in {time.time() - start:.0f} s. Outputs:\n'
        f'  {workdir}/report/table1.md, table1.json, figure3.png\n'
        f'  stage workdirs in {workdir}/ (TensorBoard: <stage>/tensorboard)\n'
        f'  load: pnccface.api.load_reconstructor('
        f"'{workdir}/mofa_pncc_few', '{workdir}/pncc_few')")
  return rows


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


def run_pncc_ablation(config, workdir, data_dir=None, force=False
                      ) -> dict[str, dict[str, float]]:
  """Held-out PNCC error of the stage-1 variants, few and full.

  Uses (and trains if needed) `workdir/autoencoder`; variants go to
  `workdir/ablation/<few|full>_<k>`. Returns {variant: {'PNCC_few': l1,
  'PNCC_full': l1}} and writes workdir/ablation/pncc_ablation.md.
  """
  # Absolute: each variant's config.json records `init_from` (as in
  # stages.train_paper), so reruns from another cwd match it.
  workdir = pathlib.Path(workdir).resolve()
  stages.run_autoencoder(config.autoencoder, workdir / 'autoencoder',
                         data_dir, force)
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
      stages.run_pncc(variant, out, data_dir, force)
      table[name][label] = pncc_heldout_l1(variant, out, data_dir)
      logging.info('ablation | %s | %s | %.4f', name, label,
                   table[name][label])
  text = markdown_table(
      ['stage-1 variant', 'PNCC_few (50)', 'PNCC_full'],
      [[name, f'{row["PNCC_few"]:.4f}', f'{row["PNCC_full"]:.4f}']
       for name, row in table.items()])
  (workdir / 'ablation').mkdir(parents=True, exist_ok=True)
  (workdir / 'ablation' / 'pncc_ablation.md').write_text(text)
  print(text)
  return table


def evaluate_aflw_landmarks(workdir, aflw_dir, ddfa_dir=None
                            ) -> dict[str, dict[str, float]]:
  """Sparse 68-landmark NME of the pipeline's MoFa variants on AFLW2000-3D.

  Needs only the release's .mat/.jpg files. With `ddfa_dir` (3DDFA's
  `u_base.txt`, `w_shp_base.txt`, ... files) two references are added: the
  landmarks rebuilt from each file's parameters and the mean face under the
  true pose. Writes <workdir>/report/aflw2000_3d_landmarks.md.
  """
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
        crop_size=reconstructor.input_size), params)
  bins = ('[0,30]', '(30,60]', '(60,90]', 'balanced', 'overall')
  text = (f'68-landmark 2D NME (%) on AFLW2000-3D, {len(params)} images\n\n'
          + markdown_table(['method', *bins],
                           [[name] + [f'{100 * r[k]:.2f}' for k in bins]
                            for name, r in rows.items()]))
  (workdir / 'report').mkdir(parents=True, exist_ok=True)
  (workdir / 'report' / 'aflw2000_3d_landmarks.md').write_text(text)
  print(text)
  return rows
