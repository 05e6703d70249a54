"""The demo: its experiment list, and (slow) the reduced demo end to end: data, runs, results, report, rerun."""

from __future__ import annotations

import shlex
import time

import jax
import pytest

from visual_priors import cli, demo, registry
from visual_priors.analysis.results import ResultsStore
from visual_priors.data.multimodal.gen_questions import GROUPS


def test_the_demo_runs_at_least_four_registered_mixtures_and_reduced_variants_of_them():
  names = demo.experiment_names(reduced=False)
  assert len(names) >= 4 and all(name.startswith("demo/") for name in names)
  configs = {name: registry.get_experiment(name) for name in names}
  trained = [name for name, config in configs.items() if config.pretrain.token_budget > 0]
  assert len({configs[name].data.mixture for name in trained}) == len(trained) >= 4  # an ablation: one mixture each
  [control] = [name for name, config in configs.items() if config.pretrain.token_budget == 0]
  assert control == "demo/untrained" and names[-1] == control  # the control runs last
  reduced = demo.experiment_names(reduced=True)
  assert len(reduced) == demo.REDUCED_MIXTURES
  for full, small in zip(names, reduced):
    full_config, small_config = registry.get_experiment(full), registry.get_experiment(small)
    assert small_config.data.mixture == full_config.data.mixture
    assert small_config.pretrain.token_budget < full_config.pretrain.token_budget


@pytest.mark.slow
def test_the_reduced_demo_end_to_end_then_a_rerun_takes_seconds(tmp_path):
  lines: list[str] = []
  started = time.perf_counter()
  result = demo.run_demo(tmp_path, reduced=True, devices=jax.devices()[:1], log=lines.append)
  first = time.perf_counter() - started
  print(f"reduced demo: {first:.1f} s", result.seconds)
  assert not result.failed, [row.error for row in result.runs]
  assert [row.status for row in result.runs] == ["done"] * demo.REDUCED_MIXTURES
  frame = ResultsStore(tmp_path / "results").frame()
  assert set(frame["run"]) == {row.run_id for row in result.runs}
  assert {"sft", "pretrain"} <= set(frame["stage"])
  # Every evaluator of the eval suite left its rows (values are whatever the nano model scored).
  measured = set(zip(frame["benchmark"], frame["metric"]))
  for key in [("overall", "accuracy"), ("overall", "accuracy_blind"), ("overall", "accuracy_likelihood"),
              ("overall", "accuracy_chance"), ("gen_mle_bench", "overall_weighted"),
              ("gen_mle_bench", "overall_unweighted"), ("reasoning_probe", "logical_soundness"),
              ("alignment", "mutual_knn"), ("val/cat:reasoning", "perplexity"), ("val/code", "perplexity"),
              ("language", "zero_shot_builtin_mean"), *((f"group/{g}", "accuracy") for g in GROUPS)]:
    assert key in measured, key
  html = result.report.read_text()
  assert "nano demo" in html and all(row.run_id in html or row.name in html for row in result.runs)
  assert any("[1/6] pretrain" in line for line in lines)  # progress per stage
  assert any(line.startswith("vqa: replies") and "ETA" not in line and "(100%)" in line for line in lines)

  # The commands the demo prints to inspect its data and results run as printed.
  [inspect] = [line for line in lines if line.startswith("demo: inspect it with")]
  commands = [shlex.split(command)[3:] for command in inspect.splitlines()[1:]]
  assert [c[:2] for c in commands] == [["data", "labels"], ["data", "mixtures"], ["report", "--results"]]
  for argv in commands:
    assert cli.main(argv) == 0, argv
  assert (tmp_path / "report_all_runs.html").is_file()

  started = time.perf_counter()
  again = demo.run_demo(tmp_path, reduced=True, devices=jax.devices()[:1], log=lambda _: None)
  assert time.perf_counter() - started < 15
  assert [row.run_id for row in again.runs] == [row.run_id for row in result.runs]
