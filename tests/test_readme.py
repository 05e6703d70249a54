"""Every command the README shows: it parses as printed, and it (or a reduced variant of it, slow) runs."""

from __future__ import annotations

import pathlib
import re
import shlex
import time

import pytest

from visual_priors import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
# A command as the README prints it, up to the end of its code span or table cell.
COMMAND = re.compile(r"(python3? -m visual_priors|xmanager launch)(?:\\\||[^`|\n])*")
# Placeholders the README uses, and what stands in for them when a command is parsed.
PLACEHOLDERS = {"NAME": "mix/mix6", "ROOT": "runs", "...": ""}
# README commands whose run is a test of its own (too long to repeat here, or needing a launcher).
RUN_ELSEWHERE = {
    "demo": "tests/test_demo.py::test_the_reduced_demo_end_to_end_then_a_rerun_takes_seconds",
    "report": "tests/analysis/test_report.py::test_cli_report_end_to_end",
    "xmanager": "tests/test_launch_xm.py::test_local_launch_runs_work_units_offline",
    "export": "tests/interop/test_hf_export.py::test_cli_export_writes_shards_and_prints_the_record",
    "eval": "tests/interop/test_lm_harness.py::test_lm_eval_on_an_export_matches_the_zero_shot_scorer",
}


def readme_commands() -> list[str]:
  return [match.group(0).strip().replace("\\|", "|") for match in COMMAND.finditer(README)]


def _key(command: str) -> str:
  """The command's name as RUN_ELSEWHERE and REDUCED know it: `data build`, `bench lm`, `--help`, `xmanager`."""
  words = shlex.split(command.replace("{", "").replace("}", ""))
  if words[0] == "xmanager":
    return "xmanager"
  words = words[3:]
  if words and words[0] in ("data", "bench"):
    return " ".join(words[:2])
  return words[0] if words else ""


def as_argv(command: str) -> list[str]:
  """The README command as argv for `cli.main`: optional [..] parts kept, `a|b` alternatives reduced to the first,
  `{a,b}` choices to the first, placeholders substituted."""
  text = re.sub(r"\{([^,}]+)[^}]*\}", r"\1", command)
  text = re.sub(r"(\S+)\|\S+", r"\1", text.replace("[", " ").replace("]", " "))
  words = [PLACEHOLDERS.get(word, word) for word in shlex.split(text)]
  return [word for word in words if word][3:]


def test_the_readme_starts_with_the_two_fresh_machine_commands():
  block = README.split("```")[1].splitlines()[1:]
  assert len(block) == 2
  demo, tests = block
  assert demo.startswith("python3 -m venv .venv && . .venv/bin/activate && ") and demo.endswith(
      "pip install -e . && python -m visual_priors demo")
  assert tests.startswith("python3 -m venv .venv && . .venv/bin/activate && ") and tests.endswith(
      "pip install -e '.[test]' && python -m pytest -q -n 2")


def test_every_readme_command_is_run_by_a_test():
  commands = readme_commands()
  assert len(commands) >= 15
  unknown = sorted({_key(c) for c in commands} - set(RUN_ELSEWHERE) - set(REDUCED))
  assert not unknown, f"README commands no test runs: {unknown}; add them to REDUCED or RUN_ELSEWHERE"
  for nodeid in RUN_ELSEWHERE.values():
    path, name = nodeid.split("::")
    assert f"def {name}(" in (REPO / path).read_text(), f"{nodeid} does not exist"


@pytest.mark.parametrize("command", [c for c in readme_commands() if not c.startswith("xmanager")])
def test_every_readme_command_parses_as_printed(command):
  """The flags and arguments the README shows exist (argparse exits 2 on an unknown one). A command written
  with `...` (the stage row) stands for its subcommands: each must exist."""
  argv = as_argv(command)
  if "..." in command or argv == ["--help"]:
    with pytest.raises(SystemExit) as exited:
      cli.build_parser().parse_args([*argv, "--help"] if argv != ["--help"] else argv)
    assert exited.value.code == 0
    return
  args = cli.build_parser().parse_args(argv)
  assert callable(args.func)


def _reduced(store, tmp_path) -> dict[str, list[list[str]]]:
  work = str(tmp_path)
  return {
      "data build": [["data", "build", "--sources", "code,math", "--max-mb-per-source", "0.02", "--vocab-size", "400",
                      "--segment-length", "64", "--cache-dir", f"{work}/cache"]],
      "data labels": [["data", "labels", "--store", store]],
      "data mixtures": [["data", "mixtures"], ["data", "mixtures", "--measured", "--store", store]],
      "data bench": [["data", "bench", "--mixture", "mix6", "--batch", "4", "--seq", "64", "--batches", "3",
                      "--store", store]],
      # As printed, but 20 steps of 8 x 64 (one row per emulated device): the default 1024-step warm-up is scaled to the run, and validation
      # splits smaller than one eval batch are skipped.
      "pretrain": [["pretrain", "--scale", "nano", "--mixture", "mix6", "--work-dir", f"{work}/lm", "--steps", "20",
                    "--batch", "8", "--seq", "64", "--store", store]],
      "compile-check": [["compile-check", "--scale", "nano", "--mesh", "data=1,fsdp=-1,tensor=1", "--seq", "64"]],
      "bench lm": [["bench", "lm", "--scale", "nano", "--batch", "8", "--seq", "64", "--steps", "2", "--warmup", "1",
                    "--json"]],
      "bench sft": [["bench", "sft", "--scale", "nano", "--encoder", "vit-nano", "--visual-tokens", "4", "--batch",
                     "8", "--seq", "64", "--steps", "1", "--warmup", "1"]],
      # Exactly as printed.
      "list": [as_argv(c) for c in readme_commands() if _key(c) == "list"],
      "show": [as_argv(c) for c in readme_commands() if _key(c) == "show"],
      "run": [["run", "demo:mixture=mix6,reduced", "--root", f"{work}/runs", "--until", "pretrain",
               "--set", "pretrain.token_budget=0", "--set", f"data.store={store}"]],
      "grid": [["grid", "--filter", "^demo/mix6$", "--root", f"{work}/runs", "--until", "pretrain",
                "--set", "pretrain.token_budget=0", "--set", f"data.store={store}"]],
      "runs": [["runs", "--root", f"{work}/runs"], ["runs", "--root", f"{work}/runs", "--json"]],
      "--help": [],  # parsed above; argparse prints and exits
  }


REDUCED = _reduced("STORE", pathlib.Path("/tmp"))


@pytest.mark.slow
def test_reduced_variants_of_the_readme_commands_run(small_store, tmp_path, capsys):
  seconds = {}
  for key, runs in _reduced(str(small_store.root), tmp_path).items():
    for argv in runs:
      started = time.perf_counter()
      code = cli.main(argv)
      captured = capsys.readouterr()
      assert code == 0, f"{argv}: exit {code}\n{captured.out[-2000:]}\n{captured.err[-2000:]}"
      seconds[" ".join(argv[:2])] = round(time.perf_counter() - started, 1)
      if key == "pretrain":
        assert "warm-up: 2 steps (10% of this 20-step run" in captured.out
  print(seconds)
