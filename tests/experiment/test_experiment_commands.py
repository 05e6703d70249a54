"""Tests of the `list` and `show` commands (visual_priors.experiment.commands)."""

from __future__ import annotations

import argparse

import pytest
import yaml

from visual_priors import cli
from visual_priors import experiment
from visual_priors.experiment import commands, registry


def run(argv, capsys):
  parser = argparse.ArgumentParser()
  commands.add_parser(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  try:
    code = args.func(args)
  except (ValueError, KeyError, FileNotFoundError) as error:  # as cli.main reports them
    print(f"error: {error}")
    code = 2
  return code, capsys.readouterr().out


def test_wired_into_the_cli():
  assert "visual_priors.experiment.commands" in cli.COMMAND_MODULES


def test_list_filters_and_shows_shares(capsys):
  code, out = run(["list", "--filter", "^mix/"], capsys)
  assert code == 0
  lines = out.strip().splitlines()
  assert lines[0].split()[:4] == ["name", "family", "scale", "tokens"]
  assert lines[-1] == "11 experiment(s)"
  mix6 = next(line for line in lines if line.startswith("mix/mix6 "))
  assert mix6.split() == ["mix/mix6", "mix", "3b", "50B", "mix6", "52.0", "14.8"]
  code, out = run(["list", "--filter", "^category/code-25$"], capsys)
  assert out.splitlines()[1].split() == ["category/code-25", "category", "3b", "30B", "cat:code=0.25", "-", "-"]
  code, out = run(["list", "--filter", "^nothing"], capsys)
  assert code == 2 and "No experiment matches" in out


def test_show_prints_config_keys_shares_and_cost(capsys):
  code, out = run(["show", "demo/mix6", "--set", "pretrain.peak_lr=1e-3", "--chip", "H100"], capsys)
  assert code == 0
  config = registry.get_experiment("demo/mix6", ["pretrain.peak_lr=1e-3"])
  assert f"## Run id  {experiment.run_id(config)}" in out
  for stage, identity in experiment.stage_identities(config).items():
    assert f"{stage:<9} {identity.key}" in out
  assert "peak_lr: 0.001" in out and "reasoning 52.0%, visual 14.8%" in out
  assert "on one H100 at MFU 0.4" in out and "Before it can run" not in out
  code, out = run(["show", "mix/mix6"], capsys)
  assert "## Before it can run" in out and "vision.checkpoint is empty" in out


def test_show_errors(capsys):
  code, out = run(["show", "mix/mix66"], capsys)
  assert code == 2 and "Did you mean 'mix/mix6'" in out
  code, out = run(["show", "mix/mix6", "--set", "pretrain.peak_lrr=1"], capsys)
  assert code == 2 and "Did you mean 'pretrain.peak_lr'" in out


def test_experiments_folder_option(tmp_path, capsys):
  code, out = run(["list", "--experiments", str(tmp_path / "absent")], capsys)
  assert code == 2 and registry.ENV_VAR in out


def lists(value):
  """`value` with tuples as lists (YAML has no tuples)."""
  if isinstance(value, dict):
    return {key: lists(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [lists(item) for item in value]
  return value


@pytest.mark.parametrize("name", ["demo/mix6", "mix/mix6"])
def test_show_prints_the_config_as_plain_yaml(capsys, name):
  code, out = run(["show", name], capsys)
  assert code == 0
  for internal in ("!!python", "_fields", "_locked", "_type_safe", "ConfigDict"):
    assert internal not in out
  config_text = out.split("## Config\n", 1)[1].split("\n## Run id", 1)[0]
  config = registry.get_experiment(name)
  assert yaml.safe_load(config_text) == lists(config.to_dict())
  assert f"## Run id  {experiment.run_id(config)}" in out


def test_plain_turns_objects_into_yaml_data():
  value = {"a": (1, (2.5, None)), "b": {"c": True}, 3: object}
  assert commands.plain(value) == {"a": [1, [2.5, None]], "b": {"c": True}, "3": str(object)}
