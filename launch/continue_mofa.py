r"""Trains a finished MoFa / MoFaPNCC workdir for more steps, in a new one.

  python launch/continue_mofa.py --from_workdir=workdirs/real/mofa \
      --workdir=workdirs/real_more/mofa --num_train_steps=4000
  python launch/continue_mofa.py --from_workdir=workdirs/real/mofa_pncc_full \
      --workdir=workdirs/real_more/mofa_pncc_full --num_train_steps=4000 \
      --set=loss.w_landmark=300

The new run starts from the old one's weights with the old config on a
fresh schedule (`stages.continued_mofa_config`); `--set key=value` changes
one leaf. A MoFaPNCC workdir of a pipeline run reads the PNCCs its
pipeline annotated (`<pipeline workdir>/annotated_<full|few>/{train,eval}`)
unless --annotated_train / --annotated_eval say otherwise. Resumable, like
every stage.
"""

import pathlib

from absl import app
from absl import flags

from pnccface import logs  # first: quiets TensorFlow's C++ logs
from pnccface import distributed
from pnccface import stages

_FROM = flags.DEFINE_string('from_workdir', None,
                            'The finished MoFa workdir to go on from.',
                            required=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'The new workdir.',
                               required=True)
_STEPS = flags.DEFINE_integer('num_train_steps', None,
                              'Steps of the new run.', required=True)
_SET = flags.DEFINE_multi_string('set', [], 'key=value: a config leaf to '
                                 'change (dotted key), e.g. loss.w_landmark=300.')
_ANNOTATED_TRAIN = flags.DEFINE_string(
    'annotated_train', None, 'Annotated training set (default: the '
    "pipeline's, for a mofa_pncc_<predictor> folder).")
_ANNOTATED_EVAL = flags.DEFINE_string('annotated_eval', None,
                                      'Annotated evaluation set (as above).')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir.')

distributed.define_flags()


def _overrides(pairs):
  out = {}
  for pair in pairs:
    key, sep, value = pair.partition('=')
    if not sep or not key:
      raise app.UsageError(f'--set {pair!r}: expected key=value')
    out[key] = value
  return out


def main(argv):
  del argv
  distributed.initialize()
  logs.quiet_libraries()
  try:
    config = stages.continued_mofa_config(_FROM.value, _STEPS.value,
                                          _overrides(_SET.value))
  except (KeyError, ValueError) as e:  # a flag's mistake: say which, briefly
    raise app.UsageError(e.args[0]) from None
  source = pathlib.Path(_FROM.value)
  annotated = {'annotated_train': _ANNOTATED_TRAIN.value,
               'annotated_eval': _ANNOTATED_EVAL.value}
  if config.use_pncc and config.pncc_source == 'annotated':
    predictor = source.name.rpartition('_')[2]  # mofa_pncc_full -> full
    for flag, split in (('annotated_train', 'train'),
                        ('annotated_eval', 'eval')):
      if annotated[flag] is None:
        annotated[flag] = source.parent / f'annotated_{predictor}' / split
  stages.run_mofa(config, _WORKDIR.value, data_dir=_DATA_DIR.value,
                  **annotated)


if __name__ == '__main__':
  app.run(main)
