r"""Re-evaluates a finished pipeline workdir (no training) and prints it.

  python launch/evaluate.py --workdir=workdirs/tiny
  python launch/evaluate.py --workdir=workdirs/real_tiny   # configs/real.py

Each stage is rebuilt from the config.json its workdir was trained with.
Synthetic runs: <workdir>/report/table1.md, table1.json and figure3.png;
with --aflw2000_dir (and --ddfa_dir for reference rows) also the sparse
68-landmark NME on AFLW2000-3D by yaw bin (aflw2000_3d_landmarks.md).
Real-photo runs (configs/real.py): the AFLW2000-3D table
(aflw2000_3d_landmarks.md, .json) and Figure 3 on its photos
(figure3_aflw2000_3d.png, .md), from the folders of the run's config
(relative to the working directory) unless --aflw2000_dir / --ddfa_dir say
otherwise.
"""

from absl import app
from absl import flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface import distributed
from pnccface.evaluation import paper

_WORKDIR = flags.DEFINE_string('workdir', None, 'A launch/pipeline.py workdir.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')
_AFLW_DIR = flags.DEFINE_string(
    'aflw2000_dir', None, 'AFLW2000-3D folder (imageNNNNN.jpg/.mat, or an '
    'AFLW2000/ folder of them): adds the sparse 68-landmark NME table; '
    "for a real-photo run, replaces its config's aflw2000_dir.")
_DDFA_DIR = flags.DEFINE_string(
    'ddfa_dir', None, "3DDFA's sparse basis files, for the reference rows "
    "(a real-photo run: default its config's ddfa_dir).")

distributed.define_flags()


def main(argv):
  del argv
  distributed.initialize()
  logs.quiet_libraries()
  paper.evaluate_workdir(_WORKDIR.value, _DATA_DIR.value, _AFLW_DIR.value,
                         _DDFA_DIR.value)


if __name__ == '__main__':
  app.run(main)
