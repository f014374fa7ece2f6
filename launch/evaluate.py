r"""Prints Table 1 (methods x metrics) of a pipeline workdir and writes it.

  python launch/evaluate.py --workdir=workdirs/tiny

Each stage is rebuilt from the config.json its workdir was trained with.
Writes <workdir>/report/table1.md, table1.json and figure3.png; with
--aflw2000_dir (and --ddfa_dir for reference rows) also the sparse
68-landmark NME on AFLW2000-3D by yaw bin (aflw2000_3d_landmarks.md).
"""

from absl import app
from absl import flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface.evaluation import paper

_WORKDIR = flags.DEFINE_string('workdir', None, 'A launch/pipeline.py workdir.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')
_AFLW_DIR = flags.DEFINE_string(
    'aflw2000_dir', None, 'AFLW2000-3D folder (imageNNNNN.jpg/.mat, or an '
    'AFLW2000/ folder of them): adds the sparse 68-landmark NME table.')
_DDFA_DIR = flags.DEFINE_string(
    'ddfa_dir', None, "3DDFA's sparse basis files, for the reference rows.")


def main(argv):
  del argv
  logs.quiet_libraries()
  paper.evaluate_paper(_WORKDIR.value, _DATA_DIR.value)
  if _AFLW_DIR.value:
    paper.evaluate_aflw_landmarks(_WORKDIR.value, _AFLW_DIR.value,
                                   _DDFA_DIR.value)


if __name__ == '__main__':
  app.run(main)
