r"""Stage 1: trains the PNCC predictor (ITLs + SCAF skips) from stage 0.

  python launch/train_pncc.py --config=configs/pncc_few.py:tiny \
      --config.init_from=workdirs/ae --workdir=workdirs/pncc_few
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/pncc_few.py',
    'The stage-1 config: keys and meaning in configs/pncc_few.py and '
    'configs/pncc_full.py; `:tiny` selects the tiny variant, '
    '--config.<key>=<value> overrides one key.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints and logs.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')
_FORCE = flags.DEFINE_bool(
    'force', False, 'Go on in a workdir made with another config.')


def main(argv):
  del argv
  logs.quiet_libraries()
  stages.run_pncc(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value,
                  force=_FORCE.value)


if __name__ == '__main__':
  app.run(main)
