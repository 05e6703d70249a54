"""Tests for visual_priors.eval.suite on a mesh: a tiny trained run evaluated on fsdp=8 and on data=2,fsdp=2,tensor=2
gives the predictions and scores it gives on one device (greedy tokens identical, likelihoods within 1e-5)."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest

from tiny_run import TINY_RUN
from visual_priors import experiment
from visual_priors.experiment import runner
from visual_priors.data import segments
from visual_priors.data.multimodal import chat
from visual_priors.eval import benchmarks, decode, loglik, multiple_choice, suite, vqa
from visual_priors.models import sharding
from visual_priors.experiment import evaluate
from visual_priors.train import upstream

ONE_DEVICE = jax.devices()[:1]
MESHES = {"fsdp=8": {"data": 1, "fsdp": 8, "tensor": 1}, "data=2,fsdp=2,tensor=2": {"data": 2, "fsdp": 2, "tensor": 2}}
# The tiny chain of tests/experiment/test_runner.py (float32 nano LM, vit-nano tower), evaluated on a few items.
TINY = {**TINY_RUN, "runtime.eval_batch_size": 8, "eval.limit": 4, "eval.probe.max_new_tokens": 8,
        "eval.alignment.k": 3}


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_store) -> dict:
  """A tiny run through sft (one device) and its evaluation on one device."""
  root = tmp_path_factory.mktemp("mesh_eval")
  config = experiment.apply_local(experiment.base_config(), TINY)
  config.name, config.data.mixture = "test/mesh-eval", "code=0.5,web-crawl=0.5"
  config.data.store = str(small_store.root)
  config.pretrain.overrides = {"eval_max_batches": 1, "model": {"attention_impl": "xla"}}
  record = runner.run_experiment(config, root=root, until="sft", devices=ONE_DEVICE, log=lambda _: None)
  outputs = {stage: json.loads((pathlib.Path(s["dir"]) / "manifest.json").read_text())["outputs"]
             for stage, s in record.stages.items()}
  locations = evaluate.stage_locations(outputs)
  one = sharding.make_mesh({"fsdp": 1}, ONE_DEVICE)
  rows = suite.evaluate_run(record.config, locations, root / "eval-one", log=lambda _: None, mesh=one)
  return {"config": record.config, "locations": locations, "root": root, "rows": rows}


def _predictions(out_dir: pathlib.Path) -> dict:
  return {(p["benchmark"], p["id"], p["blind"]): p["output"]
          for p in vqa.read_predictions(out_dir / "vqa" / vqa.PREDICTIONS).values()}


def _close(rows: dict, expected: dict) -> None:
  assert list(rows) == list(expected)
  for stage in expected:
    assert [{k: v for k, v in row.items() if k != "value"} for row in rows[stage]] == \
        [{k: v for k, v in row.items() if k != "value"} for row in expected[stage]]
    np.testing.assert_allclose([row["value"] for row in rows[stage]], [row["value"] for row in expected[stage]],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MESHES))
def test_evaluation_on_a_mesh_gives_the_one_device_results(run, name, tmp_path):
  mesh = sharding.make_mesh(MESHES[name])
  rows = suite.evaluate_run(run["config"], run["locations"], tmp_path, log=lambda _: None, mesh=mesh)
  assert set(rows) == {"sft", "pretrain"}
  assert {row["benchmark"] for row in rows["pretrain"]} >= {"alignment", "language"}
  assert any(row["metric"] == "accuracy_likelihood" for row in rows["sft"])
  _close(rows, run["rows"])
  expected = _predictions(run["root"] / "eval-one")
  assert expected and _predictions(tmp_path) == expected  # every greedy reply (image and blind) identical
  probe = sorted((tmp_path / "probe").glob("*.jsonl"))
  assert probe and [p.read_text() for p in probe] == [p.read_text() for p in
                                                      sorted((run["root"] / "eval-one" / "probe").glob("*.jsonl"))]


@pytest.mark.slow
def test_restored_models_are_sharded_and_score_as_on_one_device(run):
  """The weights live in their training shardings; greedy tokens, answer likelihoods and token log-probabilities
  on each mesh equal one device's (float32: within 1e-5)."""
  locations = run["locations"]
  paths = suite._generated_paths(locations)  # pylint: disable=protected-access
  items = benchmarks.load_benchmark("gen_general", "", paths=paths, limit=4)
  questions = [multiple_choice.to_question({**item, "prompt": None}, answer_with="text") for item in items]
  manifest = upstream.load_trained(locations["sft"])[1]
  template = chat.ChatTemplate(upstream.vocabulary(manifest), chat.ChatConfig(**manifest["data"]["chat"]))
  store = segments.recorded_store(upstream.load_trained(locations["pretrain"])[1]["data"]["segment_store"])
  from visual_priors.eval import language  # pylint: disable=import-outside-toplevel
  documents = language.read_segments(store, store.sources[0], limit=5)
  prompts = [chat.prompt_inputs(template.encode_prompt([{"from": "human", "value": q.prompt}], with_image=False,
                                                       sample_id=q.id))[0] for q in questions]

  def evaluate(mesh):
    model, _ = upstream.load_trained(locations["sft"], mesh=mesh)
    decoder, _ = upstream.load_trained(locations["pretrain"], mesh=mesh)
    context = sharding.activation_sharding(mesh) if mesh is not None else sharding.unconstrained()
    with context:
      likelihoods = multiple_choice.candidate_scores(model, questions, template, seq_len=256, batch_size=8)
      tokens = decode.greedy_decode(model, prompts, max_new_tokens=6, batch_size=8, eos_id=-1)
      scored = loglik.score_documents(decoder, documents, seq_len=32, batch_size=8)
    return model, likelihoods, tokens, scored

  _, likelihoods, tokens, scored = evaluate(None)
  for shape in MESHES.values():
    mesh = sharding.make_mesh(shape)
    model, got_likelihoods, got_tokens, got_scored = evaluate(mesh)
    kernel = model.llm.layers[0].attn.q_proj.kernel[...]
    assert kernel.sharding.mesh == mesh and kernel.sharding.spec == sharding.logical_to_spec(
        ("embed", "heads", "head_dim"), sharding.DEFAULT_LOGICAL_AXIS_RULES)
    assert [t.tolist() for t in got_tokens] == [t.tolist() for t in tokens]
    np.testing.assert_allclose(np.concatenate(got_likelihoods), np.concatenate(likelihoods), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([s.log_probs for s in got_scored]),
                               np.concatenate([s.log_probs for s in scored]), rtol=1e-5, atol=1e-5)
