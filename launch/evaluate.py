r"""Prints Table 1 (methods x metrics) of a pipeline workdir and writes it.

  python launch/evaluate.py --config=configs/pipeline.py:tiny \
      --workdir=workdirs/tiny

Writes <workdir>/report/table1.md, table1.json and figure3.png; with
--aflw2000_dir (and --ddfa_dir for reference rows) also the sparse
68-landmark NME on AFLW2000-3D by yaw bin (aflw2000_3d_landmarks.md).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import distributed
from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/pipeline.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A launch/pipeline.py workdir.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')
_AFLW_DIR = flags.DEFINE_string(
    'aflw2000_dir', None, 'AFLW2000-3D folder (imageNNNNN.jpg/.mat): adds '
    'the sparse 68-landmark NME table.')
_DDFA_DIR = flags.DEFINE_string(
    'ddfa_dir', None, "3DDFA's sparse basis files, for the reference rows.")

distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize()
  stages.evaluate_paper(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value)
  if _AFLW_DIR.value:
    stages.evaluate_aflw_landmarks(_CONFIG.value, _WORKDIR.value,
                                   _AFLW_DIR.value, _DDFA_DIR.value)


if __name__ == '__main__':
  app.run(main)
