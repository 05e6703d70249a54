"""Truncated, byte-flipped and deleted artefacts of a run: named in one line, and nothing lost on the rerun.

The artefacts: a stage's runner manifest, an upstream run's manifest, a segment store's files and manifest, the
vocabulary, the results JSONL. The rerun the message points to brings everything back.
"""

from __future__ import annotations

import pathlib

import pytest

from fake_stages import replace_every_run, write_results
from visual_priors import experiment
from visual_priors.analysis.results import load_results
from visual_priors.data import cache, segments
from visual_priors.experiment import directories, runner
from visual_priors.experiment.stage import StageContext
from visual_priors.train import store_data, upstream


def _truncate(path: pathlib.Path) -> None:
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: pathlib.Path) -> None:
  data = bytearray(path.read_bytes())
  data[0] ^= 0xFF  # the opening brace of a JSON file becomes a byte that is not UTF-8
  path.write_bytes(bytes(data))


def _delete(path: pathlib.Path) -> None:
  path.unlink()


DAMAGE = {"truncated": _truncate, "flipped": _flip, "deleted": _delete}


@pytest.fixture
def chain(monkeypatch):
  """Executors that write a trainer-style run (out/manifest.json) and read their upstream runs as the real stages do
  (`upstream.read_run`); the eval stage writes result rows. Returns the stages executed, in order."""
  calls: list[str] = []

  def make(stage):
    def execute(ctx: StageContext):
      calls.append(stage)
      for name, outputs in ctx.outputs.items():
        if name != "mmdata":
          upstream.read_run(outputs["run"], name, (name,))
      ctx.out_dir.mkdir(parents=True, exist_ok=True)
      cache.write_json_atomic(ctx.out_dir / "manifest.json", {"stage": stage, "step": 0,
                                                              "checkpoint_dir": str(ctx.out_dir / "checkpoints")})
      outputs = {"run": str(ctx.out_dir)}
      if stage == "eval":
        outputs.update(write_results(ctx.out_dir, {"sft": [
            {"benchmark": "overall", "group": None, "metric": "accuracy", "value": 42.0, "count": 8},
            {"benchmark": "gen_general", "group": "General", "metric": "accuracy", "value": 40.0, "count": 4}]}))
      return outputs
    return execute

  replace_every_run(make, monkeypatch)
  return calls


def _run(root: pathlib.Path):
  config = experiment.apply_local(experiment.base_config(), {})
  config.name = "faults/damaged"
  config.data.mixture = "mix6"
  return runner.run_experiment(config, root=root, log=lambda _: None)


def _stage_dir(root: pathlib.Path, stage: str) -> pathlib.Path:
  [directory] = (root / "stages" / stage).iterdir()
  return directory


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_stage_manifest_is_named_and_the_rerun_rebuilds_only_that_stage(tmp_path, chain, damage):
  _run(tmp_path)
  manifest = _stage_dir(tmp_path, "align") / "manifest.json"
  DAMAGE[damage](manifest)
  chain.clear()
  if damage != "deleted":
    with pytest.raises(ValueError) as raised:
      _run(tmp_path)
    message = str(raised.value)
    assert str(manifest) in message and "damaged or truncated: delete it" in message and "\n" not in message
    assert chain == []  # nothing ran on a stage of unknown state
    manifest.unlink()  # as the message says
  record = _run(tmp_path)
  assert chain == ["align"] and record.status == "done"  # the later stages kept their keys: reused
  assert cache.read_json(manifest)["stage"] == "align"


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_upstream_run_manifest_marks_its_stage_not_done_and_the_rerun_rebuilds_it(tmp_path, chain, damage):
  _run(tmp_path)
  pretrain = _stage_dir(tmp_path, "pretrain")
  DAMAGE[damage](pretrain / "out" / "manifest.json")
  (_stage_dir(tmp_path, "align") / "manifest.json").unlink()  # align runs again and reads the pretrain run
  chain.clear()
  with pytest.raises(ValueError) as raised:
    _run(tmp_path)
  message = str(raised.value)
  # Before the fix: "... delete it and rerun the command that wrote it", and the rerun found pretrain done.
  assert str(pretrain / "out" / "manifest.json") in message and "\n" not in message, message
  assert "pretrain stage is marked not done" in message, message
  assert (pretrain / upstream.DAMAGED_MANIFEST).is_file() and not (pretrain / "manifest.json").exists()
  chain.clear()
  record = _run(tmp_path)
  assert chain == ["pretrain", "align"] and record.status == "done"


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_results_file_is_named_and_the_rerun_writes_it_again(tmp_path, chain, damage):
  record = _run(tmp_path)
  before = load_results(tmp_path / "results").frame
  rows = tmp_path / "results" / record.run_id / "sft.jsonl"
  DAMAGE[damage](rows)
  if damage != "deleted":
    with pytest.raises(ValueError) as raised:
      load_results(tmp_path / "results")
    message = str(raised.value)
    assert str(rows) in message and "delete it; running the experiment again" in message and "\n" not in message
    rows.unlink()  # as the message says
  chain.clear()
  _run(tmp_path)
  assert chain == []  # every stage reused; the results are stored again from the eval stage's own file
  assert load_results(tmp_path / "results").frame.equals(before)


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("part", ["array_record", "manifest", "vocabulary"])
def test_a_damaged_segment_store_or_vocabulary_is_named_before_any_compute(store_copy, part, damage):
  path = {"array_record": store_copy.path(store_copy.sources[0], "train", "array_record"),
          "manifest": store_copy.root / "manifest.json", "vocabulary": store_copy.vocab_path}[part]
  DAMAGE[damage](path)
  with pytest.raises((ValueError, FileNotFoundError)) as raised:
    store = segments.SegmentStore(store_copy.root)
    store_data.mixture_data(store, "mix6", batch_size=8, seq_len=32, eval_batch_size=8, seed=0)
  message = str(raised.value)
  named = str(path) in message or (str(path.parent) in message and path.name in message)
  assert named and "\n" not in message, message


def test_a_run_record_names_its_process(tmp_path, chain):
  record = _run(tmp_path)
  process = directories.read_run(record.run_dir)["process"]
  assert process["pid"] > 0 and process["host"]
