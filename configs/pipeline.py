"""The whole paper on the embedded default, from nothing to Table 1.

`get_config()` is the CPU-sized run: every stage at reduced resolution and
length on synthetic_faces/small, so that the whole pipeline runs on a laptop
or a 2-core CI machine; `get_config('tiny')` is the minutes-scale smoke run
(CI). The stage configs are those of configs/*.py with the overrides below;
`launch/pipeline.py --config=configs/pipeline.py:tiny --workdir=...`.
"""

import ml_collections

from pnccface import configs_lib


def _stage(name, arg):
  return configs_lib.sibling(__file__, name).get_config(arg)


def get_config(arg=None):
  tiny = arg == 'tiny'
  variant = 'tiny' if tiny else None
  dataset = 'synthetic_faces/tiny' if tiny else 'synthetic_faces/small'
  config = ml_collections.ConfigDict()
  config.autoencoder = _stage('autoencoder', variant)
  config.pncc_full = _stage('pncc_full', variant)
  config.pncc_few = _stage('pncc_few', variant)
  config.mofa = _stage('mofa', variant)
  config.mofa_pncc = _stage('mofa_pncc', variant)
  config.mofa_pncc.pncc_source = 'annotated'
  for stage in (config.autoencoder, config.pncc_full, config.pncc_few,
                config.mofa, config.mofa_pncc):
    stage.dataset = dataset
    stage.eval_split = 'test'
  return config
