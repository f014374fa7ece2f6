"""A workdir's `config.json`: written once, checked on every later run.

A workdir is one stage's output folder (or a pipeline's, holding one folder
per stage). `config.json` is what `pnccface.api` rebuilds the stage from, so
it is written only for a fresh workdir, and a later run with another config
is refused before anything in the folder changes.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from absl import logging
import ml_collections

from pnccface import distributed

CONFIG_FILE = 'config.json'
STAGES = ('autoencoder', 'pncc', 'mofa', 'pipeline')


class ConfigMismatchError(ValueError):
  """A run's config differs from the one its workdir was made with."""


def as_json_dict(config) -> dict[str, Any]:
  """The config as the JSON-compatible dict `config.json` holds (tuples
  become lists, so a saved config compares equal to the one it came from)."""
  return json.loads(config.to_json_best_effort())


def load_config(workdir) -> ml_collections.ConfigDict:
  """The config a workdir was made with (`<workdir>/config.json`)."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(
        f'{path} not found: {workdir} is not a workdir written by '
        'pnccface.stages / launch/*.py')
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON ({e})') from None


def stage_of(config) -> str:
  """Which stage a config trains: one of STAGES, from the keys it has."""
  if 'mofa' in config and 'autoencoder' in config:
    return 'pipeline'
  if 'use_pncc' in config:
    return 'mofa'
  loss = config.get('loss') or {}
  if 'background_weight' in loss:
    return 'pncc'
  if 'w_rec' in loss:
    return 'autoencoder'
  raise ValueError(f'cannot tell the stage of a config with keys '
                   f'{sorted(config)}')


def config_diff(old: Any, new: Any, prefix: str = '') -> list[str]:
  """'key: old -> new' for each leaf that differs (dotted keys)."""
  if isinstance(old, dict) and isinstance(new, dict):
    lines = []
    for key in sorted(set(old) | set(new)):
      name = f'{prefix}{key}'
      if key not in old:
        lines.append(f'{name}: (absent) -> {new[key]!r}')
      elif key not in new:
        lines.append(f'{name}: {old[key]!r} -> (absent)')
      else:
        lines += config_diff(old[key], new[key], name + '.')
    return lines
  return [] if old == new else [f'{prefix.rstrip(".")}: {old!r} -> {new!r}']


def claim(config, workdir, force: bool = False) -> bool:
  """Checks `config` against `workdir` before a run writes anything there.

  A fresh workdir gets `config.json` now. An existing one with the same
  config is reused (resume / nothing to do). Another config is refused with
  a ConfigMismatchError listing the keys that differ; with `force` the run
  goes on and the caller writes the new `config.json` (`write_config`) only
  after the stage has finished, so a failing forced run leaves the workdir
  loadable with its old config.

  Several processes: process 0 claims first (and alone writes), the others
  then check against what it wrote.

  Returns:
    Whether the caller must call `write_config` once the stage succeeded.
  """
  with distributed.main_process_first(f'claim {os.fspath(workdir)}'):
    return _claim(config, pathlib.Path(workdir), force)


def _claim(config, workdir: pathlib.Path, force: bool) -> bool:
  path = workdir / CONFIG_FILE
  new = as_json_dict(config)
  if not path.is_file():
    write_config(config, workdir)
    return False
  diff = config_diff(as_json_dict(load_config(workdir)), new)
  if not diff:
    return False
  shown = '; '.join(diff[:8]) + (f'; ... ({len(diff)} in all)'
                                 if len(diff) > 8 else '')
  if not force:
    raise ConfigMismatchError(
        f'{os.fspath(workdir)} was made with another config ({shown}). '
        'Use a new --workdir, or --force to go on with this config '
        '(its checkpoints must fit the new model).')
  logging.warning('%s: going on with a changed config (--force): %s',
                  os.fspath(workdir), shown)
  return True


def write_config(config, workdir) -> None:
  """Writes `<workdir>/config.json` (atomically: never half a file; process
  0 only)."""
  if not distributed.is_main_process():
    return
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  tmp = workdir / (CONFIG_FILE + '.tmp')
  tmp.write_text(config.to_json_best_effort(indent=2))
  os.replace(tmp, workdir / CONFIG_FILE)
