"""Stage 1, PNCC_few: PNCC predictor on only 50 annotated samples.

Same model as pncc_full; the few-shot subset is `num_train_samples` samples
(the lead's pipeline picks them deterministically from the seed) repeated
for `num_train_steps` updates. `get_config('tiny')` for tests.
"""

import importlib.util
import os

import ml_collections


def _sibling(name):
  # Config files are loaded by path (ml_collections config_flags), not as a
  # package, so siblings are loaded by path too.
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + '.py')
  spec = importlib.util.spec_from_file_location(f'pnccface_configs_{name}',
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  tiny = arg == 'tiny'
  config = _sibling('pncc_full').get_config(arg)
  config.num_train_samples = 50
  config.batch_size = 10  # 50 samples = 5 batches per epoch
  config.num_train_steps = 60 if tiny else 5_000
  config.optimizer = ml_collections.ConfigDict(dict(
      lr=3e-3 if tiny else 1e-3, b1=0.9, b2=0.999, weight_decay=0.0,
      grad_clip=0.0, schedule='cosine', warmup_steps=0 if tiny else 100))
  config.eval_every = 0 if tiny else 500
  config.checkpoint_every = 20 if tiny else 500
  return config
