"""The stage executors: one experiment config's pretrain, mmdata, vision, align, blind, sft and eval stages.

Each executor reads the finalized experiment config (`visual_priors.config`) and the outputs of the stages
before it, writes into its `out` directory (a trainer work_dir holding the stage function's own
manifest.json, or the generated data) and returns its outputs: what the runner records in the stage's
manifest and hands to later stages.

  stage     runs                                                     outputs
  pretrain  train.pretrain on data.mixture of data.store; token      run, steps, tokens, store
            budget 0 = the initialised weights saved as step 0;
            pretrain.init_from "hf:DIR" starts from HF weights
  mmdata    generate.generate(adapt.data.generated) | llava files     captions, instruct, images, eval_dir,
                                                                     files (sha256)
  vision    contrastive: SigLIP towers on the captions (with a        kind, run | path + sha256, or
            caption vocabulary trained on them; the image tower       format + path + content_sha256
            from vision.init_from when set); checkpoint: the .npz,    (vision.init_from)
            or vision.init_from ("hf:DIR" / "bv:FILE.npz")
  align     train.stages align: projector on captions as chats       run
  blind     text-only instruction data (adapt.sft_data applied)      run, sft_variant, items
  sft       instruction data, adapt.sft_data removal applied          run, sft_variant, items
  eval      visual_priors.eval.suite.evaluate_run                    results, rows (count per stage)

Every trainer and the evaluation run on the run's mesh (`StageContext.mesh`, built once by the runner from
runtime.mesh). Trainer runs are given `drop_unsupervised=True`: an instruction row whose answers the sequence
length cuts off entirely is skipped rather than failing the stage (LLaVA truncates the same way).

In a multi-process job every process runs each executor but those of `CHIEF_ONLY` (process 0 alone: they compute
nothing on the mesh), and what a stage writes beside its trainers (the caption vocabulary, the eval results) is
written by process 0 while the others wait.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections

from visual_priors import config as config_lib, overrides
from visual_priors.data import cache
from visual_priors.data.multimodal import chat
from visual_priors.models import sharding
from visual_priors.data.segments import open_store
from visual_priors.names import lookup

Outputs = dict[str, Any]
CHIEF_ONLY = ("mmdata",)  # stages that write files and compute nothing on the mesh: process 0 alone runs them
CAPTION_VOCAB_SIZE = 1000  # the contrastive text tower's vocabulary, trained on the captions (default)


@dataclasses.dataclass(frozen=True)
class StageContext:
  """What an executor gets: the experiment, its out directory and the earlier stages' outputs."""

  config: ml_collections.ConfigDict  # finalized experiment config
  stage: str
  key: str
  out_dir: pathlib.Path
  outputs: Mapping[str, Outputs]  # by stage name: the outputs of this run's finished stages
  devices: Sequence[jax.Device] | None
  log: Callable[[str], None]
  # The run's mesh (runtime.mesh over `devices`), built once by the runner; every trainer and the evaluation
  # run on it. None: each builds runtime.mesh over `devices` itself.
  mesh: jax.sharding.Mesh | None = None


# --- helpers -------------------------------------------------------------------------------------------


def _runtime(train: ml_collections.ConfigDict, config: ml_collections.ConfigDict, work_dir: pathlib.Path) -> None:
  """Placement and logging settings of a trainer config, from the experiment's runtime block."""
  runtime = config.runtime
  train.work_dir = str(work_dir)
  train.mesh = dict(runtime.mesh)
  train.log_every_steps = int(runtime.log_every_steps)
  train.checkpoint.every_steps = int(runtime.checkpoint_every_steps)
  train.seed = int(config.seed)


def _file_record(path: str | pathlib.Path, what: str) -> dict[str, str]:
  path = pathlib.Path(path).expanduser().absolute()
  if not path.is_file():
    raise FileNotFoundError(f"The {what} file {path} does not exist.")
  return {"path": str(path), "sha256": cache.sha256_file(path)}


