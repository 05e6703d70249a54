"""Tests for visual_priors.train.commands: argument parsing and the compile-check / bench lm CLI."""

import json

import pytest

from visual_priors import cli
from visual_priors.train import commands


def test_parse_mesh():
  assert commands.parse_mesh("data=1,fsdp=-1,tensor=2") == {"data": 1, "fsdp": -1, "tensor": 2}
  with pytest.raises(ValueError, match="expected AXIS=SIZE"):
    commands.parse_mesh("data:2")
  with pytest.raises(ValueError, match="expected AXIS=SIZE"):
    commands.parse_mesh("data=two")


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


def test_pretrain_seqio_mixture_errors_are_one_line(tmp_path, capsys):
  base = ["pretrain", "--scale", "nano", "--work-dir", str(tmp_path), "--steps", "1",
          "--cache-dir", str(tmp_path / "empty-cache")]
  assert cli.main([*base, "--mixture", "seqio:x", "--seqio-module", "no_such_seqio_tasks"]) == 2
  assert capsys.readouterr().err.startswith("error: Cannot import the seqio task module 'no_such_seqio_tasks'")
  assert cli.main([*base, "--mixture", "seqio:no_such_task"]) == 2  # no store is needed to say so
  assert capsys.readouterr().err.startswith("error: Unknown seqio Task or Mixture 'no_such_task'.")
