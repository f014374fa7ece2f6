r"""The whole paper in one command, on the embedded default.

  python launch/pipeline.py --config=configs/pipeline.py:tiny \
      --workdir=workdirs/tiny

On real photos (../shared/data; scored on AFLW2000-3D, --aflw2000_dir):

  python launch/pipeline.py --config=configs/real.py:tiny \
      --workdir=workdirs/real_tiny

Autoencoder -> PNCC_full / PNCC_few -> annotation -> MoFa, MoFaPNCC_few,
MoFaPNCC_full -> Table 1 (printed; <workdir>/report/table1.md, .json) and
Figure 3 (<workdir>/report/figure3.png). Re-running reuses finished stages
and resumes an interrupted one.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface import distributed
from pnccface.evaluation import paper

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/pipeline.py',
    'The pipeline config: keys and meaning in configs/pipeline.py (one '
    'sub-config per stage, see configs/<stage>.py); `:tiny` selects the tiny '
    'variant, --config.<key>=<value> overrides one key.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')
_AFLW2000_DIR = flags.DEFINE_string(
    'aflw2000_dir', None, 'AFLW2000-3D folder (.jpg/.mat) that scores a '
    'real-photo config (configs/real.py); default: its config.aflw2000_dir.')
_FORCE = flags.DEFINE_bool(
    'force', False, 'Go on in a workdir made with another config.')

distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize()
  logs.quiet_libraries()
  paper.run_paper(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value,
                  force=_FORCE.value, aflw2000_dir=_AFLW2000_DIR.value)


if __name__ == '__main__':
  app.run(main)
