"""Stage 0: 3FabRec's unsupervised adversarial autoencoder.

3FabRec's schedule (README): epoch 1 reconstruction only (with_gan=False,
with_ssim=False), epoch 2 + image GAN, from epoch 3 + structural loss; the
latent (Gaussian) adversarial loss is on throughout. `gan_start_step` and
`ssim_start_step` put those phases in one run (one 3FabRec epoch = 2.14M
VGGFace2 + AffectNet images / batch 50 = 42,836 steps). Adam lr 2e-5, betas
(0, 0.999); the image discriminator at half the lr, the latent one at the
full lr; D_z every 4th, the encoder's prior loss and D every 2nd step.
Our earlier variant: structural='ssim', *_every=1, *_start_step=0,
zdisc_lr_factor=0.5, augment.enabled=False.
`get_config('tiny')`: 32x32 input, width 8, for tests.
"""

import ml_collections


def model_config() -> ml_collections.ConfigDict:
  """`pnccface.models.autoencoder.Autoencoder`'s fields at 3FabRec's sizes
  (stage 1's `PNCCPredictor` re-uses them, configs/pncc_full.py)."""
  return ml_collections.ConfigDict(dict(
      resolution=256,  # input size
      base_width=64,
      z_dim=99,
      encoder_blocks=2,  # ResNet-18: 2
      decoder_blocks=1,  # 3FabRec DECODER_PLANES_PER_BLOCK = 1
      # '3fabrec' (image - VGGFace2 mean) for weights from import_3fabrec.py
      input_normalization='symmetric',
      # Compute dtype of the nets (and the discriminators): 'float32' or
      # 'bfloat16'; params, batch-norm statistics and losses stay float32.
      dtype='float32',
  ))


# The autoencoder sizes of the tiny variants (stages 0 and 1).
TINY_MODEL = dict(resolution=32, base_width=8, z_dim=16, encoder_blocks=1)


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = 'synthetic_faces'  # 3FabRec: VGGFace2 + AffectNet
  config.train_split = 'train'
  config.eval_split = 'test'
  config.num_train_samples = -1
  config.num_eval_samples = 1000
  config.model = model_config()
  config.batch_size = 50  # 3FabRec default 50
  config.num_train_steps = 400_000
  config.optimizer = ml_collections.ConfigDict(dict(
      lr=2e-5, b1=0.0, b2=0.999,  # 3FabRec: Adam 2e-5, betas (0, 0.999)
      weight_decay=0.0, grad_clip=0.0, schedule='constant', warmup_steps=0,
      discriminator_lr_factor=0.5,  # 3FabRec: D at half the lr
      zdisc_lr_factor=1.0))  # 3FabRec: D_z at the full lr
  config.loss = ml_collections.ConfigDict(dict(
      w_rec=1.0,  # on L1 in 0..255 units, as 3FabRec
      with_ssim=True, w_ssim=60.0, ssim_window=31, ssim_sigma=1.5,
      structural='cs', ssim_max_value=1.0,  # 3FabRec: 1 - cs, valid window
      with_zgan=True, w_enc=1.0,  # encoder's Gaussian-prior adversarial loss
      with_gan=True, w_gan=1.0,  # image adversarial loss
      # 3FabRec: D_z every 4th step, encoder prior and D every 2nd.
      zdisc_every=4, enc_prior_every=2, disc_every=2, gen_every=1,
      gan_start_step=42_836, ssim_start_step=85_672,  # 3FabRec epochs 2, 3
      disc_ndf=32, zdisc_hidden=1000))
  # 3FabRec --daug 4: flips and RandomAffine(45, translate 3.5%, scale
  # 0.94-1.03); no colour jitter (pnccface.data.augment's fields).
  config.augment = ml_collections.ConfigDict(dict(
      enabled=True, flip=0.5, rotate_degrees=45.0, translate=0.035,
      scale=0.03, brightness=0.0, contrast=0.0, saturation=0.0))
  config.log_every = 100
  config.eval_every = 5_000
  config.checkpoint_every = 5_000
  config.keep_checkpoints = 3
  config.use_tensorboard = True

  if arg == 'tiny':
    config.dataset = 'synthetic_faces/tiny'
    config.num_eval_samples = 32  # synthetic_faces/tiny has 32 test faces
    config.model.update(TINY_MODEL)
    config.batch_size = 8
    config.num_train_steps = 40
    config.optimizer.lr = 1e-3
    config.loss.update(dict(with_gan=False, disc_ndf=8, zdisc_hidden=32,
                            gan_start_step=0, ssim_start_step=0))
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 20
    config.use_tensorboard = False
  return config
