"""How the fixtures here were made: the config.json files that a pipeline
workdir made by commit 4d7e273 holds, written without training by the
`workdirs.write_config` calls that 4d7e273's `paper.run_paper` and
`stages.train_paper` make (pipeline, autoencoder, pncc_full / pncc_few with
their absolute `init_from`, mofa, mofa_pncc_few; mofa_pncc_full's equals
mofa_pncc_few's), for configs/real.py and configs/pipeline.py:tiny, with
the pipeline workdir at /old/workdirs/<name>.

    git worktree add /tmp/old 4d7e273
    cp tests/data/configs_4d7e273/make_fixtures.py /tmp/old && cd /tmp/old
    PYTHONPATH=$PWD python make_fixtures.py OUT
    # then OUT/<name>/<stage>/config.json -> <name>/<stage>.json

real/pipeline.json and real/autoencoder.json are byte for byte the files of
the real-photo run started at 4d7e273 (workdirs/real/config.json and
workdirs/real/autoencoder/config.json).
"""
import os
import pathlib
import sys

from pnccface import configs_lib
from pnccface import workdirs

out = pathlib.Path(sys.argv[1])
for spec, name in (('configs/real.py', 'real'),
                   ('configs/pipeline.py:tiny', 'tiny')):
  config = configs_lib.load(spec)
  workdir = pathlib.Path('/old/workdirs') / name  # train_paper: absolute
  folder = out / name
  workdirs.write_config(config, folder / 'pipeline')
  workdirs.write_config(config.autoencoder, folder / 'autoencoder')
  for variant in ('full', 'few'):
    pncc = config[f'pncc_{variant}'].copy_and_resolve_references()
    pncc.init_from = os.fspath(workdir / 'autoencoder')
    workdirs.write_config(pncc, folder / f'pncc_{variant}')
  workdirs.write_config(config.mofa, folder / 'mofa')
  workdirs.write_config(config.mofa_pncc, folder / 'mofa_pncc_few')
