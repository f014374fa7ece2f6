"""pnccface.logs: which records the launch scripts show by default."""

import logging

import tensorflow_datasets as tfds

from pnccface import logs


def _record(level, msg, pathname, *args):
  return logging.LogRecord('absl', level, pathname, 1, msg, args, None)


def test_default_filter_hides_library_info_and_tfds_custom_config_warning():
  keep = logs._OwnInfoOnly().filter  # pylint: disable=protected-access
  library = tfds.core.dataset_builder.__file__
  assert keep(_record(logging.INFO, 'autoencoder: done', logs.__file__))
  assert not keep(_record(logging.INFO, 'Reusing dataset', library))
  assert keep(_record(logging.WARNING, 'skipped 1 unreadable', library))
  assert not keep(_record(logging.WARNING,
                          'Using custom data configuration: %s', library,
                          'FacePhotosConfig(name=faces68_first64)'))
