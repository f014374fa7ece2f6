r"""Stage 0: pre-trains the 3FabRec-style face autoencoder.

  python launch/train_autoencoder.py --config=configs/autoencoder.py:tiny \
      --workdir=workdirs/autoencoder
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import distributed
from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/autoencoder.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints and logs.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')

distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize()
  stages.run_autoencoder(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value)


if __name__ == '__main__':
  app.run(main)
