r"""Stage 0: pre-trains the 3FabRec-style face autoencoder.

  python launch/train_autoencoder.py --config=configs/autoencoder.py:tiny \
      --workdir=workdirs/ae
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/autoencoder.py',
    'The stage-0 config: keys and meaning in configs/autoencoder.py; '
    '`:tiny` selects the tiny variant, --config.<key>=<value> overrides one '
    'key.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints and logs.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')
_FORCE = flags.DEFINE_bool(
    'force', False, 'Go on in a workdir made with another config.')


def main(argv):
  del argv
  logs.quiet_libraries()
  stages.run_autoencoder(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value,
                         force=_FORCE.value)


if __name__ == '__main__':
  app.run(main)
