r"""Stage-1 ablation: held-out PNCC error of PNCC_few / PNCC_full variants.

  python launch/pncc_ablation.py --config=configs/pipeline.py --workdir=workdirs/cpu

Variants: ITLs + SCAF skips on the frozen pre-trained decoder (the paper),
without the skips, and with a decoder trained from scratch. Reuses the
pipeline's autoencoder; prints and writes <workdir>/ablation/pncc_ablation.md.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import distributed
from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/pipeline.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A pipeline workdir.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')

distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize()
  stages.run_pncc_ablation(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value)


if __name__ == '__main__':
  app.run(main)
