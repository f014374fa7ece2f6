"""The whole paper on the embedded default, from nothing to Table 1.

`get_config()` is the CPU-sized run: every stage at reduced resolution and
length on synthetic_faces/small, so that the whole pipeline runs on a laptop
or a 2-core CI machine; `get_config('tiny')` is the minutes-scale smoke run
(CI). The stage configs are those of configs/*.py with the overrides below;
`launch/pipeline.py --config=configs/pipeline.py:tiny --workdir=...`.
"""

import ml_collections

from pnccface import configs_lib


def _stage(name, arg):
  return configs_lib.sibling(__file__, name).get_config(arg)


def get_config(arg=None):
  tiny = arg == 'tiny'
  variant = 'tiny' if tiny else None
  dataset = 'synthetic_faces/tiny' if tiny else 'synthetic_faces/small'
  config = ml_collections.ConfigDict()
  config.autoencoder = _stage('autoencoder', variant)
  config.pncc_full = _stage('pncc_full', variant)
  config.pncc_few = _stage('pncc_few', variant)
  config.mofa = _stage('mofa', variant)
  config.mofa_pncc = _stage('mofa_pncc', variant)
  config.mofa_pncc.pncc_source = 'annotated'
  # MoFaPNCC on the synthetic faces' true PNCC: an upper bound for the PNCC
  # input (not in the paper's table; skipped in the tiny run).
  config.ground_truth_pncc_ablation = not tiny
  if not tiny:
    _cpu_sized(config)
  for stage in (config.autoencoder, config.pncc_full, config.pncc_few,
                config.mofa, config.mofa_pncc):
    stage.dataset = dataset
    stage.eval_split = 'test'
    if tiny:  # synthetic_faces/tiny has 32 test faces
      stage.num_eval_samples = min(stage.num_eval_samples, 32)
  return config


def _cpu_sized(config) -> None:
  """The paper's stages at 64x64 and CPU lengths (see docs/results.md)."""
  autoencoder_model = dict(resolution=64, base_width=16, pncc_resolution=64)
  for stage in (config.autoencoder, config.pncc_full, config.pncc_few):
    stage.model.update(autoencoder_model)
    stage.num_eval_samples = 200
    stage.use_tensorboard = True
  ae = config.autoencoder
  ae.batch_size, ae.num_train_steps = 16, 1000
  ae.optimizer.lr = 3e-4
  # 1000 steps hold no 3FabRec phases: the structural loss from the start.
  ae.loss.update(dict(with_gan=False, disc_ndf=16, zdisc_hidden=256,
                      ssim_start_step=0))
  ae.eval_every, ae.checkpoint_every, ae.log_every = 500, 250, 50
  for stage, steps in ((config.pncc_full, 600), (config.pncc_few, 300)):
    stage.num_train_steps = steps
    stage.optimizer.warmup_steps = 50
    stage.eval_every, stage.checkpoint_every, stage.log_every = 300, 150, 50
  config.pncc_full.batch_size = 16
  for stage in (config.mofa, config.mofa_pncc):
    stage.image_size = 64
    stage.model.backbone = 'resnet'
    stage.model.norm = 'batch'
    stage.model.resnet.update(dict(width=16, stage_blocks=(1, 1, 1, 1)))
    stage.batch_size, stage.num_train_steps = 16, 600
    stage.optimizer.update(dict(lr=5e-4, warmup_steps=100))
    stage.num_eval_samples = 200
    stage.eval_every, stage.checkpoint_every, stage.log_every = 300, 150, 50
