r"""Imports 3FabRec's released autoencoder as a stage-0 workdir (needs torch).

  pip install -e '.[convert]'
  python launch/import_3fabrec.py --snapshot=lms_wflw/00150/saae.mdl \
      --workdir=workdirs/3fabrec
  python launch/train_pncc.py --config=configs/pncc_few.py \
      --config.init_from=workdirs/3fabrec \
      --config.model.input_normalization=3fabrec --workdir=workdirs/pncc_few

The snapshot comes from 3FabRec's README (`download_models.sh`); nothing is
downloaded here. See `pnccface.models.import_3fabrec`.
"""

from absl import app
from absl import flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface.models import import_3fabrec

_SNAPSHOT = flags.DEFINE_string(
    'snapshot', None, "3FabRec's .mdl snapshot (torch pickle with Q.*/P.*).",
    required=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Stage-0 workdir to write.',
                               required=True)
_RESOLUTION = flags.DEFINE_enum('resolution', '256', ['128', '256'],
                                "The snapshot's input size.")


def main(argv):
  del argv
  logs.quiet_libraries()
  workdir = import_3fabrec.import_snapshot(_SNAPSHOT.value, _WORKDIR.value,
                                           int(_RESOLUTION.value))
  print(f'wrote {workdir}; train stage 1 with --config.init_from={workdir} '
        '--config.model.input_normalization=3fabrec')


if __name__ == '__main__':
  app.run(main)
