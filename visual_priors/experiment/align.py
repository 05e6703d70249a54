"""The align stage: the projector trained on the captions as chats, LM and vision tower frozen.

Key: adapt.align, the seed and adapt.system_prompt (left out at "llava-v1", so keys stay as before the field
existed); upstream pretrain, vision and mmdata. Outputs: run. Steps: adapt.align.steps, else its epochs over
the captions (`stage.adaptation_steps`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from visual_priors.data.multimodal import chat
from visual_priors.experiment import schema, vision
from visual_priors.experiment.stage import Counts, Outputs, Stage, StageContext, adaptation_steps, trainer_runtime


def key_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  prompt = config.adapt.system_prompt
  align = config.adapt.align.to_dict()
  if align["feature_layer"] is None:  # the tower's own: keys stay as before the field existed
    del align["feature_layer"]
  return {"align": align, "seed": config.seed, **({} if prompt == "llava-v1" else {"system_prompt": prompt})}


def mllm_config(config: ml_collections.ConfigDict):
  """The MLLM the adaptation stages train (for their cost): the experiment's LM, the encoder's patch tokens, the
  align projector."""
  from visual_priors.models.mllm import MLLMConfig, feature_extractor  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import get_encoder  # pylint: disable=import-outside-toplevel

  align = config.adapt.align
  vision = feature_extractor(get_encoder(config.vision.encoder))
  if align.feature_layer is not None:
    vision = dataclasses.replace(vision, feature_layer=int(align.feature_layer))
  return MLLMConfig(vision=vision, llm=schema.decoder_config(config), projector=align.projector,
                    num_visual_tokens=align.num_visual_tokens)


def flops(config: ml_collections.ConfigDict, counts: Counts) -> float:
  """Steps x `mllm_train_flops_per_step` with the projector training (encoder 1F, projector 3F, LM 2F), every row
  at the full seq_len with one image (an upper bound)."""
  from visual_priors.models import flops as model_flops  # pylint: disable=import-outside-toplevel
  align = config.adapt.align
  step = model_flops.mllm_train_flops_per_step(mllm_config(config), batch_size=align.batch_size,
                                               seq_len=align.seq_len, trained=("proj",))
  return adaptation_steps(align, counts["captions"]) * step


def adaptation_config(stage: str, settings: ml_collections.ConfigDict, ctx: StageContext) -> ml_collections.ConfigDict:
  """The training library's config of an adaptation stage (`train.adaptation.stage_config`) with the experiment's
  settings (adapt.align or adapt.sft) and runtime."""
  from visual_priors.train import adaptation  # pylint: disable=import-outside-toplevel

  config = adaptation.stage_config(stage)
  trainer_runtime(config.train, ctx.config, ctx.out_dir)
  config.epochs = float(settings.epochs)
  config.train.num_steps = int(settings.steps)
  config.train.batch_size = int(settings.batch_size)
  config.train.seq_len = int(settings.seq_len)
  config.train.optimizer.peak_lr = float(settings.peak_lr)
  config.warmup_fraction = float(settings.warmup_fraction)
  return config


def run(ctx: StageContext) -> Outputs:
  from visual_priors.train import adaptation, stage_data  # pylint: disable=import-outside-toplevel

  settings = ctx.config.adapt.align
  config = adaptation_config("align", settings, ctx)
  config.mllm.projector = settings.projector
  config.mllm.num_visual_tokens = int(settings.num_visual_tokens)
  config.vision.encoder = ctx.config.vision.encoder
  config.vision.feature_layer = settings.feature_layer
  config.upstream.lm = ctx.outputs["pretrain"]["run"]
  config.upstream.vision = vision.align_upstream(ctx.outputs["vision"])
  captions, captions_path = vision.captions(ctx)
  records = stage_data.caption_conversations(captions)
  ctx.log(f"  align ({settings.projector}, {settings.num_visual_tokens} visual tokens) on {len(records)} captions")
  system_prompt = chat.SYSTEM_PROMPTS[ctx.config.adapt.system_prompt]
  result = adaptation.run_on_records(config, records, [captions_path], drop_unsupervised=True,
                                     system_prompt=system_prompt, devices=ctx.devices, mesh=ctx.mesh)
  return {"run": str(ctx.out_dir), "steps": result.step, "final_metrics": result.final_metrics}


STAGE = Stage("align", key_fields=key_fields, upstream=lambda config: ("pretrain", "vision", "mmdata"), run=run,
              flops=flops)
