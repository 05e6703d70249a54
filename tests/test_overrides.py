"""Tests for visual_priors.overrides (the one --set parser every command uses) and visual_priors.names."""

import ml_collections
import pytest

from visual_priors import names, overrides
from visual_priors.train import config as config_lib


def _set(config, assignment):
  """One --set on a train config, in place (as `pretrain --set` applies it)."""
  overrides.assign(config, assignment, config_lib.OPEN_KEYS)


def test_lookup_names_the_closest_valid_names():
  with pytest.raises(names.UnknownNameError, match="Unknown scale 'nan0'. Did you mean 'nano'"):
    names.lookup({"nano": 1, "tiny": 2}, "nan0", "scale")


def test_apply_override_sets_typed_values_and_rejects_unknown_keys():
  config = config_lib.default_config()
  _set(config, "optimizer.peak_lr=1e-3")
  _set(config, "model.vocab_size=512")
  _set(config, "checkpoint.async_save=False")
  assert config.optimizer.peak_lr == 1e-3 and config.model.vocab_size == 512
  assert config.checkpoint.async_save is False
  with pytest.raises(ValueError, match="Unknown config key 'optimizer.lr'"):
    _set(config, "optimizer.lr=1")
  with pytest.raises(ValueError, match="expected KEY=VALUE"):
    _set(config, "seed")


@pytest.mark.parametrize("assignment, message", [
    ("log_every_steps=abc", "Cannot set log_every_steps to 'abc': expected an integer, e.g. --set log_every_steps=50."),
    ("seed=True", "Cannot set seed to True: expected an integer, e.g. --set seed=42."),
    ("checkpoint.keep=2.5", "Cannot set checkpoint.keep to 2.5: expected an integer, e.g. --set checkpoint.keep=3."),
    ("checkpoint.async_save=1", "Cannot set checkpoint.async_save to 1: expected True or False, e.g. --set "
     "checkpoint.async_save=True."),
    ("optimizer.peak_lr=fast", "Cannot set optimizer.peak_lr to 'fast': expected a number, e.g. --set "
     "optimizer.peak_lr=0.0003."),
    ("compute_dtype=[1]", "Cannot set compute_dtype to [1]: expected a string, e.g. --set compute_dtype=text."),
    ("mesh=4", "Cannot set mesh to 4: expected a mapping (set its keys one by one), e.g. --set mesh.data=1."),
])
def test_apply_override_checks_the_field_type(assignment, message):
  config = config_lib.default_config()
  with pytest.raises(ValueError) as error:
    _set(config, assignment)
  assert str(error.value) == message


def test_apply_override_converts_compatible_numbers():
  config = config_lib.default_config()
  for assignment in ("token_budget=3e9", "optimizer.peak_lr=1", "compute_dtype=bfloat16", "model.remat=None"):
    _set(config, assignment)
  assert config.token_budget == 3_000_000_000 and isinstance(config.token_budget, int)
  assert config.optimizer.peak_lr == 1.0 and isinstance(config.optimizer.peak_lr, float)
  assert config.compute_dtype == "bfloat16" and config.model.remat is None


def test_open_keys_take_new_nested_keys_and_others_refuse_them():
  config = ml_collections.ConfigDict({"pretrain": {"lr": 0.1, "overrides": {}}})
  config = overrides.apply_assignments(config, ["pretrain.overrides.model.n_layers=4", "pretrain.lr=1"],
                                   open_keys=("pretrain.overrides",))
  assert config.pretrain.overrides.model.n_layers == 4 and config.pretrain.lr == 1.0
  with pytest.raises(ValueError, match="Unknown config key 'pretrain.new'"):
    overrides.apply_assignments(config, ["pretrain.new=1"], open_keys=("pretrain.overrides",))
  with pytest.raises(ValueError, match="Cannot set pretrain.lr to 'fast': expected a number"):
    overrides.apply_assignments(config, ["pretrain.lr=fast"])
