"""Workdir safety: config.json written once, other configs refused."""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnccface import api
from pnccface import distributed
from pnccface import stages
from pnccface import workdirs
from pnccface.models import import_3fabrec
from pnccface.train import mofa as mofa_train
from pnccface.train import pncc as pncc_train
from configs import pipeline as pipeline_config
from configs import pncc_few
from configs import real as real_config
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


# ----------------------------------------------------------------------------
# Configs saved before `config.model` became exactly the modules' fields.

OLD_CONFIGS = pathlib.Path(__file__).parent / 'data' / 'configs_4d7e273'


def _workdir_configs(config, name: str) -> dict:
  """{fixture name: stage config} as a pipeline workdir at
  /old/workdirs/<name> holds them (`stages.train_paper`; see
  data/configs_4d7e273/make_fixtures.py)."""
  configs = {'pipeline': config, 'autoencoder': config.autoencoder,
             'mofa': config.mofa, 'mofa_pncc_few': config.mofa_pncc}
  for variant in ('full', 'few'):
    pncc = config[f'pncc_{variant}'].copy_and_resolve_references()
    pncc.init_from = f'/old/workdirs/{name}/autoencoder'
    configs[f'pncc_{variant}'] = pncc
  return configs


def _old(name: str, stage: str) -> dict:
  return json.loads((OLD_CONFIGS / name / f'{stage}.json').read_text())


def _models(config: dict) -> list:
  """The `model` sections of a stage config or of a pipeline's stages."""
  return [c['model'] for c in (config, *config.values())
          if isinstance(c, dict) and isinstance(c.get('model'), dict)]


# What `upgrade_config` rewrites. configs/real.py has moved on elsewhere
# since 4d7e273 (MoFa's data and length), so its stages compare on these.
UPGRADED = ('model', 'face_model_components', 'face_fraction',
            'from_scratch_decoder')


@pytest.mark.parametrize('name, config, sections', [
    ('tiny', pipeline_config.get_config('tiny'), None),
    ('real', real_config.get_config(), UPGRADED)])
def test_configs_saved_at_4d7e273_upgrade_to_todays(name, config, sections):
  pick = lambda c: c if sections is None else {k: c.get(k) for k in sections}
  for stage, today in _workdir_configs(config, name).items():
    if sections is not None and stage == 'pipeline':
      continue  # its stages are compared one by one
    old, new = _old(name, stage), workdirs.as_json_dict(today)
    assert old != new, stage  # every stage's format changed
    assert pick(workdirs.upgrade_config(old)) == pick(new), stage
    assert workdirs.upgrade_config(new) == new, stage
    assert workdirs.stage_of(new) == workdirs.stage_of(old)
    # Saved before the nets had a compute dtype: they ran in float32.
    assert all('dtype' not in m for m in _models(old)), stage
    dtypes = [m['dtype'] for m in _models(workdirs.upgrade_config(old))]
    assert dtypes and set(dtypes) == {'float32'}, stage


def test_workdir_of_4d7e273_goes_on_with_todays_config(tmp_path):
  saved = (OLD_CONFIGS / 'tiny' / 'pipeline.json').read_text()
  (tmp_path / 'config.json').write_text(saved)
  assert not workdirs.claim(pipeline_config.get_config('tiny'), tmp_path)
  # Not rewritten: a 4d7e273 process training there compares it too.
  assert (tmp_path / 'config.json').read_text() == saved
  changed = pipeline_config.get_config('tiny')
  changed.mofa.model.max_angle = 1.0
  with pytest.raises(workdirs.ConfigMismatchError,
                     match=r'mofa\.model\.max_angle: 1\.57\d* -> 1\.0'):
    workdirs.claim(changed, tmp_path)


def _zero_variables(model, input_shape) -> dict:
  """Zeros in `model`'s variable structure (traced, not compiled): a
  stand-in checkpoint for one trained with `model`."""
  shapes = jax.eval_shape(functools.partial(model.init, train=False),
                          jax.random.PRNGKey(0), jnp.zeros(input_shape))
  return {'batch_stats': {}, **jax.tree_util.tree_map(
      lambda s: np.zeros(s.shape, s.dtype), shapes)}


def test_api_loads_tiny_workdirs_saved_at_4d7e273(tmp_path):
  configs = _workdir_configs(pipeline_config.get_config('tiny'), 'tiny')
  mofa_config, pncc_config = configs['mofa_pncc_few'], configs['pncc_few']
  face_model = stages.load_face_model(mofa_config.face_model)
  encoder = mofa_train.make_encoder(mofa_config, face_model)
  size, resolution = mofa_config.image_size, pncc_config.model.resolution
  for stage, variables in (
      ('pncc_few', _zero_variables(pncc_train.make_model(pncc_config),
                                   (1, resolution, resolution, 3))),
      ('mofa_pncc_few', _zero_variables(encoder, (1, size, size, 6)))):
    import_3fabrec.write_workdir(variables, tmp_path / stage)  # a checkpoint
    (tmp_path / stage / 'config.json').write_text(
        (OLD_CONFIGS / 'tiny' / f'{stage}.json').read_text())
  reconstructor = api.load_reconstructor(tmp_path / 'mofa_pncc_few',
                                         tmp_path / 'pncc_few')
  assert reconstructor.config.face_fraction == 0.525
  assert reconstructor.face_model.num_shape == min(80, face_model.num_shape)
  images = np.random.default_rng(0).uniform(size=(2, size, size, 3))
  pncc = reconstructor.pncc_predictor.predict_pncc(images)
  assert pncc.shape == images.shape
  code = encoder.apply(reconstructor.variables,
                       np.concatenate([images, pncc], -1), train=False)
  assert code.shape.shape == (2, reconstructor.face_model.num_shape)
