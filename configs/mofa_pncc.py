"""Stage 2, MoFaPNCC: MoFa with the PNCC image stacked on its RGB input.

Same as configs/mofa.py with `use_pncc=True` (a 6-channel encoder input).
`pncc_source` says where the PNCC comes from: 'ground_truth' (the dataset's
own, e.g. synthetic faces or 300W-LP) or 'annotated' (a dataset annotated by
a stage-1 predictor, whose workdir `pncc_predictor` names). Variants:
'tiny' for tests; 'few' / 'full' for the paper's MoFaPNCC_few / _full.
"""

from configs import mofa


def get_config(arg=None):
  config = mofa.get_config(arg)
  config.use_pncc = True
  config.pncc_source = 'ground_truth'
  config.pncc_predictor = ''

  if arg in ('few', 'full'):
    config.dataset = 'celeb_a'
    config.pncc_source = 'annotated'
    config.pncc_predictor = f'pncc_{arg}'  # the stage-1 workdir
  return config
