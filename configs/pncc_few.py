"""Stage 1, PNCC_few: PNCC predictor on only 50 annotated samples.

Same model as pncc_full; the few-shot subset is `num_train_samples` samples
(drawn deterministically from the seed) repeated for `num_train_steps`
updates. `get_config('tiny')` for tests.
"""

from configs import pncc_full


def get_config(arg=None):
  config = pncc_full.get_config(arg)
  config.num_train_samples = 50
  config.batch_size = 10  # 50 samples = 5 batches per epoch
  config.num_train_steps = 5_000
  config.optimizer.update(dict(lr=1e-3, warmup_steps=100))
  config.eval_every = 500
  config.checkpoint_every = 500

  if arg == 'tiny':
    config.num_train_steps = 60
    config.optimizer.update(dict(lr=3e-3, warmup_steps=0))
    config.eval_every = 0
    config.checkpoint_every = 20
  return config
