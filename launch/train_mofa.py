r"""Stage 2: trains MoFa (RGB) or MoFaPNCC (RGB + PNCC).

  python launch/train_mofa.py --config=configs/mofa.py:tiny --workdir=workdirs/mofa
  python launch/train_mofa.py --config=configs/mofa_pncc.py:tiny \
      --workdir=workdirs/mofa_pncc_gt                # ground-truth PNCC
  python launch/train_mofa.py --config=configs/mofa_pncc.py:tiny \
      --config.pncc_source=annotated --annotated_train=workdirs/annotated_few/train \
      --annotated_eval=workdirs/annotated_few/eval --workdir=workdirs/mofa_pncc_few
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/mofa.py',
    'The stage-2 config: keys and meaning in configs/mofa.py and '
    'configs/mofa_pncc.py; `:tiny` selects the tiny variant, '
    '--config.<key>=<value> overrides one key.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints and logs.',
                               required=True)
_ANNOTATED_TRAIN = flags.DEFINE_string(
    'annotated_train', None, 'Annotated training set (launch/annotate.py).')
_ANNOTATED_EVAL = flags.DEFINE_string(
    'annotated_eval', None, 'Annotated evaluation set.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')
_FORCE = flags.DEFINE_bool(
    'force', False, 'Go on in a workdir made with another config.')


def main(argv):
  del argv
  logs.quiet_libraries()
  stages.run_mofa(_CONFIG.value, _WORKDIR.value,
                  annotated_train=_ANNOTATED_TRAIN.value,
                  annotated_eval=_ANNOTATED_EVAL.value,
                  data_dir=_DATA_DIR.value, force=_FORCE.value)


if __name__ == '__main__':
  app.run(main)
