"""Tests of visual_priors.experiment.cost: FLOPs per stage, accelerator-hours, and the stated assumptions."""

from __future__ import annotations

import pytest

from visual_priors import experiment
from visual_priors.experiment import cost
from visual_priors.models import flops, scales


def test_pretrain_flops_are_tokens_times_train_flops_per_token():
  config = experiment.base_config()
  estimate = cost.estimate(config)
  llm = scales.get_scale("3b")
  assert estimate.flops["pretrain"] == 30e9 * flops.train_flops_per_token(llm, 2048)
  n = experiment.decoder_params(llm)
  assert estimate.params == n
  # 6ND plus attention (and the embedding rows, which are not matmuls, make N a little larger).
  assert 0.95 < estimate.flops["pretrain"] / (6 * n * 30e9) < 1.3


def test_hours_follow_chip_peak_and_mfu():
  config = experiment.base_config()
  tpu = cost.estimate(config)
  h100 = cost.estimate(config, chip="H100", mfu=0.5)
  assert tpu.chip_hours == pytest.approx(tpu.total_flops / (459e12 * 0.4) / 3600)
  assert h100.chip_hours == pytest.approx(tpu.chip_hours * (459e12 * 0.4) / (989e12 * 0.5))
  with pytest.raises(ValueError, match="No peak FLOP/s known for chip 'TPU v9'.*h100"):
    cost.estimate(config, chip="TPU v9")
  with pytest.raises(ValueError, match="MFU"):
    cost.estimate(config, mfu=1.5)


def test_adaptation_stages():
  config = experiment.base_config()
  base = cost.estimate(config)
  assert base.flops["vision"] == 0 and "blind" not in base.flops
  assert 0 < base.flops["align"] < base.flops["sft"] < base.flops["pretrain"]
  doubled = cost.estimate(config, examples={"captions": 2_000_000, "instruct": 7_000_000})
  assert doubled.flops["align"] == pytest.approx(2 * base.flops["align"], rel=1e-3)
  assert doubled.flops["sft"] == pytest.approx(2 * base.flops["sft"], rel=1e-3)
  blind = cost.estimate(experiment.apply_overrides(config, ["adapt.blind=True"]))
  assert blind.flops["blind"] == blind.flops["sft"]
  contrastive = cost.estimate(experiment.apply_overrides(config, ["vision.kind=contrastive",
                                                                  "vision.encoder=siglip-b16-224"]))
  assert contrastive.flops["vision"] > 0
  untrained = cost.estimate(experiment.apply_overrides(config, ["pretrain.token_budget=0"]))
  assert untrained.flops["pretrain"] == 0 and untrained.flops["sft"] == base.flops["sft"]
  tower = cost.estimate(experiment.apply_overrides(config, ["adapt.sft.trainable=(img|proj|llm)/.*"]))
  assert tower.flops["sft"] > base.flops["sft"]  # the tower's backward pass joins the sft step


def test_local_recipe_uses_generated_counts_and_is_tiny():
  local = experiment.apply_local(experiment.base_config())
  estimate = cost.estimate(local, chip="H100")
  assert estimate.total_flops < 1e13
  assert "256 captions" in estimate.assumptions[1]


def test_format_states_assumptions():
  text = cost.format_estimate(cost.estimate(experiment.base_config()))
  assert "TPU v5p" in text and "MFU 0.4" in text and "evaluation not counted" in text
  assert "1,000,000 captions" in text and "FLOPs" in text
  assert cost.format_hours(0.5) == "30 min" and cost.format_hours(2.0) == "2 h"
  assert cost.format_hours(12345.0) == "12,345 h"
