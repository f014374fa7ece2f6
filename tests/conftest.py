"""Shared test fixtures: the location of ../shared/data, skipping when absent."""

import os
import pathlib

import pytest

SHARED_DATA = pathlib.Path(
    os.environ.get('PNCCFACE_SHARED_DATA',
                   pathlib.Path(__file__).resolve().parents[1].parent /
                   'shared' / 'data'))


@pytest.fixture
def shared_data() -> pathlib.Path:
  """../shared/data (or $PNCCFACE_SHARED_DATA); skips the test when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'shared data not found at {SHARED_DATA}')
  return SHARED_DATA
