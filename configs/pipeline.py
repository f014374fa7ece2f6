"""The whole paper on the embedded default, from nothing to Table 1.

`get_config()` is the CPU-sized run: every stage at reduced resolution and
length on synthetic_faces/small, so that the whole pipeline runs on a laptop
or a 2-core CI machine (docs/results.md); `get_config('tiny')` is the
minutes-scale smoke run of the stages' tiny variants (CI).

  python launch/pipeline.py --config=configs/pipeline.py:tiny --workdir=...
"""

import ml_collections

from configs import autoencoder
from configs import mofa
from configs import mofa_pncc
from configs import pncc_few
from configs import pncc_full

STAGES = {'autoencoder': autoencoder, 'pncc_full': pncc_full,
          'pncc_few': pncc_few, 'mofa': mofa, 'mofa_pncc': mofa_pncc}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  for name, module in STAGES.items():
    config[name] = module.get_config()
  config.mofa_pncc.pncc_source = 'annotated'
  # MoFaPNCC on the synthetic faces' true PNCC: an upper bound for the PNCC
  # input (not in the paper's table).
  config.ground_truth_pncc_ablation = True

  # The paper's stages at 64x64 and CPU lengths.
  for stage in (config.autoencoder, config.pncc_full, config.pncc_few):
    stage.model.update(dict(resolution=64, base_width=16))
    stage.eval_every, stage.checkpoint_every, stage.log_every = 300, 150, 50
  ae = config.autoencoder
  ae.batch_size, ae.num_train_steps = 16, 1000
  ae.optimizer.lr = 3e-4
  # 1000 steps hold no 3FabRec phases: the structural loss from the start.
  ae.loss.update(dict(with_gan=False, disc_ndf=16, zdisc_hidden=256,
                      ssim_start_step=0))
  ae.eval_every, ae.checkpoint_every = 500, 250
  config.pncc_full.batch_size, config.pncc_full.num_train_steps = 16, 600
  config.pncc_few.num_train_steps = 300
  for stage in (config.pncc_full, config.pncc_few):
    stage.model.pncc_resolution = 64
    stage.optimizer.warmup_steps = 50
  for stage in (config.mofa, config.mofa_pncc):
    stage.image_size = 64
    stage.model.backbone = 'resnet'
    stage.model.backbone_kwargs = ml_collections.ConfigDict(dict(
        width=16, stage_blocks=(1, 1, 1, 1)))  # ResNetFeatures' fields
    stage.model.norm = 'batch'
    stage.batch_size, stage.num_train_steps = 16, 600
    stage.optimizer.update(dict(lr=5e-4, warmup_steps=100))
    stage.eval_every, stage.checkpoint_every, stage.log_every = 300, 150, 50
  for name in STAGES:
    config[name].dataset = 'synthetic_faces/small'
    config[name].eval_split = 'test'
    config[name].num_eval_samples = 200

  if arg == 'tiny':
    for name, module in STAGES.items():
      config[name] = module.get_config('tiny')  # on synthetic_faces/tiny
    config.mofa_pncc.pncc_source = 'annotated'
    config.ground_truth_pncc_ablation = False
  return config
