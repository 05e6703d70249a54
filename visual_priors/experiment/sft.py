"""The blind and sft stages: visual instruction tuning of projector and LM, after an optional text-only pass.

Key (both): adapt.sft and the SFT-data variant (adapt.sft_data: the removal; an endpoint labeller's model when a
removal uses one); blind runs only when adapt.blind (the instruction data with its images withheld, from align),
and sft then starts from blind instead of align. Outputs: run, the variant, the items kept and their kinds.
Steps: adapt.sft.steps, else its epochs over the instruction items (`stage.adaptation_steps`); blind counts as
much as sft in cost estimates (an upper bound: its rows carry no image).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from visual_priors.experiment import align, schema
from visual_priors.experiment.stage import Counts, Outputs, Stage, StageContext, adaptation_steps
from visual_priors.names import lookup
from visual_priors.train.recipes import RECIPES


def key_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  sft = config.adapt.sft.to_dict()
  if sft["trainable"] == RECIPES["sft"].trainable:  # the recipe's default: keys stay as before the field existed
    del sft["trainable"]
  fields = {"sft": sft, "sft_data": schema.sft_variant(config)}
  labeller = config.adapt.sft_data.labeller
  if fields["sft_data"] != "full" and labeller.kind == "endpoint":  # the rule labeller leaves keys as they were
    fields["labeller"] = {"model": labeller.model, "send_images": labeller.send_images}
  return fields


def flops(config: ml_collections.ConfigDict, counts: Counts) -> float:
  """Steps x `mllm_train_flops_per_step` with the parts adapt.sft.trainable trains (by default projector and LM:
  encoder 1F, projector 3F, LM 3F)."""
  from visual_priors.models import flops as model_flops  # pylint: disable=import-outside-toplevel
  from visual_priors.train import adaptation  # pylint: disable=import-outside-toplevel
  sft, mllm = config.adapt.sft, align.mllm_config(config)
  step = model_flops.mllm_train_flops_per_step(mllm, batch_size=sft.batch_size, seq_len=sft.seq_len,
                                               trained=adaptation.trained_parts(mllm, sft.trainable))
  return adaptation_steps(sft, counts["instruct"]) * step


def instruction_records(ctx: StageContext) -> tuple[list[dict], str, dict[str, Any]]:
  """The instruction records with adapt.sft_data's removal applied (its labeller's kinds, seeded by config.seed)."""
  from visual_priors.data.multimodal import loaders, sft_split  # pylint: disable=import-outside-toplevel

  mmdata = ctx.outputs["mmdata"]
  records = loaders.load_llava(mmdata["instruct"], mmdata["images"])
  variant = schema.sft_variant(ctx.config)
  lookup(sft_split.VARIANTS, variant, "SFT-data variant")
  labeller = ctx.config.adapt.sft_data.labeller
  if variant == "full" or labeller.kind == "rule":
    kinds = sft_split.RuleSftLabeller().kinds(records)
  else:
    ctx.log(f"  labelling {len(records)} instruction items with {labeller.model} at {labeller.url}")
    kinds = sft_split.make_sft_labeller({"kind": "endpoint", "base_url": labeller.url, "model": labeller.model,
                                         "send_images": labeller.send_images}).kinds(records)
  keep = sft_split.removal_variants(kinds, seed=int(ctx.config.seed))[variant]
  kept = [records[i] for i in keep]
  info = {"sft_variant": variant, "items": len(kept), "items_before_removal": len(records),
          "kinds": {kind: sum(kinds[i] == kind for i in keep) for kind in sft_split.KINDS}}
  return kept, mmdata["instruct"], info


def _run(ctx: StageContext, stage: str, init: str) -> Outputs:
  from visual_priors.train import adaptation  # pylint: disable=import-outside-toplevel

  config = align.adaptation_config(stage, ctx.config.adapt.sft, ctx)
  if stage == "sft":  # blind trains the LM alone: its rows carry no image
    config.train.trainable = ctx.config.adapt.sft.trainable
  config.upstream.init = ctx.outputs[init]["run"]
  records, path, info = instruction_records(ctx)
  ctx.log(f"  {stage} from {init} on {info['items']} instruction items ({info['sft_variant']})")
  result = adaptation.run_on_records(config, records, [path], drop_unsupervised=True, devices=ctx.devices,
                                     mesh=ctx.mesh)
  return {"run": str(ctx.out_dir), "steps": result.step, "final_metrics": result.final_metrics, **info}


BLIND = Stage("blind", key_fields=lambda config: {"blind": True, **key_fields(config)},
              upstream=lambda config: ("align",), run=lambda ctx: _run(ctx, "blind", "align"), flops=flops,
              active=lambda config: bool(config.adapt.blind))
SFT = Stage("sft", key_fields=key_fields, upstream=lambda config: ("blind",) if config.adapt.blind else ("align",),
            run=lambda ctx: _run(ctx, "sft", "blind" if "blind" in ctx.outputs else "align"), flops=flops)
