"""A workdir's `config.json`: written once, checked on every later run.

A workdir is one stage's output folder (or a pipeline's, holding one folder
per stage). `config.json` is what `pnccface.api` rebuilds the stage from, so
it is written only for a fresh workdir, and a later run with another config
is refused before anything in the folder changes.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pathlib
from typing import Any, Mapping

from absl import logging
import ml_collections

from pnccface import distributed
from pnccface.models import mofa as mofa_model
from pnccface.models import precision

CONFIG_FILE = 'config.json'
STAGES = ('autoencoder', 'pncc', 'mofa', 'pipeline')


class ConfigMismatchError(ValueError):
  """A run's config differs from the one its workdir was made with."""


def as_json_dict(config) -> dict[str, Any]:
  """The config as the JSON-compatible dict `config.json` holds (tuples
  become lists, so a saved config compares equal to the one it came from)."""
  return json.loads(config.to_json_best_effort())


def load_config(workdir) -> ml_collections.ConfigDict:
  """The config a workdir was made with (`<workdir>/config.json`), in
  today's format (`upgrade_config`; the file itself is never rewritten)."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(
        f'{path} not found: {workdir} is not a workdir written by '
        'pnccface.stages / launch/*.py')
  try:
    saved = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON ({e})') from None
  return ml_collections.ConfigDict(upgrade_config(saved))


# Keys of a stage-0/1 `model` section up to 4d7e273 that are not fields of
# the stage's module: the autoencoder's section held the PNCC head too.
_PNCC_HEAD_KEYS = ('pncc_resolution', 'use_skips', 'freeze_encoder',
                   'freeze_decoder')
# Up to 4d7e273 MoFa's face-model truncation sat in its `model` section.
_COMPONENT_KEYS = {'shape_components': 'num_shape',
                   'expression_components': 'num_expression',
                   'albedo_components': 'num_albedo'}


def upgrade_config(config: Mapping[str, Any]) -> dict[str, Any]:
  """A saved config (JSON dict) in today's format; today's are unchanged.

  Up to commit 4d7e273 a stage's `model` section also held keys that are
  not its module's fields; today `config.model` is exactly the fields
  (`Model(**config.model)`). Moved:
    autoencoder: the PNCC head's keys and `from_scratch_decoder` dropped
      (stage 0 never read them);
    pncc: `model.from_scratch_decoder` -> `from_scratch_decoder`;
    mofa: `model.<backbone>` (`alexnet` / `resnet`) -> `model.
      backbone_kwargs` (the other one dropped), `model.max_angle_degrees`
      -> `model.max_angle` (radians), `model.face_fraction` ->
      `face_fraction`, `model.{shape,expression,albedo}_components` ->
      `face_model_components.num_{shape,expression,albedo}`;
    pipeline: each stage's section as above.
  Up to commit c808827 `model` had no `dtype` (the nets' compute dtype):
  those ran in float32, which is what is filled in.
  A config whose stage `stage_of` cannot tell is returned as it is.
  """
  config = copy.deepcopy(dict(config))
  try:
    stage = stage_of(config)
  except ValueError:
    return config
  if stage == 'pipeline':
    return {key: upgrade_config(value) if isinstance(value, Mapping) and
            'model' in value else value for key, value in config.items()}
  model = config.get('model')
  if not isinstance(model, dict):
    return config
  model.setdefault('dtype', precision.FLOAT32)
  if stage in ('autoencoder', 'pncc'):
    scratch = model.pop('from_scratch_decoder', None)
    if stage == 'autoencoder':
      for key in _PNCC_HEAD_KEYS:
        model.pop(key, None)
    else:
      config.setdefault('from_scratch_decoder', bool(scratch))
  else:  # mofa
    backbone = model.get('backbone', 'alexnet')
    kwargs = {name: model.pop(name, None) for name in ('alexnet', 'resnet')}
    if 'backbone_kwargs' not in model and kwargs.get(backbone) is not None:
      model['backbone_kwargs'] = kwargs[backbone]
    if 'max_angle_degrees' in model:
      model['max_angle'] = math.radians(model.pop('max_angle_degrees'))
    config.setdefault('face_fraction', model.pop(
        'face_fraction', mofa_model.DEFAULT_FACE_FRACTION))
    config.setdefault('face_model_components', {
        new: model.pop(old) for old, new in _COMPONENT_KEYS.items()
        if old in model})
  return config


def stage_of(config) -> str:
  """Which stage a config trains: one of STAGES, from the keys it has."""
  if 'imported_from' in config:  # models.import_3fabrec.write_workdir
    return 'autoencoder'
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
