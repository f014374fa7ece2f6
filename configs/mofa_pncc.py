"""Stage 2, MoFaPNCC: MoFa with the PNCC stacked on the RGB input (6 channels).

Everything as configs/mofa.py except `use_pncc` and where the PNCC comes
from (`pncc_source`): 'ground_truth' (the dataset's own PNCC, e.g. the
synthetic faces or 300W-LP) or 'annotated' (a dataset annotated by a
stage-1 predictor; `pncc_predictor` names its workdir: PNCC_full or
PNCC_few for the paper's MoFaPNCC_full / MoFaPNCC_few). The lead's data
wiring reads these fields; the train step only reads batch['pncc'].
`get_config('tiny')` for tests; `get_config('few')` / `get_config('full')`
name the paper's two variants.
"""

from pnccface import configs_lib


def get_config(arg=None):
  tiny = arg == 'tiny'
  config = configs_lib.sibling(__file__, 'mofa').get_config('tiny' if tiny else None)
  config.use_pncc = True
  if arg in ('few', 'full'):
    config.dataset = 'celeb_a'
    config.pncc_source = 'annotated'
    config.pncc_predictor = f'pncc_{arg}'  # stage-1 workdir (lead's layout)
  else:
    config.pncc_source = 'ground_truth'
    config.pncc_predictor = ''
  return config
