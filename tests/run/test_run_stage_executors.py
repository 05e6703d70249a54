"""The runner's stage executors hand the experiment's settings to the training library."""

from __future__ import annotations

import json

import pytest

from visual_priors import config as config_lib
from visual_priors.data.multimodal import chat
from visual_priors.run import stages as run_stages
from visual_priors.train import stages as train_stages


@pytest.mark.parametrize("choice", sorted(chat.SYSTEM_PROMPTS))
def test_align_trains_with_the_experiments_system_prompt(choice, tmp_path, monkeypatch):
  captions = tmp_path / "captions.jsonl"
  captions.write_text(json.dumps({"image": "a.png", "caption": "A red circle."}) + "\n")
  (tmp_path / "a.png").write_bytes(b"")
  seen = {}

  def run_stage_on_records(config, records, files, **kwargs):
    seen.update(kwargs, records=records)
    return type("Result", (), {"step": 1, "final_metrics": {}})()

  monkeypatch.setattr(train_stages, "run_on_records", run_stage_on_records)
  config = config_lib.apply_overrides(config_lib.apply_local(config_lib.base_config()),
                                      [f"adapt.system_prompt={choice!r}"])
  ctx = run_stages.StageContext(
      config=config, stage="align", key="k", out_dir=tmp_path / "align", log=lambda _: None, devices=None,
      outputs={"pretrain": {"run": str(tmp_path / "lm")}, "vision": {"kind": "contrastive", "run": str(tmp_path)},
               "mmdata": {"captions": str(captions), "images": None}})
  run_stages.run_align(ctx)
  assert seen["system_prompt"] == chat.SYSTEM_PROMPTS[choice]
  assert seen["records"][0]["conversations"][1]["value"] == "A red circle."
