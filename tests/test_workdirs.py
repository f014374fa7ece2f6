"""Workdir safety: config.json written once, other configs refused."""

import json

import numpy as np
import pytest

from pnccface import api
from pnccface import distributed
from pnccface import stages
from pnccface import workdirs
from pnccface.train import pncc as pncc_train
from configs import pncc_few
from tests.conftest import ellipse_faces, few_shot_source


def _trained_pncc_workdir(path):
  config = pncc_few.get_config('tiny')
  config.num_train_steps = 2
  workdirs.claim(config, path)
  pncc_train.train(config, path, few_shot_source(ellipse_faces(0, 8), 4))
  return config


def test_config_diff_lists_changed_keys_only():
  old = {'a': 1, 'b': {'c': 2, 'd': 3}, 'e': 5}
  new = {'a': 1, 'b': {'c': 4, 'd': 3}, 'f': 6}
  assert workdirs.config_diff(old, new) == [
      'b.c: 2 -> 4', 'e: 5 -> (absent)', 'f: (absent) -> 6']


def test_other_config_is_refused_and_workdir_stays_loadable(tmp_path):
  config = _trained_pncc_workdir(tmp_path)
  saved = (tmp_path / 'config.json').read_text()
  other = config.copy_and_resolve_references()
  other.model.base_width = 16
  other.num_train_steps = 5
  with pytest.raises(workdirs.ConfigMismatchError) as error:
    stages.run_pncc(other, tmp_path)
  message = str(error.value)
  assert 'model.base_width: 8 -> 16' in message
  assert 'num_train_steps: 2 -> 5' in message
  assert '--force' in message and '--workdir' in message
  assert len(message.splitlines()) == 1
  assert (tmp_path / 'config.json').read_text() == saved
  # A forced run that fails (its checkpoints do not fit the new model)
  # leaves the old config too.
  with pytest.raises(Exception):  # orbax's tree mismatch
    pncc_train.train(other, tmp_path, few_shot_source(ellipse_faces(0, 8), 4))
  assert workdirs.claim(other, tmp_path, force=True)
  assert (tmp_path / 'config.json').read_text() == saved
  predictor = api.load_pncc_predictor(tmp_path)
  pncc = predictor.predict_pncc(np.zeros((1, 32, 32, 3), np.uint8))
  assert pncc.shape == (1, 32, 32, 3)


def test_same_config_is_reused_and_fresh_workdir_gets_it(tmp_path):
  config = pncc_few.get_config('tiny')
  assert not workdirs.claim(config, tmp_path / 'new')
  assert json.loads((tmp_path / 'new' / 'config.json').read_text()) == (
      workdirs.as_json_dict(config))
  assert not workdirs.claim(config, tmp_path / 'new')
  assert workdirs.stage_of(workdirs.load_config(tmp_path / 'new')) == 'pncc'


def test_only_process_0_writes_config_json(tmp_path, monkeypatch):
  config = pncc_few.get_config('tiny')
  monkeypatch.setattr(distributed, 'is_main_process', lambda: False)
  workdirs.write_config(config, tmp_path / 'other')
  assert not (tmp_path / 'other').exists()
  monkeypatch.setattr(distributed, 'is_main_process', lambda: True)
  workdirs.write_config(config, tmp_path / 'main')
  assert workdirs.load_config(tmp_path / 'main') == config
