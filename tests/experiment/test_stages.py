"""The stage modules' executors hand the experiment's settings to the training library."""

from __future__ import annotations

import json
import pathlib

import pytest

from visual_priors import experiment
from visual_priors.data.multimodal import chat
from visual_priors.experiment import align
from visual_priors.experiment.stage import StageContext
from visual_priors.train import adaptation


@pytest.mark.parametrize("choice", sorted(chat.SYSTEM_PROMPTS))
def test_align_trains_with_the_experiments_system_prompt(choice, tmp_path, monkeypatch):
  captions = tmp_path / "captions.jsonl"
  captions.write_text(json.dumps({"image": "a.png", "caption": "A red circle."}) + "\n")
  (tmp_path / "a.png").write_bytes(b"")
  seen = {}

  def run_stage_on_records(config, records, files, **kwargs):
    seen.update(kwargs, records=records)
    return type("Result", (), {"step": 1, "final_metrics": {}})()

  monkeypatch.setattr(adaptation, "run_on_records", run_stage_on_records)
  config = experiment.apply_overrides(experiment.apply_local(experiment.base_config()),
                                      [f"adapt.system_prompt={choice!r}"])
  ctx = StageContext(
      config=config, stage="align", key="k", out_dir=tmp_path / "align", log=lambda _: None, devices=None,
      outputs={"pretrain": {"run": str(tmp_path / "lm")}, "vision": {"kind": "contrastive", "run": str(tmp_path)},
               "mmdata": {"captions": str(captions), "images": None}})
  align.run(ctx)
  assert seen["system_prompt"] == chat.SYSTEM_PROMPTS[choice]
  assert seen["records"][0]["conversations"][1]["value"] == "A red circle."


def test_an_experiment_pretrains_on_a_users_seqio_task_through_the_runner(register_user_task, user_texts, tmp_path,
                                                                         monkeypatch):
  from visual_priors.experiment import runner  # pylint: disable=import-outside-toplevel

  name = register_user_task("user_notes_experiment", user_texts(300, 21), user_texts(40, 22))
  monkeypatch.setenv("VISUAL_PRIORS_CACHE", str(tmp_path / "cache"))  # no segment store: the task's cache is read
  config = experiment.apply_overrides(experiment.apply_local(experiment.base_config()), [
      f"data.mixture=seqio:{name}", "pretrain.token_budget=1024", "pretrain.batch_size=8", "pretrain.seq_len=64",
      "pretrain.warmup_steps=1", "runtime.eval_batch_size=8"])
  config.name = "test/seqio"
  key = experiment.stage_identities(experiment.finalize(config))["pretrain"]
  assert key.fields["mixture"]["seqio"] == name and set(key.fields["mixture"]["tasks"]) == {name}
  record = runner.run_experiment(config, root=tmp_path / "runs", until="pretrain", log=lambda _: None)
  assert record.stages["pretrain"]["status"] == "done" and record.stages["pretrain"]["key"] == key.key
  manifest = json.loads((pathlib.Path(record.stages["pretrain"]["dir"]) / "manifest.json").read_text())
  assert manifest["outputs"]["steps"] == 2 and "seqio" in manifest["outputs"]["store"]["path"]
  with pytest.raises(KeyError, match="Unknown seqio Task or Mixture 'user_notes_experimnt'. Did you mean"):
    experiment.stage_identities(experiment.finalize(experiment.apply_overrides(
        config, ["data.mixture=seqio:user_notes_experimnt"])))
