r"""Annotates a face dataset with the PNCCs of a stage-1 predictor.

  python launch/annotate.py --pncc_workdir=workdirs/pncc_few \
      --dataset=synthetic_faces/tiny --split=train --image_size=64 \
      --output=workdirs/annotated_few/train

Resumable: re-running keeps the finished shards and goes on.
"""

from absl import app
from absl import flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface import distributed
from pnccface import stages
from pnccface import workdirs

_PNCC_WORKDIR = flags.DEFINE_string(
    'pncc_workdir', None, 'Stage-1 workdir (its config.json names the model).',
    required=True)
_DATASET = flags.DEFINE_string('dataset', 'synthetic_faces', 'TFDS name.')
_SPLIT = flags.DEFINE_string('split', 'train', 'TFDS split.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 240,
                                   'Stored image side (stage 2 input).')
_OUTPUT = flags.DEFINE_string('output', None, 'Output folder.', required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')
_MANUAL_DIR = flags.DEFINE_string(
    'manual_dir', None, 'Folder of a release dataset (celeb_a, the300w_lp) '
    'or of face photos.')

distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize()
  logs.quiet_libraries()
  count = stages.annotate(workdirs.load_config(_PNCC_WORKDIR.value),
                          _PNCC_WORKDIR.value, _DATASET.value, _SPLIT.value,
                          _IMAGE_SIZE.value, _OUTPUT.value, _DATA_DIR.value,
                          _MANUAL_DIR.value)
  print(f'{count} examples in {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
