r"""Prints Table 1 (methods x metrics) of a pipeline workdir and writes it.

  python launch/evaluate.py --config=configs/pipeline.py:tiny \
      --workdir=workdirs/tiny

Writes <workdir>/report/table1.md, table1.json and figure3.png.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from pnccface import stages

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/pipeline.py')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A launch/pipeline.py workdir.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')


def main(argv):
  del argv
  stages.evaluate_paper(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value)


if __name__ == '__main__':
  app.run(main)
