"""Stage 2, MoFa: the self-supervised model-based face autoencoder (RGB input).

`get_config()` is the paper-scale setting (MoFa's AlexNet encoder on 240x240
crops, trained on CelebA in the paper; the embedded synthetic dataset by
default here); `get_config('tiny')` is a seconds-scale variant for tests
(64x64, a tiny AlexNet-style encoder, a few hundred steps).
"""

import math

import ml_collections


def model_config() -> ml_collections.ConfigDict:
  """`pnccface.models.mofa.MoFaEncoder`'s fields but the coefficient counts,
  which come from the face model (`config.face_model_components`)."""
  return ml_collections.ConfigDict(dict(
      backbone='alexnet',  # or 'resnet', with ResNetFeatures' backbone_kwargs
      backbone_kwargs=dict(  # MoFa's AlexNet (AlexNetFeatures' fields)
          conv_features=(96, 256, 384, 384, 256),
          kernel_sizes=(11, 5, 3, 3, 3),
          strides=(4, 1, 1, 1, 1),
          pool_after=(0, 1, 4),
          dense_features=(4096, 4096)),
      norm='none',  # 'batch' | 'group' | 'none' (AlexNet: none)
      max_angle=math.pi / 2,  # radians; Euler angles = max * tanh(raw)
      initial_irradiance=1.0,  # ambient light of the initial prediction
      head_init_scale=1e-3,  # initial prediction ~ mean frontal face
      # Compute dtype of the trunk: 'float32' or 'bfloat16'; params,
      # normalisation statistics, the code layer, decode, renderer and
      # losses stay float32.
      dtype='float32',
  ))


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.face_model = 'default'  # ICT-FaceKit; 'procedural'; a BFM/3DDFA path
  config.dataset = 'synthetic_faces'  # paper: 'celeb_a' (+ PNCC annotations)
  config.train_split = 'train'
  config.eval_dataset = 'synthetic_faces'  # Table 1: 'aflw2000_3d'
  config.eval_split = 'test'
  config.num_train_samples = -1  # -1: all
  config.num_eval_samples = 1000
  config.image_size = 240  # MoFa: 240x240 crops
  config.use_pncc = False
  config.pncc_source = 'none'  # MoFa reads no PNCC
  config.model = model_config()
  # MoFa keeps 80 shape / 64 expression / 80 reflectance components; 3DDFA's
  # expression basis has 29, all kept (-1 = all; truncate_face_model's args).
  config.face_model_components = ml_collections.ConfigDict(dict(
      num_shape=80, num_expression=-1, num_albedo=80))
  config.face_fraction = 0.525  # default scale: landmark box / image height
  config.init_from = ''  # a MoFa workdir to start from ('' = random)
  config.batch_size = 32  # global, over all devices
  config.num_train_steps = 200_000
  config.optimizer = ml_collections.ConfigDict(dict(
      lr=1e-4, b1=0.9, b2=0.999, weight_decay=0.0,
      grad_clip=1.0, schedule='cosine', warmup_steps=1_000))
  # Weights on our normalised terms: MoFa's published ones do not transfer
  # (pnccface/train/mofa.py, `mofa_loss`, says why).
  config.loss = ml_collections.ConfigDict(dict(
      photo_norm='l21',  # MoFa's l2,1: RGB distance; 'l2': its square
      photo_domain='pixel',  # 'vertex': at projected visible vertices (MoFa)
      w_photo=1.0,
      w_landmark=30.0,  # on (pixel error / image size)^2
      w_shape=1e-4,  # on sum of squared standardised coefficients
      w_expression=8e-5,  # MoFa's 0.8 x the shape prior weight
      w_albedo=1.7e-7,  # MoFa's 1.7e-3 x the shape prior weight
  ))
  config.log_every = 100
  config.eval_every = 5_000  # 0: at the end only
  config.checkpoint_every = 5_000
  config.keep_checkpoints = 3
  config.use_tensorboard = True

  if arg == 'tiny':
    config.dataset = 'synthetic_faces/tiny'
    config.num_eval_samples = 32  # synthetic_faces/tiny has 32 test faces
    config.image_size = 64
    config.model.backbone_kwargs.update(dict(
        conv_features=(16, 32, 32, 32, 32), kernel_sizes=(5, 3, 3, 3, 3),
        strides=(2, 1, 1, 1, 1), dense_features=(128,)))
    config.batch_size = 8
    config.num_train_steps = 300
    config.optimizer.update(dict(lr=1e-3, warmup_steps=0))
    config.log_every = 25
    config.eval_every = 0
    config.checkpoint_every = 100
    config.use_tensorboard = False
  return config
