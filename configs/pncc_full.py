"""Stage 1, PNCC_full: PNCC predictor on all of 300W-LP (122,450 samples).

`get_config()` is the paper setting at 3FabRec's sizes; `get_config('tiny')`
is a seconds-scale variant for tests (32x32 input, width 8).
Encoder/decoder come from the stage-0 workdir in `init_from`.
"""

import ml_collections


def model_config() -> ml_collections.ConfigDict:
  """The 3FabRec autoencoder sizes shared by stages 0 and 1."""
  return ml_collections.ConfigDict(dict(
      resolution=256,  # input size
      base_width=64,
      z_dim=99,
      encoder_blocks=2,  # ResNet-18: 2
      decoder_blocks=1,  # 3FabRec DECODER_PLANES_PER_BLOCK = 1
      pncc_resolution=128,  # LandmarkHeadV2: 128 for 256
      use_skips=True,  # SCAF
      freeze_encoder=True,
      freeze_decoder=True,
      from_scratch_decoder=False,  # ablation: needs freeze_decoder=False
  ))


# The autoencoder sizes of the tiny variants (stages 0 and 1).
TINY_MODEL = dict(resolution=32, base_width=8, z_dim=16, encoder_blocks=1,
                  pncc_resolution=32)


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
    config.model.update(TINY_MODEL)
    config.batch_size = 8
    config.num_train_steps = 40
    config.optimizer.update(dict(lr=3e-3, warmup_steps=0))
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 20
    config.use_tensorboard = False
  return config
