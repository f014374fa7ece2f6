r"""Stage 1: trains the PNCC predictor (ITLs + SCAF skips) from stage 0.

  python launch/train_pncc.py --config=configs/pncc_few.py:tiny \
      --config.init_from=workdirs/autoencoder --workdir=workdirs/pncc_few
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import distributed
from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/pncc_few.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints and logs.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')

distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize()
  stages.run_pncc(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value)


if __name__ == '__main__':
  app.run(main)
