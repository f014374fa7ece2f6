"""Stage 1, PNCC_few: PNCC predictor on only 50 annotated samples.

Same model as pncc_full; the few-shot subset is `num_train_samples` samples
(the lead's pipeline picks them deterministically from the seed) repeated
for `num_train_steps` updates. `get_config('tiny')` for tests.
"""

import ml_collections

from pnccface import configs_lib


def get_config(arg=None):
  tiny = arg == 'tiny'
  config = configs_lib.sibling(__file__, 'pncc_full').get_config(arg)
  config.num_train_samples = 50
  config.batch_size = 10  # 50 samples = 5 batches per epoch
  config.num_train_steps = 60 if tiny else 5_000
  config.optimizer = ml_collections.ConfigDict(dict(
      lr=3e-3 if tiny else 1e-3, b1=0.9, b2=0.999, weight_decay=0.0,
      grad_clip=0.0, schedule='cosine', warmup_steps=0 if tiny else 100))
  config.eval_every = 0 if tiny else 500
  config.checkpoint_every = 20 if tiny else 500
  return config
