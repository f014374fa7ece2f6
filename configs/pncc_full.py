"""Stage 1, PNCC_full: PNCC predictor on all of 300W-LP (122,450 samples).

`get_config()` is the paper setting at 3FabRec's sizes; `get_config('tiny')`
is a seconds-scale variant for tests (32x32 input, width 8).
Encoder/decoder come from the stage-0 workdir in `init_from`.
"""

import ml_collections

from configs import autoencoder


def model_config() -> ml_collections.ConfigDict:
  """`pnccface.models.autoencoder.PNCCPredictor`'s fields: stage 0's
  autoencoder sizes plus the PNCC head."""
  config = autoencoder.model_config()
  config.update(dict(
      pncc_resolution=128,  # LandmarkHeadV2: 128 for 256
      use_skips=True,  # SCAF
      freeze_encoder=True,
      freeze_decoder=True,
  ))
  return config


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = 'synthetic_faces'  # real data: '300w_lp'
  config.train_split = 'train'
  config.eval_split = 'test'
  config.num_train_samples = -1  # -1: all
  config.num_eval_samples = 1000
  config.model = model_config()
  config.init_from = ''  # stage-0 workdir; '' = random encoder/decoder
  # Ablation: a random decoder instead of stage 0's (needs
  # model.freeze_decoder=False).
  config.from_scratch_decoder = False
  config.batch_size = 32  # global, over all devices
  config.num_train_steps = 50_000
  config.optimizer = ml_collections.ConfigDict(dict(
      lr=1e-3,  # 3FabRec landmark head: Adam 1e-3
      b1=0.9, b2=0.999, weight_decay=0.0, grad_clip=0.0,
      schedule='cosine', warmup_steps=500))
  config.loss = ml_collections.ConfigDict(dict(background_weight=0.1))
  config.log_every = 100
  config.eval_every = 2_000  # 0: at the end only
  config.checkpoint_every = 2_000
  config.keep_checkpoints = 3
  config.use_tensorboard = True

  if arg == 'tiny':
    config.dataset = 'synthetic_faces/tiny'
    config.num_eval_samples = 32  # synthetic_faces/tiny has 32 test faces
    config.model.update(autoencoder.TINY_MODEL, pncc_resolution=32)
    config.batch_size = 8
    config.num_train_steps = 40
    config.optimizer.update(dict(lr=3e-3, warmup_steps=0))
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 20
    config.use_tensorboard = False
  return config
