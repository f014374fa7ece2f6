r"""Stage-1 ablation: held-out PNCC error of PNCC_few / PNCC_full variants.

  python launch/pncc_ablation.py --config=configs/pipeline.py --workdir=workdirs/cpu

Variants: ITLs + SCAF skips on the frozen pre-trained decoder (the paper),
without the skips, and with a decoder trained from scratch. Reuses the
pipeline's autoencoder; prints and writes <workdir>/ablation/pncc_ablation.md.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface.evaluation import paper

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/pipeline.py',
    'The pipeline config: keys and meaning in configs/pipeline.py; `:tiny` '
    'selects the tiny variant, --config.<key>=<value> overrides one key.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'A pipeline workdir.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')
_FORCE = flags.DEFINE_bool(
    'force', False, 'Go on in a workdir made with another config.')


def main(argv):
  del argv
  logs.quiet_libraries()
  paper.run_pncc_ablation(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value,
                           force=_FORCE.value)


if __name__ == '__main__':
  app.run(main)
