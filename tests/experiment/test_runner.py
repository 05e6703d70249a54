"""The runner: stage order and keyed directories, reuse across runs and experiments, run.json, failures, force,
locks and results (with recording fake executors); then the real stages on a tiny chain, an interrupted
pretrain resuming from its checkpoint, and an untrained LM (slow)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import threading
import time

import jax
import pytest

import ml_collections

from fake_stages import current_runs, replace_every_run, replace_runs, write_results
from tiny_run import TINY_RUN
from visual_priors import experiment
from visual_priors.experiment import evaluate, runner, vision
from visual_priors.analysis.results import ResultsStore
from visual_priors.data import cache
from visual_priors.experiment import directories
from visual_priors.experiment.stage import StageContext
from visual_priors.train import compile_cache

ONE_DEVICE = jax.devices()[:1]


def _config(mixture: str = "mix6", **settings) -> ml_collections.ConfigDict:
  config = experiment.apply_local(experiment.base_config(), settings)
  config.name = f"test/{mixture}"
  config.data.mixture = mixture
  return config


@pytest.fixture
def fake(monkeypatch):
  """Replaces every executor with one that records its call and writes a file into its out directory."""
  calls: list[tuple[str, str]] = []
  failing: dict[str, Exception] = {}

  def make(stage):
    def execute(ctx: StageContext):
      calls.append((stage, ctx.key))
      if stage in failing:
        raise failing[stage]
      ctx.out_dir.mkdir(parents=True, exist_ok=True)
      (ctx.out_dir / "done.txt").write_text(stage)
      outputs = {"run": str(ctx.out_dir), "saw": sorted(ctx.outputs)}
      if stage == "eval":
        outputs.update(write_results(ctx.out_dir, {"sft": [
            {"benchmark": "overall", "group": None, "metric": "accuracy", "value": 42.0, "count": 8}]}))
      return outputs
    return execute

  replace_every_run(make, monkeypatch)
  monkeypatch.setattr(runner, "open_store", _no_store)  # hermetic: whatever `data build` left aside
  return calls, failing


def _no_store(spec):
  raise FileNotFoundError(f"no segment store {spec!r} in this test")


def test_stages_run_in_order_into_keyed_directories_and_a_rerun_reuses_them(tmp_path, fake):
  calls, _ = fake
  record = runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  identities = experiment.stage_identities(experiment.finalize(_config()))
  assert [stage for stage, _ in calls] == list(identities) == ["pretrain", "mmdata", "vision", "align", "sft", "eval"]
  assert record.status == "done" and record.run_id == experiment.run_id(experiment.finalize(_config()))
  for stage, identity in identities.items():
    directory = tmp_path / "stages" / stage / identity.key
    manifest = cache.read_json(directory / "manifest.json")
    assert manifest["key"] == identity.key and manifest["fields"] == identity.fields
    assert manifest["upstream"] == {u: identities[u].key for u in identity.upstream}
    assert (directory / "out" / "done.txt").read_text() == stage
  # Each executor sees the outputs of every earlier stage.
  assert cache.read_json(tmp_path / "stages" / "align" / identities["align"].key / "manifest.json")["outputs"][
      "saw"] == ["mmdata", "pretrain", "vision"]
  run_json = cache.read_json(record.run_dir / "run.json")
  assert run_json["status"] == "done" and run_json["config"]["name"] == "test/mix6"
  assert {s["status"] for s in run_json["stages"].values()} == {"done"}
  assert all(s["seconds"] is not None and s["dir"] for s in run_json["stages"].values())

  calls.clear()
  again = runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  assert calls == [] and {s["status"] for s in again.stages.values()} == {"cached"}


def test_a_moved_root_reuses_its_stages_and_finds_their_outputs_where_they_now_are(tmp_path, fake):
  calls, _ = fake
  first = runner.run_experiment(_config(), root=tmp_path / "old", log=lambda _: None)
  (tmp_path / "old").rename(tmp_path / "new")
  calls.clear()
  seen = {}
  real_eval = current_runs()["eval"]

  def eval_stage(ctx):
    seen.update(ctx.outputs)
    return real_eval(ctx)

  replace_runs({"eval": eval_stage})
  runner.run_experiment(_config(), root=tmp_path / "new", force_from="eval", log=lambda _: None)
  assert calls == [("eval", first.stages["eval"]["key"])]  # the same keys: nothing upstream reran
  sft_dir = tmp_path / "new" / "stages" / "sft" / first.stages["sft"]["key"]
  assert seen["sft"]["run"] == str(sft_dir / directories.OUTPUT)


def test_a_run_pins_the_store_latest_resolves_to(tmp_path, fake, monkeypatch):
  calls, _ = fake
  unpinned = runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  assert unpinned.config.data.store == "latest"  # no store built: the name stays (preflight would say so)
  stores = {"latest": tmp_path / "segments" / "L256-aaaa"}
  monkeypatch.setattr(runner, "open_store", lambda spec: type("Store", (), {"root": stores[spec]}))
  first = runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  assert first.config.data.store == str(stores["latest"]) and first.run_id != unpinned.run_id
  stores["latest"] = tmp_path / "segments" / "L256-bbbb"  # `data build` made another store
  calls.clear()
  second = runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  assert second.run_id != first.run_id and calls[0][0] == "pretrain"  # not the first store's LM
  assert first.stages["mmdata"]["key"] == second.stages["mmdata"]["key"]  # the text store feeds no other stage


def test_experiments_share_the_stages_they_agree_on(tmp_path, fake):
  calls, _ = fake
  runner.run_experiment(_config("mix6"), root=tmp_path, log=lambda _: None)
  calls.clear()
  record = runner.run_experiment(_config("mix0"), root=tmp_path, log=lambda _: None)
  # The generated data and the contrastive tower do not depend on the LM's mixture.
  assert [stage for stage, _ in calls] == ["pretrain", "align", "sft", "eval"]
  assert record.stages["vision"]["status"] == record.stages["mmdata"]["status"] == "cached"
  assert len(list((tmp_path / "runs").iterdir())) == 2


def test_a_failed_stage_is_recorded_and_reraised_then_the_rerun_resumes_there(tmp_path, fake):
  calls, failing = fake
  failing["align"] = RuntimeError("projector exploded")
  with pytest.raises(RuntimeError, match="projector exploded"):
    runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  run_json = cache.read_json(next((tmp_path / "runs").iterdir()) / "run.json")
  assert run_json["status"] == "failed" and "projector exploded" in run_json["error"]
  assert run_json["stages"]["align"]["status"] == "failed"
  assert run_json["stages"]["align"]["error"] == "RuntimeError: projector exploded"
  assert run_json["stages"]["vision"]["status"] == "done" and run_json["stages"]["sft"]["status"] == "pending"
  del failing["align"]
  calls.clear()
  runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  assert [stage for stage, _ in calls] == ["align", "sft", "eval"]


def test_force_from_redoes_that_stage_and_later_ones_only(tmp_path, fake):
  calls, _ = fake
  runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  calls.clear()
  record = runner.run_experiment(_config(), root=tmp_path, force_from="align", log=lambda _: None)
  assert [stage for stage, _ in calls] == ["align", "sft", "eval"]
  assert record.stages["pretrain"]["status"] == "cached"
  calls.clear()
  runner.run_experiment(_config(), root=tmp_path, force=True, log=lambda _: None)
  assert len(calls) == 6
  with pytest.raises(KeyError, match="Did you mean 'align'"):
    runner.run_experiment(_config(), root=tmp_path, force_from="allign", log=lambda _: None)


def test_until_stops_after_the_stage_and_the_run_is_partial(tmp_path, fake):
  calls, _ = fake
  record = runner.run_experiment(_config(), root=tmp_path, until="vision", log=lambda _: None)
  assert [stage for stage, _ in calls] == ["pretrain", "mmdata", "vision"]
  assert record.status == "partial" and list(record.stages) == ["pretrain", "mmdata", "vision"]
  assert record.results is None
  with pytest.raises(KeyError, match="blind"):
    runner.run_experiment(_config(), root=tmp_path, until="blind", log=lambda _: None)  # not a stage of this run


def test_blind_runs_between_align_and_sft(tmp_path, fake):
  calls, _ = fake
  config = _config()
  config.adapt.blind = True
  runner.run_experiment(config, root=tmp_path, log=lambda _: None)
  assert [stage for stage, _ in calls] == ["pretrain", "mmdata", "vision", "align", "blind", "sft", "eval"]


def test_eval_rows_and_run_meta_land_in_the_results_store(tmp_path, fake):
  record = runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  store = ResultsStore(tmp_path / "results")
  frame = store.frame()
  assert frame[["run", "stage", "benchmark", "value"]].values.tolist() == [[record.run_id, "sft", "overall", 42.0]]
  runs = store.runs()
  assert runs["run"].tolist() == [record.run_id] and runs["mixture"].tolist() == ["mix6"]
  assert record.results == {"sft": [{"benchmark": "overall", "group": None, "metric": "accuracy", "value": 42.0,
                                     "count": 8}]}


def _recording(monkeypatch, record) -> None:
  """Wraps every (fake) executor so that `record(ctx)` sees its context first."""
  replace_runs({stage: (lambda ctx, run=run: record(ctx) or run(ctx)) for stage, run in current_runs().items()},
               monkeypatch)


def test_the_run_builds_one_mesh_from_runtime_mesh_and_hands_it_to_every_stage(tmp_path, fake, monkeypatch):
  meshes = []
  _recording(monkeypatch, lambda ctx: meshes.append(ctx.mesh))
  config = experiment.apply_overrides(_config(), ["runtime.mesh.data=2", "runtime.mesh.tensor=2"])
  runner.run_experiment(config, root=tmp_path, log=lambda _: None)
  assert len(meshes) == 6 and all(mesh is meshes[0] for mesh in meshes)
  assert dict(meshes[0].shape) == {"data": 2, "fsdp": 2, "tensor": 2} and meshes[0].devices.size == 8
  meshes.clear()
  runner.run_experiment(_config(), root=tmp_path / "one", devices=ONE_DEVICE, log=lambda _: None)
  assert {mesh.devices.size for mesh in meshes} == {1} and len({id(mesh) for mesh in meshes}) == 1


def test_stages_compile_through_the_runs_compile_cache_unless_it_is_off(tmp_path, fake, monkeypatch):
  seen = []
  _recording(monkeypatch, lambda ctx: seen.append(compile_cache.current()))
  before = compile_cache.current()
  monkeypatch.delenv(compile_cache.ENV, raising=False)
  runner.run_experiment(_config(), root=tmp_path, log=lambda _: None)
  assert seen == [tmp_path / ".jax_cache"] * 6 and compile_cache.current() == before
  seen.clear()
  runner.run_experiment(experiment.apply_overrides(_config(), ["runtime.compile_cache='off'"]), root=tmp_path / "b",
                        log=lambda _: None)
  assert seen == [None] * 6
  seen.clear()
  monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "shared"))
  runner.run_experiment(_config(), root=tmp_path / "c", log=lambda _: None)
  assert seen == [tmp_path / "shared"] * 6 and compile_cache.current() == before


def test_a_stage_directory_with_another_key_is_refused(tmp_path):
  directory = tmp_path / "stages" / "sft" / "abc"
  directories.write_done(directory, {"key": "other"})
  with pytest.raises(ValueError, match="key 'other', not 'abc'"):
    directories.read_done(directory, "abc")
  assert directories.read_done(tmp_path / "nothing", "abc") is None


def test_a_second_process_waits_for_the_stage_lock(tmp_path):
  directory = tmp_path / "stage"
  events: list[str] = []
  with directories.stage_lock(directory, log=events.append):
    thread = threading.Thread(target=lambda: _take_lock(directory, events))
    thread.start()
    time.sleep(0.3)
    assert events == ["  waiting: another process is running " + str(directory)]
    events.append("released")
  thread.join(5)
  assert events[-2:] == ["released", "acquired"]


def _take_lock(directory: pathlib.Path, events: list[str]) -> None:
  with directories.stage_lock(directory, log=events.append):
    events.append("acquired")


def test_a_missing_vision_checkpoint_fails_before_any_stage_runs(tmp_path, fake):
  calls, _ = fake
  config = _config()
  config.vision.kind = "checkpoint"
  config.vision.checkpoint = str(tmp_path / "missing.npz")
  with pytest.raises(ValueError, match="vision.checkpoint"):
    runner.run_experiment(config, root=tmp_path, log=lambda _: None)
  assert calls == [] and not (tmp_path / "runs").exists()


def test_the_vision_stage_takes_a_checkpoint_from_vision_init_from_and_hands_it_to_align(tmp_path):
  from visual_priors.models.vision import random_hf  # pylint: disable=import-outside-toplevel
  tower = random_hf.write_random_dinov2(tmp_path / "dinov2-nano", seed=0)
  config = experiment.apply_overrides(_config(), ["vision.kind=checkpoint", "vision.encoder=dinov2-nano",
                                                  f"vision.init_from=hf:{tower}"])
  config = experiment.finalize(config, strict=True)  # no vision.checkpoint needed
  lines = []
  ctx = StageContext(config=config, stage="vision", key="k", out_dir=tmp_path / "out", outputs={},
                                     devices=ONE_DEVICE, log=lines.append)
  outputs = vision.run(ctx)
  assert outputs["kind"] == "checkpoint" and outputs["format"] == "hf" and outputs["path"] == str(tower)
  assert outputs["content_sha256"] == experiment.stage_identities(config)["vision"].fields["init_from"]["hf"]
  assert vision.align_upstream(outputs) == f"hf:{tower}"
  assert evaluate.stage_locations({"vision": outputs})["vision"] == tower
  assert any("from hf:" in line for line in lines)
  npz = pathlib.Path(__file__).parents[1] / "fixtures" / "big_vision" / "vit_tok.npz"
  legacy = {"kind": "checkpoint", "encoder": "vit-nano", "path": str(npz), "sha256": "x"}
  assert vision.align_upstream(legacy) == str(npz)
  assert vision.align_upstream({"kind": "contrastive", "run": "/r"}) == "/r"
  wrong = experiment.apply_overrides(config, ["vision.encoder=vit-nano"])
  with pytest.raises(ValueError, match="not this encoder's architecture"):
    vision.run(dataclasses.replace(ctx, config=wrong))


# --- the real stages ---------------------------------------------------------------------------------------


def _tiny(store: pathlib.Path, **settings) -> ml_collections.ConfigDict:
  config = _config("code=0.5,web-crawl=0.5", **{**TINY_RUN, **settings})
  config.data.store = str(store)
  config.pretrain.overrides = {"eval_max_batches": 1, "model": {"attention_impl": "xla"}}
  return config


@pytest.mark.slow
def test_the_real_stages_through_sft_then_a_rerun_takes_seconds(tmp_path, small_store):
  record = runner.run_experiment(_tiny(small_store.root), root=tmp_path, until="sft", devices=ONE_DEVICE,
                                 log=print)
  assert record.status == "partial" and {s["status"] for s in record.stages.values()} == {"done"}
  dirs = {stage: pathlib.Path(s["dir"]) / "out" for stage, s in record.stages.items()}
  pretrain = cache.read_json(dirs["pretrain"] / "manifest.json")
  assert pretrain["step"] == 6 and pretrain["data"]["segment_store"] == str(small_store.root)
  outputs = cache.read_json(dirs["pretrain"].parent / "manifest.json")["outputs"]
  assert outputs["steps"] == 6 and outputs["tokens"] == 6 * 8 * 32
  assert (dirs["mmdata"] / "instruct.json").is_file()
  align = cache.read_json(dirs["align"] / "manifest.json")
  assert {r["role"]: r["path"] for r in align["upstream"]} == {"lm": str(dirs["pretrain"]),
                                                              "vision": str(dirs["vision"])}
  sft = cache.read_json(dirs["sft"] / "manifest.json")
  assert sft["upstream"][0]["path"] == str(dirs["align"]) and sft["step"] == 2
  assert cache.read_json(dirs["sft"].parent / "manifest.json")["outputs"]["sft_variant"] == "full"

  started = time.perf_counter()
  again = runner.run_experiment(_tiny(small_store.root), root=tmp_path, until="sft", devices=ONE_DEVICE,
                                log=lambda _: None)
  assert time.perf_counter() - started < 10
  assert {s["status"] for s in again.stages.values()} == {"cached"}


class _Interrupt(Exception):
  pass


@pytest.mark.slow
def test_an_interrupted_pretrain_resumes_from_its_checkpoint(tmp_path, small_store, monkeypatch):
  from visual_priors.train import store_data  # pylint: disable=import-outside-toplevel

  original = store_data.mixture_data
  drawn: list[int] = []
  budget = {"batches": 3}  # checkpoint every 2 steps: step 2 is saved, step 4 is never reached

  class Counting:
    def __init__(self, iterator):
      self.iterator = iterator

    def __next__(self):
      if len(drawn) >= budget["batches"]:
        raise _Interrupt("preempted")
      drawn.append(1)
      return next(self.iterator)

    def get_state(self):
      return self.iterator.get_state()

    def set_state(self, state):
      self.iterator.set_state(state)

  def counted(*args, **kwargs):
    import dataclasses  # pylint: disable=import-outside-toplevel
    data = original(*args, **kwargs)
    return dataclasses.replace(data, train_data=lambda: Counting(data.train_data()))

  monkeypatch.setattr(store_data, "mixture_data", counted)
  config = _tiny(small_store.root)
  with pytest.raises(_Interrupt):
    runner.run_experiment(config, root=tmp_path, until="pretrain", devices=ONE_DEVICE, log=lambda _: None)
  run_json = cache.read_json(next((tmp_path / "runs").iterdir()) / "run.json")
  assert run_json["stages"]["pretrain"]["status"] == "failed"
  out = pathlib.Path(run_json["stages"]["pretrain"]["dir"]) / "out"
  assert not (out.parent / "manifest.json").exists() and (out / "checkpoints" / "2").is_dir()
  drawn.clear()
  budget["batches"] = 100
  runner.run_experiment(config, root=tmp_path, until="pretrain", devices=ONE_DEVICE, log=lambda _: None)
  assert len(drawn) == 4  # steps 3..6 only: steps 1-2 came from the checkpoint
  assert cache.read_json(out / "manifest.json")["step"] == 6


@pytest.mark.slow
def test_token_budget_zero_saves_the_initialised_lm_for_align(tmp_path, small_store):
  from visual_priors.train import upstream  # pylint: disable=import-outside-toplevel

  record = runner.run_experiment(_tiny(small_store.root, **{"pretrain.token_budget": 0}), root=tmp_path,
                                 until="pretrain", devices=ONE_DEVICE, log=lambda _: None)
  out = pathlib.Path(record.stages["pretrain"]["dir"]) / "out"
  manifest = cache.read_json(out / "manifest.json")
  assert manifest["untrained"] and manifest["step"] == 0 and manifest["tokens_seen"] == 0
  run = upstream.read_run(out, "lm", ("pretrain",))
  assert run.checkpoint_step_dir.is_dir()
  assert json.dumps(manifest)
