"""Quiet logs for the launch scripts: our INFO lines, others' warnings.

At absl's default verbosity (0) the launch scripts show this package's INFO
lines (one per stage start and end, the progress and eval lines) and every
library's warnings and errors; orbax's, TFDS's and JAX's INFO records (about
half of a run's lines) show only with `--verbosity=1`.

Import this module before TensorFlow loads (first in a launch script): it
also hides most of TensorFlow's C++ INFO lines (read from the environment
once, at load time; the "oneDNN custom operations" notice shows regardless).
"""

from __future__ import annotations

import logging as std_logging
import os

from absl import logging

# TensorFlow's C++ INFO lines ("This TensorFlow binary is optimized ...").
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# TFDS warns whenever a builder gets a config object it did not register;
# ours derive such configs on purpose (`face_photos.first_images_config`,
# fitted_faces' source photos), once per dataset load.
_EXPECTED_WARNINGS = ('Using custom data configuration',)


class _OwnInfoOnly(std_logging.Filter):
  """Passes warnings and errors (but `_EXPECTED_WARNINGS`), and INFO records
  logged from pnccface."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if str(record.msg).startswith(_EXPECTED_WARNINGS):
      return False
    return (record.levelno >= std_logging.WARNING or
            os.path.abspath(record.pathname).startswith(_PACKAGE_DIR))


class _ShortFormatter(std_logging.Formatter):
  """'HH:MM:SS message', with the level name for warnings and errors."""

  def format(self, record: std_logging.LogRecord) -> str:
    line = f'{self.formatTime(record, "%H:%M:%S")} '
    if record.levelno >= std_logging.WARNING:
      line += f'{record.levelname} '
    return line + record.getMessage()


def quiet_libraries() -> None:
  """Call in `main` (after flags are parsed): unless `--verbosity >= 1`,
  keeps only our INFO lines, in a short format, and TFDS's progress bars
  off."""
  if logging.get_verbosity() >= 1:
    return
  handler = logging.get_absl_handler()
  handler.addFilter(_OwnInfoOnly())
  handler.setFormatter(_ShortFormatter())
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
