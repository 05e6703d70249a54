"""The vision stage: the image tower the MLLM reads, from a checkpoint or trained contrastively on the captions.

Key: vision.kind, vision.encoder and vision.init_from (by content hash; nothing when unset); "checkpoint" adds
the .npz path (the runner records its digest), "contrastive" its settings and the seed, and takes the mmdata
stage upstream (it trains on its captions, with a caption vocabulary trained on them). Outputs: kind, encoder,
and run (contrastive), or path + sha256 (an .npz), or format + path + content hash (vision.init_from).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections

from visual_priors.experiment import schema
from visual_priors.experiment.stage import Counts, Outputs, Stage, StageContext, file_record, trainer_runtime
from visual_priors.names import lookup

CAPTION_VOCAB_SIZE = 1000  # the contrastive text tower's vocabulary, trained on the captions


def source_identity(source: Any) -> dict[str, Any]:
  """A vision weights source as a key sees it: {kind: content hash}, or its path when it is not on this machine
  (which `finalize(strict=True)` refuses to run)."""
  from visual_priors.models.vision import sources  # pylint: disable=import-outside-toplevel
  from visual_priors.train import hf_import  # pylint: disable=import-outside-toplevel
  if source.problem():
    return {source.kind: None, "missing": str(source.path)}
  return {source.kind: sources.content_sha256(source, hf_import.memoised_sha256)}


def key_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  source = schema.vision_source(config.vision.init_from, "vision.init_from")
  fields = {"kind": config.vision.kind, "encoder": config.vision.encoder,
            **({} if source is None else {"init_from": source_identity(source)})}
  if config.vision.kind == "checkpoint":
    fields["checkpoint"] = config.vision.checkpoint
  else:
    fields["contrastive"] = config.vision.contrastive.to_dict()
    fields["seed"] = config.seed
  return fields


def upstream(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return ("mmdata",) if config.vision.kind == "contrastive" else ()


def flops(config: ml_collections.ConfigDict, counts: Counts) -> float:
  """Contrastive: steps x batch x 3 x (image tower + text tower forward), the text tower of the image tower's
  shape over the recipe's caption length; steps 0 = one epoch of the captions. A checkpoint costs nothing."""
  if config.vision.kind != "contrastive":
    return 0.0
  from visual_priors.models import flops as model_flops  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import flops as vision_flops  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import get_encoder  # pylint: disable=import-outside-toplevel
  from visual_priors.train import adaptation, config as train_config  # pylint: disable=import-outside-toplevel

  tower = get_encoder(config.vision.encoder)
  settings = config.vision.contrastive
  steps = settings.steps or train_config.steps_for(counts["captions"], settings.batch_size)
  text_len = adaptation.RECIPES["contrastive"].seq_len
  pair = vision_flops.forward_flops_per_image(tower) + model_flops.encoder_forward_flops(
      tower.width, tower.depth, tower.mlp_dim, text_len)
  return 3.0 * steps * settings.batch_size * pair


def captions(ctx: StageContext) -> tuple[list[dict], str]:
  """The mmdata stage's captions (with their images) and the file they came from."""
  from visual_priors.data.multimodal import loaders  # pylint: disable=import-outside-toplevel

  mmdata = ctx.outputs["mmdata"]
  return loaders.load_captions(mmdata["captions"], mmdata["images"]), mmdata["captions"]


def caption_vocab(texts: Sequence[str], prefix: pathlib.Path, vocab_size: int = CAPTION_VOCAB_SIZE) -> pathlib.Path:
  """A SentencePiece model of the captions (seqio ids: pad 0, eos 1, unk 2; byte fallback) for the text tower."""
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel

  prefix.parent.mkdir(parents=True, exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sorted(set(texts))), model_prefix=str(prefix), vocab_size=vocab_size,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False,
      minloglevel=2, num_threads=1)
  return prefix.with_suffix(".model")


def run(ctx: StageContext) -> Outputs:
  import jax  # pylint: disable=import-outside-toplevel

  from visual_priors.models import sharding  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import get_encoder, sources  # pylint: disable=import-outside-toplevel
  from visual_priors.train import adaptation  # pylint: disable=import-outside-toplevel

  vision = ctx.config.vision
  source = sources.parse_source(vision.init_from, "vision.init_from")
  if source is not None and source.problem():
    raise FileNotFoundError(f"vision.init_from {vision.init_from!r}: {source.problem()}.")
  if vision.kind == "checkpoint" and source is not None:
    ctx.log(f"  {vision.encoder} from {source}")
    # Fails here, not in align, when the checkpoint is not the encoder's architecture.
    sources.tower_config(source, get_encoder(vision.encoder))
    return {"kind": "checkpoint", "encoder": vision.encoder, **sources.describe(source)}
  if vision.kind == "checkpoint":
    return {"kind": "checkpoint", "encoder": vision.encoder, **file_record(vision.checkpoint, "vision.checkpoint")}
  lookup({"contrastive": None}, vision.kind, "vision.kind")
  settings = vision.contrastive
  records, captions_path = captions(ctx)
  vocab = ctx.out_dir / "caption_vocab" / "spm.model"
  if jax.process_index() == 0:  # one writer; the other processes wait for it
    vocab = caption_vocab([c["caption"] for c in records], vocab.with_suffix(""))
  sharding.sync_processes("caption vocabulary")
  config = adaptation.stage_config("contrastive")
  config.vision.encoder = vision.encoder
  if source is not None:
    config.vision.init_from = str(source)
    ctx.log(f"  image tower starts from {source}")
  trainer_runtime(config.train, ctx.config, ctx.out_dir)
  config.train.batch_size = int(settings.batch_size)
  config.train.num_steps = int(settings.steps)
  config.train.optimizer.peak_lr = float(settings.peak_lr)
  ctx.log(f"  contrastive {vision.encoder} on {len(records)} captions")
  result = adaptation.run_on_records(config, records, [captions_path], vocab=str(vocab), system_prompt="",
                                     devices=ctx.devices, mesh=ctx.mesh)
  return {"kind": "contrastive", "encoder": vision.encoder, "run": str(ctx.out_dir), "steps": result.step,
          "final_metrics": result.final_metrics}


def align_upstream(outputs: Outputs) -> str:
  """What the align stage reads as `upstream.vision` from this stage's outputs: the contrastive run directory,
  the .npz path, or "hf:DIR" / "bv:FILE.npz" of a vision.init_from checkpoint."""
  if outputs["kind"] == "contrastive":
    return outputs["run"]
  return f"{outputs['format']}:{outputs['path']}" if "format" in outputs else outputs["path"]


STAGE = Stage("vision", key_fields=key_fields, upstream=upstream, run=run, flops=flops)
