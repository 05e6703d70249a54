"""The local recipe: what shrinks any experiment to minutes on two CPU cores (the registry's `local` switch)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import ml_collections

from visual_priors.eval import benchmarks as benchmark_registry
from visual_priors.experiment.schema import set_field

# What finishes in about two minutes per experiment on two CPU cores (the demo's settings; tests/train/
# test_adaptation.py's tiny chain is the reference for the adaptation sizes): the nano LM on a few hundred
# thousand tokens, a vit-nano contrastive tower on generated 32-pixel images, short align and sft.
LOCAL_SETTINGS: dict[str, Any] = {
    "pretrain.scale": "nano",
    "pretrain.token_budget": 400 * 16 * 128,
    "pretrain.batch_size": 16,
    "pretrain.seq_len": 128,
    "pretrain.peak_lr": 3e-3,
    "pretrain.warmup_steps": 20,
    "vision.kind": "contrastive",
    "vision.encoder": "vit-nano",
    "vision.checkpoint": "",
    "vision.contrastive.steps": 150,
    "vision.contrastive.batch_size": 32,
    "vision.contrastive.peak_lr": 3e-3,
    "adapt.data.kind": "generated",
    "adapt.data.generated.seed": 0,
    "adapt.data.generated.image_size": 32,
    "adapt.data.generated.n_captions": 256,
    "adapt.data.generated.n_instruct": 512,
    "adapt.data.generated.n_eval_per_benchmark": 32,
    "adapt.data.generated.objects": "shapes",
    "adapt.align.steps": 60,
    "adapt.align.batch_size": 16,
    "adapt.align.peak_lr": 3e-3,
    "adapt.align.num_visual_tokens": 16,
    # Without a system prompt every caption fits in 80 tokens (at most 76 with the demo's 4k vocabulary) and every
    # first answer of the instruction data in 128 (at most 89); with LLaVA-v1's they need 123 and 136.
    "adapt.system_prompt": "none",
    "adapt.align.seq_len": 80,
    "adapt.sft.steps": 120,
    "adapt.sft.batch_size": 16,
    "adapt.sft.peak_lr": 1e-3,
    "adapt.sft.seq_len": 128,
    "eval.benchmarks": list(benchmark_registry.GENERATED_BENCHMARKS),
    "eval.max_new_tokens": 8,
    "eval.alignment.k": 5,
    "eval.probe.judge": "rule",
    "eval.probe.max_new_tokens": 32,
    "runtime.eval_batch_size": 64,
    "runtime.log_every_steps": 20,
    "runtime.checkpoint_every_steps": 100,
}


def apply_local(config: ml_collections.ConfigDict, settings: Mapping[str, Any] | None = None
                ) -> ml_collections.ConfigDict:
  """A copy of `config` shrunk to the local recipe (`LOCAL_SETTINGS`, updated by `settings`), keeping its
  mixture, SFT-data variant and blind switch: what the registry's `local` switch applies to any experiment."""
  config = copy.deepcopy(config)
  for path, value in {**LOCAL_SETTINGS, **(settings or {})}.items():
    set_field(config, path, value)
  return config