def preflight(config: ml_collections.ConfigDict) -> None:
  """Fails before any compute when the segment store cannot be opened (`config.finalize(strict=True)` checks
  the vision .npz and llava files)."""
  open_store(config.data.store)


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, (Mapping, ml_collections.ConfigDict)):
      flat.update(_flat(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


# --- pretrain ------------------------------------------------------------------------------------------


def pretrain_config(config: ml_collections.ConfigDict, work_dir: pathlib.Path, vocab_size: int):
  """The trainer config of the pretrain stage; steps = token_budget / (batch_size * seq_len), rounded."""
  from visual_priors.train import config as train_config  # pylint: disable=import-outside-toplevel

  p = config.pretrain
  train = train_config.default_config()
  train.scale = p.scale
  train.batch_size, train.seq_len = int(p.batch_size), int(p.seq_len)
  train.num_steps = max(1, round(p.token_budget / (p.batch_size * p.seq_len)))
  train.token_budget = 0
  train.optimizer.peak_lr = float(p.peak_lr)
  train.optimizer.warmup_steps = int(p.warmup_steps)
  _runtime(train, config, work_dir)
  train.model.vocab_size = vocab_size
  for key, value in _flat(p.overrides).items():
    overrides.set_key(train, key, value, train_config.OPEN_KEYS)
  return train


def run_pretrain(ctx: StageContext) -> Outputs:
  from visual_priors.train import hf_import, pretrain, store_data  # pylint: disable=import-outside-toplevel

  p = ctx.config.pretrain
  store = open_store(ctx.config.data.store)
  eval_batch = int(ctx.config.runtime.eval_batch_size)
  data = store_data.mixture_data(store, ctx.config.data.mixture, batch_size=int(p.batch_size),
                                 seq_len=int(p.seq_len), eval_batch_size=eval_batch, seed=int(ctx.config.seed))
  train = pretrain_config(ctx.config, ctx.out_dir, data.vocab_size)
  eval_sets, skipped = store_data.split_trackable(data.eval_sets)
  if skipped:
    ctx.log("  " + store_data.skipped_line(skipped, eval_batch))
  store_record = {"path": str(store.root), "manifest_sha256": data.identity["segment_store_manifest_sha256"],
                  "vocab": str(store.vocab_path)}
  init_from = hf_import.parse_init_from(p.init_from)
  if init_from is not None:
    hf_import.check_vocabulary(init_from, store.vocab_path)
    ctx.log(f"  starting from the Hugging Face checkpoint {init_from}")
  if p.token_budget == 0:
    ctx.log("  token budget 0: saving the " + ("imported" if init_from else "initialised") + " LM (no training)")
    return {**pretrain.save_untrained(train, data_identity=data.identity, devices=ctx.devices, init_from=init_from,
                                    mesh=ctx.mesh),
            "store": store_record}
  tokens = train.num_steps * train.batch_size * train.seq_len
  ctx.log(f"  {p.scale} on {ctx.config.data.mixture}: {train.num_steps} steps x {train.batch_size} x "
          f"{train.seq_len} = {tokens:,} tokens (budget {int(p.token_budget):,})")
  result = pretrain.pretrain(train, train_data=data.train_data, eval_sets=eval_sets,
                             data_identity=data.identity, data_report=data.report, devices=ctx.devices,
                             init_from=init_from, mesh=ctx.mesh)
  return {"run": str(ctx.out_dir), "steps": int(train.num_steps), "tokens": int(tokens),
          "token_budget": int(p.token_budget), "store": store_record, "validation_skipped": skipped,
          "final_metrics": result.final_metrics}


# --- multimodal data -----------------------------------------------------------------------------------


def run_mmdata(ctx: StageContext) -> Outputs:
  data = ctx.config.adapt.data
  if data.kind == "generated":
    from visual_priors.data.multimodal import generate  # pylint: disable=import-outside-toplevel

    settings = dict(data.generated)
    accepted = set(inspect.signature(generate.generate).parameters) - {"out_dir", "log", "downloads_dir"}
    unknown = sorted(set(settings) - accepted)
    if unknown:
      raise ValueError(f"adapt.data.generated has keys {unknown} that generate() does not take; it takes "
                       f"{sorted(accepted)}.")
    settings["tasks"] = config_lib.generated_tasks(ctx.config)
    manifest = generate.generate(ctx.out_dir, **settings, log=ctx.log)
    out = ctx.out_dir
    return {"kind": "generated", "captions": str(out / "captions.jsonl"), "instruct": str(out / "instruct.json"),
            "images": None, "eval_dir": str(out / "eval"), "files": manifest["files"],
            "counts": manifest["counts"], "object_source": manifest["object_source"]["name"]}
  llava = lookup({"llava": data.llava}, data.kind, "adapt.data kind")
  files = {name: _file_record(llava[name], f"adapt.data.llava.{name}") for name in ("captions", "instruct")}
  images = llava.images or None
  return {"kind": "llava", "captions": files["captions"]["path"], "instruct": files["instruct"]["path"],
          "images": str(pathlib.Path(images).expanduser().absolute()) if images else None, "eval_dir": None,
          "files": {name: record["sha256"] for name, record in files.items()}}


def _captions(ctx: StageContext) -> tuple[list[dict], str]:
  from visual_priors.data.multimodal import loaders  # pylint: disable=import-outside-toplevel

  mmdata = ctx.outputs["mmdata"]
  return loaders.load_captions(mmdata["captions"], mmdata["images"]), mmdata["captions"]


# --- vision --------------------------------------------------------------------------------------------


def caption_vocab(texts: Sequence[str], prefix: pathlib.Path, vocab_size: int = CAPTION_VOCAB_SIZE) -> pathlib.Path:
  """A SentencePiece model of the captions (seqio ids: pad 0, eos 1, unk 2; byte fallback) for the text tower."""
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel

  prefix.parent.mkdir(parents=True, exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sorted(set(texts))), model_prefix=str(prefix), vocab_size=vocab_size,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False,
      minloglevel=2, num_threads=1)
  return prefix.with_suffix(".model")


def run_vision(ctx: StageContext) -> Outputs:
  from visual_priors.models.vision import sources  # pylint: disable=import-outside-toplevel

  vision = ctx.config.vision
  source = sources.parse_source(vision.init_from, "vision.init_from")
  if source is not None and source.problem():
    raise FileNotFoundError(f"vision.init_from {vision.init_from!r}: {source.problem()}.")
  if vision.kind == "checkpoint" and source is not None:
    ctx.log(f"  {vision.encoder} from {source}")
    # Fails here, not in align, when the checkpoint is not the encoder's architecture.
    sources.tower_config(source, _encoder(vision.encoder))
    return {"kind": "checkpoint", "encoder": vision.encoder, **sources.describe(source)}
  if vision.kind == "checkpoint":
    return {"kind": "checkpoint", "encoder": vision.encoder, **_file_record(vision.checkpoint, "vision.checkpoint")}
  lookup({"contrastive": None}, vision.kind, "vision.kind")
  from visual_priors.train import stages  # pylint: disable=import-outside-toplevel

  settings = vision.contrastive
  captions, captions_path = _captions(ctx)
  vocab = ctx.out_dir / "caption_vocab" / "spm.model"
  if jax.process_index() == 0:
    vocab = caption_vocab([c["caption"] for c in captions], vocab.with_suffix(""))
  sharding.sync_processes("caption vocabulary")
  config = stages.stage_config("contrastive")
  config.vision.encoder = vision.encoder
  if source is not None:
    config.vision.init_from = str(source)
    ctx.log(f"  image tower starts from {source}")
  _runtime(config.train, ctx.config, ctx.out_dir)
  config.train.batch_size = int(settings.batch_size)
  config.train.num_steps = int(settings.steps)
  config.train.optimizer.peak_lr = float(settings.peak_lr)
  ctx.log(f"  contrastive {vision.encoder} on {len(captions)} captions")
  result = stages.run_on_records(config, captions, [captions_path], vocab=str(vocab),
                                               system_prompt="", devices=ctx.devices, mesh=ctx.mesh)
  return {"kind": "contrastive", "encoder": vision.encoder, "run": str(ctx.out_dir), "steps": result.step,
          "final_metrics": result.final_metrics}


# --- align, blind, sft ---------------------------------------------------------------------------------


def _adapt_settings(config: ml_collections.ConfigDict, settings: ml_collections.ConfigDict,
                    experiment: ml_collections.ConfigDict, work_dir: pathlib.Path) -> None:
  _runtime(config.train, experiment, work_dir)
  config.epochs = float(settings.epochs)
  config.train.num_steps = int(settings.steps)
  config.train.batch_size = int(settings.batch_size)
  config.train.seq_len = int(settings.seq_len)
  config.train.optimizer.peak_lr = float(settings.peak_lr)
  config.warmup_fraction = float(settings.warmup_fraction)


def _encoder(name: str):
  from visual_priors.models.vision import get_encoder  # pylint: disable=import-outside-toplevel
  return get_encoder(name)


def vision_upstream(vision: Outputs) -> str:
  """What the align stage reads as `upstream.vision` from the vision stage's outputs: the contrastive run
  directory, the .npz path, or "hf:DIR" / "bv:FILE.npz" of a vision.init_from checkpoint."""
  if vision["kind"] == "contrastive":
    return vision["run"]
  return f"{vision['format']}:{vision['path']}" if "format" in vision else vision["path"]


def run_align(ctx: StageContext) -> Outputs:
  from visual_priors.train import stage_data, stages  # pylint: disable=import-outside-toplevel

  settings = ctx.config.adapt.align
  config = stages.stage_config("align")
  _adapt_settings(config, settings, ctx.config, ctx.out_dir)
  config.mllm.projector = settings.projector
  config.mllm.num_visual_tokens = int(settings.num_visual_tokens)
  vision = ctx.outputs["vision"]
  config.vision.encoder = ctx.config.vision.encoder
  config.upstream.lm = ctx.outputs["pretrain"]["run"]
  config.upstream.vision = vision_upstream(vision)
  captions, captions_path = _captions(ctx)
  records = stage_data.caption_conversations(captions)
  ctx.log(f"  align ({settings.projector}, {settings.num_visual_tokens} visual tokens) on {len(records)} captions")
  system_prompt = chat.SYSTEM_PROMPTS[ctx.config.adapt.system_prompt]
  result = stages.run_on_records(config, records, [captions_path], drop_unsupervised=True,
                                               system_prompt=system_prompt, devices=ctx.devices, mesh=ctx.mesh)
  return {"run": str(ctx.out_dir), "steps": result.step, "final_metrics": result.final_metrics}


def instruction_records(ctx: StageContext) -> tuple[list[dict], str, dict[str, Any]]:
  """The instruction records with adapt.sft_data's removal applied (its labeller's kinds, seeded by config.seed)."""
  from visual_priors.data.multimodal import loaders, sft_split  # pylint: disable=import-outside-toplevel

  mmdata = ctx.outputs["mmdata"]
  records = loaders.load_llava(mmdata["instruct"], mmdata["images"])
  variant = config_lib.sft_variant(ctx.config)
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


def _run_instruct(ctx: StageContext, stage: str, init: str) -> Outputs:
  from visual_priors.train import stages  # pylint: disable=import-outside-toplevel

  config = stages.stage_config(stage)
  _adapt_settings(config, ctx.config.adapt.sft, ctx.config, ctx.out_dir)
  config.upstream.init = ctx.outputs[init]["run"]
  records, path, info = instruction_records(ctx)
  ctx.log(f"  {stage} from {init} on {info['items']} instruction items ({info['sft_variant']})")
  result = stages.run_on_records(config, records, [path], drop_unsupervised=True, devices=ctx.devices,
                                               mesh=ctx.mesh)
  return {"run": str(ctx.out_dir), "steps": result.step, "final_metrics": result.final_metrics, **info}


def run_blind(ctx: StageContext) -> Outputs:
  return _run_instruct(ctx, "blind", "align")


def run_sft(ctx: StageContext) -> Outputs:
  return _run_instruct(ctx, "sft", "blind" if "blind" in ctx.outputs else "align")


# --- eval ----------------------------------------------------------------------------------------------

RESULTS_FILE = "results.json"


def stage_locations(outputs: Mapping[str, Outputs]) -> dict[str, pathlib.Path]:
  """What the eval suite reads of each stage: the trainer run directory (pretrain, vision when contrastive,
  align, blind, sft), the data directory (mmdata; generated data keeps its benchmarks in `eval/`), or the
  vision .npz file or Hugging Face directory."""
  locations = {}
  for stage, out in outputs.items():
    value = out.get("run") or out.get("path")
    if stage == "mmdata":
      value = str(pathlib.Path(out["instruct"]).parent)
    if value:
      locations[stage] = pathlib.Path(value)
  return locations


def run_eval(ctx: StageContext) -> Outputs:
  try:
    from visual_priors.eval import suite  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise RuntimeError(f"The eval stage needs visual_priors.eval.suite ({error}); run with until='sft'.") from None
  locations = stage_locations(ctx.outputs)
  rows = suite.evaluate_run(ctx.config, locations, ctx.out_dir, ctx.log, mesh=ctx.mesh)
  rows = {stage: [dict(row) for row in stage_rows] for stage, stage_rows in rows.items()}
  ctx.out_dir.mkdir(parents=True, exist_ok=True)
  cache.write_text_atomic(ctx.out_dir / RESULTS_FILE, json.dumps(rows, indent=1, sort_keys=True) + "\n")
  outputs = {"results": str(ctx.out_dir / RESULTS_FILE), "rows": {stage: len(r) for stage, r in rows.items()}}
  scores = ctx.out_dir / "vqa" / "scores.jsonl"
  if scores.is_file():  # per-question scores: the report's intervals and paired comparisons read them
    outputs["item_scores"] = {"stage": suite.model_stage_of(locations), "path": str(scores)}
  return outputs


EXECUTORS: dict[str, Callable[[StageContext], Outputs]] = {
    "pretrain": run_pretrain, "mmdata": run_mmdata, "vision": run_vision, "align": run_align,
    "blind": run_blind, "sft": run_sft, "eval": run_eval,
}
