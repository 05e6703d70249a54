"""Failures the command line reports as one `error:` line (exit code 2), and --debug / --verbose."""

from __future__ import annotations

import argparse
import os

import pytest

from visual_priors import cli, console


def one_error_line(capsys) -> str:
  """The single stderr line of a reported failure (asserting there is exactly one, and no traceback)."""
  err = capsys.readouterr().err
  assert "Traceback" not in err
  lines = err.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  return lines[0]


@pytest.mark.parametrize("assignment, expected, example", [
    ("pretrain.token_budget=abc", "an integer", "--set pretrain.token_budget=409600"),
    ("runtime.log_every_steps=abc", "an integer", "--set runtime.log_every_steps=20"),
    ("pretrain.peak_lr=abc", "a number", "--set pretrain.peak_lr=0.003"),
    ("adapt.blind=1", "True or False", "--set adapt.blind=True"),
    ("pretrain.scale=[1]", "a string", "--set pretrain.scale=nano"),
])
def test_bad_set_value_names_key_value_type_and_example(capsys, assignment, expected, example):
  assert cli.main(["show", "demo/mix6", "--set", assignment]) == 2
  line = one_error_line(capsys)
  key, value = assignment.split("=")
  assert f"Cannot set {key} to " in line and value in line
  assert f"expected {expected}" in line and f"e.g. {example}." in line


def test_integral_float_sets_an_int_field(capsys):
  assert cli.main(["show", "demo/mix6", "--set", "pretrain.token_budget=3e9"]) == 0
  assert "token_budget: 3000000000" in capsys.readouterr().out


def test_damaged_json_names_file_line_and_fix(tmp_path, capsys):
  store = tmp_path / "store"
  store.mkdir()
  (store / "manifest.json").write_text('{"config": {"segment_length": 8},\n "sources": [\n')
  assert cli.main(["data", "labels", "--store", str(store)]) == 2
  line = one_error_line(capsys)
  assert line.startswith(f"error: {store / 'manifest.json'} line 3 column 1: invalid JSON")
  assert "damaged or truncated" in line and "data build" in line


def test_damaged_jsonl_names_file_and_line(tmp_path, capsys):
  run = tmp_path / "results" / "run1"
  run.mkdir(parents=True)
  (run / "eval.jsonl").write_text('{"a": 1}\n\n{"b": \n')
  assert cli.main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "r.html")]) == 2
  line = one_error_line(capsys)
  assert line.startswith(f"error: {run / 'eval.jsonl'} line 3: invalid JSON (Expecting value at column 6)")
  assert "damaged or truncated" in line


@pytest.mark.parametrize("argv", [
    ["--debug", "show", "demo/mix6", "--set", "pretrain.token_budget=abc"],
    ["show", "demo/mix6", "--debug", "--set", "pretrain.token_budget=abc"],
])
def test_debug_flag_reraises(argv):
  with pytest.raises(ValueError, match="Cannot set pretrain.token_budget"):
    cli.main(argv)


def test_debug_env_reraises(monkeypatch):
  monkeypatch.setenv(cli.DEBUG_ENV, "1")
  with pytest.raises(ValueError, match="Cannot set pretrain.token_budget"):
    cli.main(["show", "demo/mix6", "--set", "pretrain.token_budget=abc"])


@pytest.mark.parametrize("argv", [["--verbose", "list", "--filter", "^demo/"],
                                  ["list", "--filter", "^demo/", "--verbose"]])
def test_verbose_flag_sets_the_environment(monkeypatch, capsys, argv):
  monkeypatch.setenv(console.VERBOSE_ENV, "")  # recorded, so the test's "1" is undone afterwards
  assert cli.main(argv) == 0
  assert os.environ.get(console.VERBOSE_ENV) == "1" and "demo/mix6" in capsys.readouterr().out


def test_flags_reach_nested_subcommands():
  args = cli.build_parser().parse_args(["bench", "lm", "--scale", "nano", "--debug"])
  assert args.debug and not args.verbose
  args = cli.build_parser().parse_args(["--verbose", "bench", "lm", "--scale", "nano"])
  assert args.verbose and not args.debug


def failing_parser(error: BaseException):
  """A `build_parser` whose one command, `fail`, raises `error`."""
  def build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def fail(args):
      raise error
    sub.add_parser("fail").set_defaults(func=fail)
    return parser
  return build


@pytest.mark.parametrize("error, expected", [
    (KeyError("no such benchmark 'x'"), "error: no such benchmark 'x'"),
    (FileNotFoundError(2, "No such file or directory", "/data/x.json"),
     "error: /data/x.json: No such file or directory"),
    (ValueError("Checkpoint does not match:\n  a: missing\n  b: missing\nRebuild it."),
     "error: Checkpoint does not match: a: missing; b: missing; Rebuild it."),
    (TypeError("unsupported operand"), "error: unsupported operand (rerun with --debug for the traceback)"),
    (ModuleNotFoundError("No module named 'libtpu'"), "error: No module named 'libtpu'; install the missing package"),
])
def test_user_errors_are_one_line(monkeypatch, capsys, error, expected):
  monkeypatch.setattr(cli, "build_parser", failing_parser(error))
  assert cli.main(["fail"]) == 2
  assert one_error_line(capsys).startswith(expected)


def test_long_multi_line_message_keeps_its_first_lines(monkeypatch, capsys):
  message = "Checkpoint does not match:\n" + "\n".join(f"  params/layer_{i}/kernel: missing" for i in range(40))
  monkeypatch.setattr(cli, "build_parser", failing_parser(ValueError(message)))
  assert cli.main(["fail"]) == 2
  err = capsys.readouterr().err
  lines = err.splitlines()
  assert lines[0] == "error: Checkpoint does not match:" and len(lines) == cli.MAX_LINES + 1
  assert lines[-1].startswith("  ... 29 more line(s); --debug shows all") and "Traceback" not in err


def test_bugs_keep_their_traceback_and_interrupts_exit_130(monkeypatch, capsys):
  monkeypatch.setattr(cli, "build_parser", failing_parser(IndexError("list index out of range")))
  with pytest.raises(IndexError):
    cli.main(["fail"])
  monkeypatch.setattr(cli, "build_parser", failing_parser(KeyboardInterrupt()))
  assert cli.main(["fail"]) == 130
  assert capsys.readouterr().err == "interrupted\n"
