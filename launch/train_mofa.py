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

from pnccface import distributed
from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/mofa.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints and logs.',
                               required=True)
_ANNOTATED_TRAIN = flags.DEFINE_string(
    'annotated_train', None, 'Annotated training set (launch/annotate.py).')
_ANNOTATED_EVAL = flags.DEFINE_string(
    'annotated_eval', None, 'Annotated evaluation set.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')

distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize()
  stages.run_mofa(_CONFIG.value, _WORKDIR.value,
                  annotated_train=_ANNOTATED_TRAIN.value,
                  annotated_eval=_ANNOTATED_EVAL.value,
                  data_dir=_DATA_DIR.value)


if __name__ == '__main__':
  app.run(main)
