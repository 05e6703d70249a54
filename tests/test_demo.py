"""The demo: its experiment list, and (slow) the reduced demo end to end: data, runs, results, report, rerun."""

from __future__ import annotations

import json
import shlex
import time

import jax
import pytest

from visual_priors import cli, demo
from visual_priors.experiment import registry
from visual_priors.analysis.results import ResultsStore
from visual_priors.data.multimodal.gen_questions import GROUPS


def test_the_demo_runs_two_registered_mixtures_a_control_and_reduced_variants_of_them():
  names = demo.experiment_names(reduced=False)
  assert len(names) >= 3 and all(name.startswith("demo/") for name in names)
  configs = {name: registry.get_experiment(name) for name in names}
  trained = [name for name, config in configs.items() if config.pretrain.token_budget > 0]
  assert len({configs[name].data.mixture for name in trained}) == len(trained) >= 2  # an ablation: one mixture each
  assert len(demo.SEEDS) >= 2 and demo.REDUCED_SEEDS
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
  # Alignment against two vision models: the run's own tower and the random-init Hugging Face one.
  assert {("alignment/vit-tiny", "mutual_knn"), ("alignment/dinov2-nano", "mutual_knn")} <= measured
  html = result.report.read_text()
  assert "nano demo" in html and all(row.run_id in html or row.name in html for row in result.runs)
  assert "random weights" in html and "no pre-trained weights can be downloaded here" in html
  assert any("[1/6] pretrain" in line for line in lines)  # progress per stage
  assert any(line.startswith("vqa: replies") and "ETA" not in line and "(100%)" in line for line in lines)

  # The commands the demo prints to inspect its data and results run as printed.
  [inspect] = [line for line in lines if line.startswith("demo: inspect it with")]
  commands = [shlex.split(command)[3:] for command in inspect.splitlines()[1:]]
  assert [c[:2] for c in commands] == [["data", "labels"], ["data", "mixtures"], ["report", "--results"]]
  for argv in commands:
    assert cli.main(argv) == 0, argv
  assert (tmp_path / "report_all_runs.html").is_file()

  # The MLLM run exports: the LM as a Hugging Face Llama that transformers loads, projector and tower beside it.
  transformers = pytest.importorskip("transformers")
  run_dir = tmp_path / "runs" / result.runs[0].run_id
  assert cli.main(["export", "hf", str(run_dir), "--out", str(tmp_path / "hf")]) == 0
  mllm = json.loads((tmp_path / "hf" / "mllm_config.json").read_text())
  assert {"projector", "vision_tower"} <= set(mllm["files"])
  files = [name for value in mllm["files"].values() for name in ([value] if isinstance(value, str) else value)]
  assert files and all((tmp_path / "hf" / name).is_file() for name in files)
  model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
  assert model.config.model_type == "llama"

  started = time.perf_counter()
  again = demo.run_demo(tmp_path, reduced=True, devices=jax.devices()[:1], log=lambda _: None)
  assert time.perf_counter() - started < 15
  assert [row.run_id for row in again.runs] == [row.run_id for row in result.runs]


def test_the_demo_measures_alignment_against_its_own_tower_and_a_random_hugging_face_one(tmp_path):
  from visual_priors import experiment  # pylint: disable=import-outside-toplevel
  from visual_priors.analysis import report  # pylint: disable=import-outside-toplevel
  started = time.perf_counter()
  tower = demo.alignment_tower(tmp_path / "a" / "data")
  assert time.perf_counter() - started < 5
  assert tower == tmp_path / "a" / "data" / "vision" / "dinov2-nano-seed0"
  assert {path.name for path in tower.iterdir()} == {"config.json", "model.safetensors"}
  written = (tower / "model.safetensors").stat().st_mtime_ns
  assert demo.alignment_tower(tmp_path / "a" / "data") == tower and (tower / "model.safetensors").stat().st_mtime_ns \
      == written  # written on first use only
  other = demo.alignment_tower(tmp_path / "b" / "data")
  assert (other / "model.safetensors").read_bytes() == (tower / "model.safetensors").read_bytes()

  name = demo.experiment_names(reduced=False)[0]
  configs = [registry.get_experiment(name, [f"data.store={tmp_path}", demo.alignment_override(path)])
             for path in (tower, other)]
  assert list(configs[0].eval.alignment.vision_models) == ["self", f"dinov2-nano=hf:{tower}"]
  experiment.finalize(configs[0], strict=True)
  keys = [experiment.stage_identities(config) for config in configs]
  plain = experiment.stage_identities(registry.get_experiment(name, [f"data.store={tmp_path}"]))
  assert keys[0]["eval"].key == keys[1]["eval"].key != plain["eval"].key  # the tower's content, not its place
  assert all(keys[0][stage].key == plain[stage].key for stage in plain if stage != "eval")

  store = ResultsStore(tmp_path / "results")
  store.put_run("r", {"name": "demo/mix6"})
  store.put("r", "pretrain", [{"benchmark": benchmark, "group": None, "metric": "mutual_knn", "value": 0.2,
                               "count": 256} for benchmark in ("alignment", "alignment/vit-nano", "alignment/dinov2-nano")])
  results = report.as_results(store)
  encoder, seed = demo.ALIGNMENT_TOWER
  html = report.write_report(results, tmp_path / "report.html", title="t", section_notes={
      "alignment": demo.ALIGNMENT_NOTE.format(encoder=encoder, seed=seed)}).read_text()
  section = html.split("Representation alignment (mutual k-NN)")[1]
  assert "random weights (seed 0)" in section and "alignment/dinov2-nano" in section
  with pytest.raises(ValueError, match="No report section"):
    report.write_report(results, tmp_path / "x.html", title="t", section_notes={"alignmnt": "x"})
