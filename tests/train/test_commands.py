"""Tests for visual_priors.train.commands: argument parsing and the compile-check / bench lm CLI."""

import json

import pytest

from visual_priors import cli
from visual_priors.train import commands, config as config_lib


def test_parse_mesh():
  assert commands.parse_mesh("data=1,fsdp=-1,tensor=2") == {"data": 1, "fsdp": -1, "tensor": 2}
  with pytest.raises(ValueError, match="expected AXIS=SIZE"):
    commands.parse_mesh("data:2")
  with pytest.raises(ValueError, match="expected AXIS=SIZE"):
    commands.parse_mesh("data=two")


def test_apply_override_sets_typed_values_and_rejects_unknown_keys():
  config = config_lib.default_config()
  commands.apply_override(config, "optimizer.peak_lr=1e-3")
  commands.apply_override(config, "model.vocab_size=512")
  commands.apply_override(config, "checkpoint.async_save=False")
  assert config.optimizer.peak_lr == 1e-3 and config.model.vocab_size == 512
  assert config.checkpoint.async_save is False
  with pytest.raises(ValueError, match="Unknown config key 'optimizer.lr'"):
    commands.apply_override(config, "optimizer.lr=1")
  with pytest.raises(ValueError, match="expected KEY=VALUE"):
    commands.apply_override(config, "seed")


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
    commands.apply_override(config, assignment)
  assert str(error.value) == message


def test_apply_override_converts_compatible_numbers():
  config = config_lib.default_config()
  for assignment in ("token_budget=3e9", "optimizer.peak_lr=1", "compute_dtype=bfloat16", "model.remat=None"):
    commands.apply_override(config, assignment)
  assert config.token_budget == 3_000_000_000 and isinstance(config.token_budget, int)
  assert config.optimizer.peak_lr == 1.0 and isinstance(config.optimizer.peak_lr, float)
  assert config.compute_dtype == "bfloat16" and config.model.remat is None


def test_pretrain_reports_a_bad_set_value_in_one_line(tmp_path, capsys):
  assert cli.main(["pretrain", "--scale", "nano", "--work-dir", str(tmp_path), "--steps", "1",
                   "--set", "log_every_steps=abc"]) == 2
  err = capsys.readouterr().err
  assert err == "error: Cannot set log_every_steps to 'abc': expected an integer, e.g. --set log_every_steps=50.\n"


def test_compile_check_cli_prints_memory_as_json(capsys):
  assert cli.main(["compile-check", "--scale", "nano", "--mesh", "data=2,fsdp=2,tensor=2", "--batch", "8",
                   "--seq", "32", "--json"]) == 0
  report = json.loads(capsys.readouterr().out)
  assert report["num_devices"] == 8 and report["total_bytes"] > report["temp_bytes"] > 0


def test_bench_lm_cli_prints_json(capsys):
  assert cli.main(["bench", "lm", "--scale", "nano", "--batch", "8", "--seq", "32", "--steps", "2",
                   "--warmup", "1", "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["scale"] == "nano" and result["tokens_per_second"] > 0 and result["mfu"] is None


def test_cli_reports_bad_input_in_one_line(capsys):
  assert cli.main(["compile-check", "--scale", "13c"]) == 2
  assert "error: Unknown model scale '13c'. Did you mean '13b'" in capsys.readouterr().err
