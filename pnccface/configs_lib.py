"""Loading ml_collections config files by path (the files in configs/).

`load('configs/pncc_few.py:tiny')` does what `config_flags` does with
`--config=configs/pncc_few.py:tiny`, for notebooks and tests.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import ml_collections


def load_module(path):
  """Imports the Python file at `path` as a fresh module."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'config file not found: {path}')
  spec = importlib.util.spec_from_file_location(
      f'pnccface_config_{path.stem}', os.fspath(path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(spec: str) -> ml_collections.ConfigDict:
  """'configs/pncc_few.py:tiny' -> `get_config('tiny')` of that file."""
  path, _, arg = spec.partition(':')
  return load_module(path).get_config(arg or None)
