"""Stage 0: 3FabRec's unsupervised adversarial autoencoder.

3FabRec's schedule (README): epoch 1 reconstruction only (with_gan=False,
with_ssim=False), epoch 2 + image GAN, from epoch 3 + structural loss; the
latent (Gaussian) adversarial loss is on throughout. Here one config trains
with the switches below; run it in phases with `init`-resumes if wanted.
`get_config('tiny')`: 32x32 input, width 8, for tests.
"""

import ml_collections

from configs import pncc_full


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = 'synthetic_faces'  # 3FabRec: VGGFace2 + AffectNet
  config.train_split = 'train'
  config.eval_split = 'test'
  config.num_train_samples = -1
  config.num_eval_samples = 1000
  config.model = pncc_full.model_config()
  config.batch_size = 50  # 3FabRec default 50
  config.num_train_steps = 400_000
  config.optimizer = ml_collections.ConfigDict(dict(
      lr=2e-5, b1=0.0, b2=0.999,  # 3FabRec: Adam 2e-5, betas (0, 0.999)
      weight_decay=0.0, grad_clip=0.0, schedule='constant', warmup_steps=0,
      discriminator_lr_factor=0.5))  # 3FabRec: D at half the lr
  config.loss = ml_collections.ConfigDict(dict(
      w_rec=1.0,  # on L1 in 0..255 units, as 3FabRec
      with_ssim=True, w_ssim=60.0, ssim_window=31, ssim_sigma=1.5,
      with_zgan=True, w_enc=1.0,  # encoder's Gaussian-prior adversarial loss
      with_gan=True, w_gan=1.0,  # image adversarial loss
      disc_ndf=32, zdisc_hidden=1000))
  config.log_every = 100
  config.eval_every = 5_000
  config.checkpoint_every = 5_000
  config.keep_checkpoints = 3
  config.use_tensorboard = True

  if arg == 'tiny':
    config.dataset = 'synthetic_faces/tiny'
    config.num_eval_samples = 32  # synthetic_faces/tiny has 32 test faces
    config.model.update(pncc_full.TINY_MODEL)
    config.batch_size = 8
    config.num_train_steps = 40
    config.optimizer.lr = 1e-3
    config.loss.update(dict(with_gan=False, disc_ndf=8, zdisc_hidden=32))
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 20
    config.use_tensorboard = False
  return config
