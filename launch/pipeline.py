r"""The whole paper in one command, on the embedded default.

  python launch/pipeline.py --config=configs/pipeline.py:tiny \
      --workdir=workdirs/tiny

Autoencoder -> PNCC_full / PNCC_few -> annotation -> MoFa, MoFaPNCC_few,
MoFaPNCC_full -> Table 1 (printed; <workdir>/report/table1.md, .json) and
Figure 3 (<workdir>/report/figure3.png). Re-running reuses finished stages
and resumes an interrupted one.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import distributed
from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/pipeline.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')

distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize()
  stages.run_paper(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value)


if __name__ == '__main__':
  app.run(main)
