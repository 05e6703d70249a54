"""The experiment schema (ml_collections): defaults, validation, derived metadata, and run identity.

An experiment is one `base_config()` with some fields changed (experiments/<file>.py builds them). Its
run is a chain of stages, each cached on disk under a key that hashes the stage's result-changing fields
and its upstream stages' keys, so two experiments that agree on a stage share it:

  stage     its own fields (hashed)                              upstream (their keys are hashed too)
  pretrain  seed, data.store, data.mixture (canonical), pretrain   -
  mmdata    adapt.data (the selected kind's; generated: + version)   -
  vision    vision (contrastive settings only when contrastive)     mmdata when vision.kind == "contrastive"
  align     adapt.align                                             pretrain, vision, mmdata
  blind     adapt.sft, adapt.sft_data (only when adapt.blind)       align
  sft       adapt.sft, adapt.sft_data                               blind if adapt.blind else align
  eval      eval                                                    sft (+ pretrain when eval.language)

`STAGES` and `stage_identities` list stages in execution order (mmdata comes before vision, which trains
on its captions when contrastive). name, description, meta and runtime never enter a key.

Canonical hashing: JSON with sorted keys of the fields, where floats are normalised (an integral float
becomes an int, so token_budget 3e10 == 30_000_000_000; others are printed with 12 significant digits, so
3e-4 == 0.0003 == 0.00030000000000000003) and the mixture is parsed (so "mix6" and its source weights
written out, or "code=50%,math=50%" and "math=0.5,code=0.5", are one mixture). A stage's key is the first
12 hex digits of the sha256 of that JSON. Fields that cannot change a stage's result are left out where
that is certain: an untrained LM (token_budget 0) does not depend on the mixture, LR or warm-up; a
checkpoint encoder does not depend on the contrastive settings; sft_data "none"/0 is one variant.
Paths (vision.checkpoint, llava files, .npz vision models) are hashed as strings; the runner records their file
digests. Weights named as sources ("hf:DIR", "bv:FILE.npz": pretrain.init_from, vision.init_from, alignment
vision models) are hashed by their content, and fields added later enter a key only when set. A
segment store in its content-addressed directory (`L<segment length>-<hash of its inputs>`) is hashed by
that name, wherever it lies, so a data cache or runs root moved elsewhere keeps its stage keys.

Validation is split in two. `validate` checks the config itself (unknown keys, names, ranges, the
mixture). `finalize(config, strict=True)`, which the runner uses before it starts, also checks what a run
needs from disk: the vision checkpoint file of kind "checkpoint" and the llava files of data kind
"llava". So the paper's configs (whose weights and data were not released) list, show and hash on any
machine, and fail before compute when a file is missing, naming the field to set.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import pathlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from visual_priors.data.multimodal.chat import SYSTEM_PROMPTS
from visual_priors.data.multimodal.gen_questions import MC_ANSWERS, TASKS
from visual_priors.eval import benchmarks as benchmark_registry
from visual_priors.names import closest, lookup, unknown_keys
from visual_priors.train.recipes import BATCH_SIZE, EPOCHS, NUM_VISUAL_TOKENS, PROJECTOR, RECIPES
from visual_priors.overrides import apply_assignments, coerce_value, dotted_paths, get_key, is_mapping, parse_value, set_key

# Execution order (see the module docstring). "blind" runs only when adapt.blind.
STAGES: tuple[str, ...] = ("pretrain", "mmdata", "vision", "align", "blind", "sft", "eval")

MLE_BENCHMARKS: tuple[str, ...] = ("mle_bench", "gen_mle_bench")

FAMILIES: tuple[str, ...] = ("scale", "source", "category", "grid", "mix", "encoder", "sft_data", "blind",
                             "scaleup", "demo", "custom")
META_KEYS: tuple[str, ...] = ("name", "family", "scale", "params", "tokens", "mixture", "source", "category",
                              "proportion", "reasoning_share", "visual_share", "encoder", "sft_variant", "blind",
                              "seed")
VISION_KINDS = ("checkpoint", "contrastive")
DATA_KINDS = ("generated", "llava")
SFT_REMOVALS = ("none", "perception", "reasoning")
SFT_LABELLERS = ("rule", "endpoint")
JUDGES = ("rule", "llm")
POOLINGS = ("mean", "last")
# Subtrees whose keys are free-form (checked on their own): pretrain.overrides holds train-config keys.
_OPEN_KEYS = ("pretrain.overrides",)
# Train-config keys an override may not set: the experiment has its own field for them (or the runner does).
_OWNED_TRAIN_KEYS = {
    "scale": "pretrain.scale", "batch_size": "pretrain.batch_size", "seq_len": "pretrain.seq_len",
    "token_budget": "pretrain.token_budget", "num_steps": "pretrain.token_budget", "seed": "seed",
    "work_dir": "the runner", "mesh": "runtime.mesh", "log_every_steps": "runtime.log_every_steps",
    "optimizer.peak_lr": "pretrain.peak_lr", "optimizer.warmup_steps": "pretrain.warmup_steps",
}
KEY_LENGTH = 12


def _dict(**fields: Any) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(fields)


def base_config() -> ml_collections.ConfigDict:
  """The schema with its defaults: the paper's where it states them (docs/paper.md, sections 1, 4, 5)."""
  config = ml_collections.ConfigDict()
  config.name = ""
  config.description = ""
  config.seed = 42
  config.data = _dict(store="latest", mixture="web-crawl=1")
  config.pretrain = _dict(scale="3b", token_budget=30_000_000_000, batch_size=1024, seq_len=2048, peak_lr=3e-4,
                          warmup_steps=1024, overrides=ml_collections.ConfigDict())
  # "" = random initialisation; "hf:DIR" = start from a Hugging Face Llama directory (visual_priors/train/
  # hf_import.py); its key field is the directory's content hash, and "" leaves the key as it was.
  config.pretrain.init_from = ""
  # The paper's default encoder is MetaCLIP-B/16; its released weights need their own loader, so a run
  # of kind "checkpoint" needs a big_vision-format .npz of the named architecture in vision.checkpoint.
  # SigLIP's recipe (LR 1e-3) for contrastive towers trained here; steps 0 = one epoch of the captions.
  config.vision = _dict(kind="checkpoint", encoder="metaclip-b16-224", checkpoint="",
                        contrastive=_dict(steps=0, batch_size=BATCH_SIZE, peak_lr=RECIPES["contrastive"].peak_lr))
  # "" = none; "hf:DIR" (a Hugging Face directory) or "bv:FILE.npz" (big_vision) of vision.encoder's architecture
  # (visual_priors/models/vision/sources.py): kind "checkpoint" takes its weights from it (instead of
  # vision.checkpoint), kind "contrastive" starts its image tower from it. Its key field is the content hash;
  # "" leaves the key as it was.
  config.vision.init_from = ""
  config.adapt = ml_collections.ConfigDict()
  # "llava" (the paper's kind of data: ~1M captions, ~3.5M instruction items): a caption JSONL, a
  # LLaVA/Cambrian instruction JSON and the image folder they name. "generated": the settings of
  # visual_priors.data.multimodal.generate (its defaults here), the data `apply_local` switches to.
  config.adapt.data = _dict(
      kind="llava",
      generated=_dict(seed=0, image_size=64, n_captions=64, n_instruct=160, n_eval_per_benchmark=32,
                      n_mle_per_level=None, objects="auto", tasks="", mc_answer="letter"),
      llava=_dict(captions="", instruct="", images=""))
  # The adaptation recipes' defaults (train/recipes.py: one place for the library's stage configs and these).
  for stage in ("align", "sft"):
    recipe = RECIPES[stage]
    config.adapt[stage] = _dict(epochs=EPOCHS, steps=0, batch_size=BATCH_SIZE, peak_lr=recipe.peak_lr,
                                warmup_fraction=recipe.warmup_fraction, seq_len=recipe.seq_len)
  config.adapt.align.projector = PROJECTOR
  config.adapt.align.num_visual_tokens = NUM_VISUAL_TOKENS
  config.adapt.blind = False
  # The chat template's system prompt (data/multimodal/chat.py SYSTEM_PROMPTS), set by align and kept by the
  # stages after it; "llava-v1" is left out of the align key (keys stay as before the field existed).
  config.adapt.system_prompt = "llava-v1"
  config.adapt.sft_data = _dict(remove="none", fraction=0.0)
  # Who labels the instruction items perception / reasoning / other for a removal (data/multimodal/sft_split.py):
  # "rule" (offline keyword rules, or the items' own kind field) or "endpoint" (the chat model `model` behind the
  # OpenAI-compatible `url`; `send_images` for a VLM). An endpoint's model enters the sft key of a removal.
  config.adapt.sft_data.labeller = _dict(kind="rule", url="", model="", send_images=False)
  config.eval = ml_collections.ConfigDict()
  config.eval.benchmarks = list(benchmark_registry.PAPER_BENCHMARKS)
  config.eval.mle_bench = True
  # Also score multiple-choice and yes/no questions by answer likelihood ("accuracy_likelihood"): graded
  # where small models' greedy replies are all wrong; the paper's protocol is the generated answer ("accuracy").
  config.eval.likelihood = True
  config.eval.language = True
  # vision_models: "self" (this run's own vision tower) or "<encoder registry name>=<source>", the source a
  # big_vision .npz path, "bv:FILE.npz" or "hf:DIR" (a Hugging Face directory); one result row per model.
  # layer: "last", "best" (PRH: the best pair of LM and vision layers) or an integer layer index written as
  # text ("-4"): ConfigDict fields keep one type.
  config.eval.alignment = _dict(enabled=True, k=20, layer="last", pooling="mean", vision_models=["self"])
  # PRH's remove_outliers quantile (0.95 in PRH) on both sides' features; 1.0 = none (left out of the key).
  config.eval.alignment.outlier_quantile = 1.0
  config.eval.probe = _dict(enabled=True, judge="rule", url="", model="", max_new_tokens=256)
  config.eval.max_new_tokens = 32
  config.eval.limit = 0  # questions per benchmark; 0 = all
  config.meta = ml_collections.ConfigDict({key: None for key in META_KEYS})
  config.meta.family = "custom"
  # Placement and cosmetics, never part of a key. eval_data_root: where the public benchmarks' files
  # are ("" = the VQA registry's default location). compile_cache: JAX's persistent compilation cache
  # ("" = <runs root>/.jax_cache, "off", or a directory; $VISUAL_PRIORS_COMPILE_CACHE wins; train/compile_cache.py).
  config.runtime = _dict(mesh=_dict(data=1, fsdp=-1, tensor=1), log_every_steps=50, checkpoint_every_steps=1000,
                         eval_batch_size=8, eval_data_root="", compile_cache="")
  return config


# ----------------------------------------------------------------------------------------------- validation


def _paths(tree: Mapping[str, Any]) -> list[str]:
  return dotted_paths(tree, _OPEN_KEYS)


def _unknown_key_error(unknown: Sequence[str], valid: Sequence[str], what: str) -> ValueError:
  parts = []
  for path in unknown:
    near = closest(path, valid)
    parts.append(f"{path!r}" + (f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""))
  parent = unknown[0].rpartition(".")[0]
  siblings = [p for p in valid if p.rpartition(".")[0] == parent]
  return ValueError(f"Unknown {what} key(s) {', '.join(parts)}. Valid keys"
                    f"{' under ' + repr(parent) if parent else ''}: {', '.join(siblings)}.")


def _number(config: ml_collections.ConfigDict, path: str, *, minimum: float | None = None,
            exclusive: bool = False, integer: bool = False, maximum: float | None = None) -> float:
  value = get_key(config, path)
  ok_type = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  if integer and ok_type and isinstance(value, float):
    ok_type = value.is_integer()
  if not ok_type:
    kind = "an integer" if integer else "a finite number"
    raise ValueError(f"{path} must be {kind}, got {value!r}.")
  if minimum is not None and (value <= minimum if exclusive else value < minimum):
    raise ValueError(f"{path} must be {'>' if exclusive else '>='} {minimum:g}, got {value!r}.")
  if maximum is not None and value > maximum:
    raise ValueError(f"{path} must be <= {maximum:g}, got {value!r}.")
  return value


def _choice(config: ml_collections.ConfigDict, path: str, choices: Iterable[str]) -> str:
  value = get_key(config, path)
  choices = tuple(choices)
  if value not in choices:
    near = closest(str(value), choices)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise ValueError(f"{path} is {value!r}, not one of {', '.join(repr(c) for c in choices)}.{hint}")
  return value


def _named(path: str, table: Mapping[str, Any], name: Any, kind: str) -> Any:
  try:
    return lookup(table, name, kind)
  except KeyError as error:
    raise ValueError(f"{path}: {error}") from None


def benchmark_names() -> tuple[str, ...]:
  """Valid eval.benchmarks names: the VQA registry's (visual_priors/eval/benchmarks.py) and MLE-Bench's."""
  return tuple(dict.fromkeys((*benchmark_registry.BENCHMARKS, *MLE_BENCHMARKS)))


def parse_mixture(text: str) -> Any:
  """data/mixtures.parse_spec, with errors that name the field."""
  from visual_priors.data import mixtures  # pylint: disable=import-outside-toplevel
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"data.mixture must be a mixture spec string (e.g. 'mix6', 'code=0.5,web-crawl=0.5', "
                     f"'cat:reasoning=0.75'), got {text!r}.")
  try:
    return mixtures.parse_spec(text)
  except (ValueError, KeyError) as error:
    raise ValueError(f"data.mixture {text!r} does not parse: {error}") from None


def generated_tasks(config: ml_collections.ConfigDict) -> list[str] | None:
  """adapt.data.generated.tasks as generate() takes it: the named question tasks (comma-separated text), or None
  ("", every task the object source allows); an unknown name fails with the valid ones."""
  text = config.adapt.data.generated.get("tasks", "")
  if not isinstance(text, str):
    raise ValueError(f"adapt.data.generated.tasks must be comma-separated task names ('' for all), got {text!r}.")
  names = [name.strip() for name in text.split(",") if name.strip()]
  for name in names:
    _named("adapt.data.generated.tasks", TASKS, name, "generated task")
  return names or None


def sft_variant(config: ml_collections.ConfigDict) -> str:
  """The sft_split variant name of adapt.sft_data: "full", "perception-50", "reasoning-100", ..."""
  remove, fraction = config.adapt.sft_data.remove, float(config.adapt.sft_data.fraction)
  if remove == "none" or fraction == 0:
    return "full"
  return f"{remove}-{round(fraction * 100)}"


def _validate_overrides(overrides: Mapping[str, Any]) -> None:
  from visual_priors.train import config as train_config  # pylint: disable=import-outside-toplevel
  reference = train_config.default_config()
  unknown = [f"pretrain.overrides.{p}" for p in unknown_keys(overrides, reference, _OPEN_KEYS)
             if not p.startswith("model.")]
  if unknown:
    valid = [f"pretrain.overrides.{p}" for p in _paths(reference)]
    raise _unknown_key_error(unknown, valid, "train-config override")
  for path in _paths(overrides):
    owner = _OWNED_TRAIN_KEYS.get(path)
    if owner:
      raise ValueError(f"pretrain.overrides.{path} is set by {owner}; change that instead.")
  for path in _paths(overrides):  # each value fits its train-config field (model.* is checked by DecoderConfig)
    value = get_key(overrides, path)
    if path.split(".")[0] != "model" and not is_mapping(value):
      parent_path, _, leaf = path.rpartition(".")
      parent = get_key(reference, parent_path) if parent_path else reference
      coerce_value(f"pretrain.overrides.{path}", parent[leaf], value, parent.get_type(leaf))
  model = overrides.get("model", {})
  if model:
    from visual_priors.models.decoder import DecoderConfig  # pylint: disable=import-outside-toplevel
    fields = {f.name for f in dataclasses.fields(DecoderConfig)}
    bad = sorted(set(model) - fields)
    if bad:
      raise ValueError(f"pretrain.overrides.model: unknown DecoderConfig field(s) {bad}; fields: {sorted(fields)}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field of the first problem (and the closest valid values)."""
  reference = base_config()
  unknown = unknown_keys(config, reference, _OPEN_KEYS)
  if unknown:
    raise _unknown_key_error(unknown, _paths(reference), "config")
  present = set(_paths(config))
  missing = [p for p in _paths(reference) if p not in present and not p.startswith("pretrain.overrides.")]
  if missing:
    raise ValueError(f"Config lacks key(s) {missing}; start from visual_priors.config.base_config().")
  from visual_priors.models.scales import SCALES  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision.registry import ENCODERS  # pylint: disable=import-outside-toplevel
  from visual_priors.models.projector import PROJECTOR_TYPES, grid_side  # pylint: disable=import-outside-toplevel
  from visual_priors.data.multimodal.generate import OBJECT_SOURCES  # pylint: disable=import-outside-toplevel
  from visual_priors.data.multimodal.sft_split import VARIANTS  # pylint: disable=import-outside-toplevel

  for path in ("name", "description"):
    if not isinstance(get_key(config, path), str):
      raise ValueError(f"{path} must be a string, got {get_key(config, path)!r}.")
  _number(config, "seed", minimum=0, integer=True)
  if not isinstance(config.data.store, str) or not config.data.store:
    raise ValueError(f"data.store must be 'latest', a segment-store key or a path, got {config.data.store!r}.")
  parse_mixture(config.data.mixture)

  _named("pretrain.scale", SCALES, config.pretrain.scale, "model scale")
  _number(config, "pretrain.token_budget", minimum=0, integer=True)
  _number(config, "pretrain.batch_size", minimum=0, exclusive=True, integer=True)
  _number(config, "pretrain.seq_len", minimum=0, exclusive=True, integer=True)
  _number(config, "pretrain.peak_lr", minimum=0, exclusive=True)
  _number(config, "pretrain.warmup_steps", minimum=0, integer=True)
  _validate_overrides(config.pretrain.overrides)
  from visual_priors.train.hf_import import parse_init_from  # pylint: disable=import-outside-toplevel
  parse_init_from(config.pretrain.init_from)

  _choice(config, "vision.kind", VISION_KINDS)
  _named("vision.encoder", ENCODERS, config.vision.encoder, "vision encoder")
  if not isinstance(config.vision.checkpoint, str):
    raise ValueError(f"vision.checkpoint must be a path string ('' for none), got {config.vision.checkpoint!r}.")
  if _vision_source(config.vision.init_from, "vision.init_from") and config.vision.checkpoint:
    raise ValueError("vision.checkpoint and vision.init_from are both set; set one ('' for the other).")
  _number(config, "vision.contrastive.steps", minimum=0, integer=True)
  _number(config, "vision.contrastive.batch_size", minimum=0, exclusive=True, integer=True)
  _number(config, "vision.contrastive.peak_lr", minimum=0, exclusive=True)

  _choice(config, "adapt.data.kind", DATA_KINDS)
  _number(config, "adapt.data.generated.seed", minimum=0, integer=True)
  _number(config, "adapt.data.generated.image_size", minimum=32, integer=True)
  for name in ("n_captions", "n_instruct", "n_eval_per_benchmark"):
    _number(config, f"adapt.data.generated.{name}", minimum=0, integer=True)
  if config.adapt.data.generated.get("n_mle_per_level") is not None:  # None: as many as n_eval_per_benchmark
    _number(config, "adapt.data.generated.n_mle_per_level", minimum=0, integer=True)
  _choice(config, "adapt.data.generated.objects", OBJECT_SOURCES)
  generated_tasks(config)
  _choice(config, "adapt.data.generated.mc_answer", MC_ANSWERS)
  for stage in ("align", "sft"):
    prefix = f"adapt.{stage}"
    epochs = _number(config, f"{prefix}.epochs", minimum=0)
    steps = _number(config, f"{prefix}.steps", minimum=0, integer=True)
    if epochs <= 0 and steps <= 0:
      raise ValueError(f"{prefix}: set epochs > 0 or steps > 0 (steps wins when positive).")
    _number(config, f"{prefix}.batch_size", minimum=0, exclusive=True, integer=True)
    _number(config, f"{prefix}.peak_lr", minimum=0, exclusive=True)
    warmup = _number(config, f"{prefix}.warmup_fraction", minimum=0)
    if warmup >= 1:
      raise ValueError(f"{prefix}.warmup_fraction must be in [0, 1), got {warmup!r}.")
    _number(config, f"{prefix}.seq_len", minimum=0, exclusive=True, integer=True)
  _choice(config, "adapt.align.projector", PROJECTOR_TYPES)
  _number(config, "adapt.align.num_visual_tokens", minimum=0, exclusive=True, integer=True)
  grid_side(config.adapt.align.num_visual_tokens, "adapt.align.num_visual_tokens")
  _choice(config, "adapt.system_prompt", SYSTEM_PROMPTS)
  if not isinstance(config.adapt.blind, bool):
    raise ValueError(f"adapt.blind must be True or False, got {config.adapt.blind!r}.")
  _choice(config, "adapt.sft_data.remove", SFT_REMOVALS)
  _number(config, "adapt.sft_data.fraction", minimum=0, maximum=1)
  _choice(config, "adapt.sft_data.labeller.kind", SFT_LABELLERS)
  variant = sft_variant(config)
  labeller = config.adapt.sft_data.labeller
  if labeller.kind == "endpoint" and variant != "full" and not (labeller.url and labeller.model):
    raise ValueError("adapt.sft_data.labeller.kind 'endpoint' needs adapt.sft_data.labeller.url (an "
                     "OpenAI-compatible base URL) and adapt.sft_data.labeller.model.")
  if variant not in VARIANTS:
    raise ValueError(f"adapt.sft_data {config.adapt.sft_data.to_dict()} is variant {variant!r}, which the SFT "
                     f"split does not define; variants: {', '.join(VARIANTS)} (fraction 0.5 or 1.0).")

  valid_benchmarks = {name: name for name in benchmark_names()}
  if not isinstance(config.eval.benchmarks, (list, tuple)):
    raise ValueError(f"eval.benchmarks must be a list of benchmark names, got {config.eval.benchmarks!r}.")
  for name in config.eval.benchmarks:
    _named("eval.benchmarks", valid_benchmarks, name, "benchmark")
  if len(set(config.eval.benchmarks)) != len(config.eval.benchmarks):
    raise ValueError(f"eval.benchmarks names a benchmark twice: {list(config.eval.benchmarks)}.")
  for path in ("eval.mle_bench", "eval.likelihood", "eval.language", "eval.alignment.enabled", "eval.probe.enabled"):
    if not isinstance(get_key(config, path), bool):
      raise ValueError(f"{path} must be True or False, got {get_key(config, path)!r}.")
  _number(config, "eval.alignment.k", minimum=0, exclusive=True, integer=True)
  layer = config.eval.alignment.layer
  if layer not in ("last", "best") and not re.fullmatch(r"-?\d+", str(layer)):
    raise ValueError(f"eval.alignment.layer must be 'last', 'best' or an integer index as text ('-4'), "
                     f"got {layer!r}.")
  _choice(config, "eval.alignment.pooling", POOLINGS)
  _number(config, "eval.alignment.outlier_quantile", minimum=0, exclusive=True, maximum=1)
  for entry in config.eval.alignment.vision_models:
    if entry != "self":
      _vision_model_entry(entry)
  _choice(config, "eval.probe.judge", JUDGES)
  if config.eval.probe.enabled and config.eval.probe.judge == "llm" and not (config.eval.probe.url
                                                                              and config.eval.probe.model):
    raise ValueError("eval.probe.judge 'llm' needs eval.probe.url (an OpenAI-compatible endpoint) and "
                     "eval.probe.model.")
  _number(config, "eval.max_new_tokens", minimum=0, exclusive=True, integer=True)
  _number(config, "eval.probe.max_new_tokens", minimum=0, exclusive=True, integer=True)
  _number(config, "eval.limit", minimum=0, integer=True)

  _choice(config, "meta.family", FAMILIES)
  for axis in ("data", "fsdp", "tensor"):
    value = _number(config, f"runtime.mesh.{axis}", integer=True, minimum=-1)
    if value == 0:
      raise ValueError(f"runtime.mesh.{axis} must be positive or -1 (the remaining devices), got 0.")
  for path in ("runtime.log_every_steps", "runtime.checkpoint_every_steps", "runtime.eval_batch_size"):
    _number(config, path, minimum=0, exclusive=True, integer=True)


def missing_files(config: ml_collections.ConfigDict) -> list[str]:
  """What a run of `config` needs from disk and lacks: one line per field to set (empty when none)."""
  problems = []
  init_from = _init_from_dir(config)
  if init_from is not None and not (init_from / "config.json").is_file():
    problems.append(f"pretrain.init_from {config.pretrain.init_from!r}: {init_from} holds no config.json.")
  source = _vision_source(config.vision.init_from, "vision.init_from")
  if source is not None and _source_problem(source, config.vision.encoder):
    problems.append(f"vision.init_from {config.vision.init_from!r}: {_source_problem(source, config.vision.encoder)}")
  if config.vision.kind == "checkpoint" and source is None:
    path = config.vision.checkpoint
    if not path:
      problems.append(f"vision.checkpoint is empty: vision.kind 'checkpoint' needs a big_vision-format .npz of "
                      f"{config.vision.encoder!r} (or vision.init_from='hf:DIR' / 'bv:FILE.npz', or "
                      "vision.kind='contrastive' to train one).")
    elif not pathlib.Path(path).expanduser().is_file():
      problems.append(f"vision.checkpoint {path!r} does not exist.")
  if config.adapt.data.kind == "llava":
    for name in ("captions", "instruct", "images"):
      path = config.adapt.data.llava[name]
      if not path:
        problems.append(f"adapt.data.llava.{name} is empty: data kind 'llava' needs it "
                        "(or set adapt.data.kind='generated').")
      elif not pathlib.Path(path).expanduser().exists():
        problems.append(f"adapt.data.llava.{name} {path!r} does not exist.")
  for entry in config.eval.alignment.vision_models if config.eval.alignment.enabled else ():
    if entry != "self":
      encoder, entry_source = _vision_model_entry(entry)
      if _source_problem(entry_source, encoder):
        problems.append(f"eval.alignment.vision_models entry {entry!r}: {_source_problem(entry_source, encoder)}")
  return problems


def _source_problem(source: Any, encoder: str) -> str | None:
  """What keeps a vision weights source from loading as `encoder` (absent files; a Hugging Face checkpoint of
  another architecture), or None. A big_vision file is checked array by array when it is loaded."""
  from visual_priors.models.vision import get_encoder, sources  # pylint: disable=import-outside-toplevel
  if source.problem():
    return source.problem() + "."
  try:
    sources.tower_config(source, get_encoder(encoder))
  except ValueError as error:
    return str(error)
  return None


def _vision_source(text: Any, field: str) -> Any:
  """models.vision.sources.parse_source, imported when a config is checked (VisionSource | None)."""
  from visual_priors.models.vision import sources  # pylint: disable=import-outside-toplevel
  return sources.parse_source(text, field)


def _vision_model_entry(entry: Any) -> tuple[str, Any]:
  """(encoder, VisionSource) of an eval.alignment.vision_models entry other than "self"."""
  from visual_priors.models.vision import sources  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision.registry import ENCODERS  # pylint: disable=import-outside-toplevel
  field = "eval.alignment.vision_models entry"
  encoder, sep, text = str(entry).partition("=")
  if not sep or not text:
    raise ValueError(f"{field} {entry!r}: use 'self' or '<encoder>=<path.npz>', '<encoder>=bv:FILE.npz', "
                     "'<encoder>=hf:DIR'.")
  _named("eval.alignment.vision_models", ENCODERS, encoder, "vision encoder")
  return encoder, sources.parse_source(text, f"{field} {entry!r}:", plain_npz=True)


# ------------------------------------------------------------------------------------------------- metadata


def decoder_params(llm: Any) -> int:
  """Parameters of `Decoder(llm)` (a DecoderConfig) by formula: the embedding, per layer q/k/v/o, the SwiGLU
  MLP and two RMSNorm scales, the final norm, and the output projection unless tied. Equal to
  `scales.count_params` (a test checks), without building the model (seconds for the paper's scales)."""
  d, h = llm.d_model, llm.head_dim
  attention = 2 * d * llm.n_heads * h + 2 * d * llm.n_kv_heads * h
  per_layer = attention + 3 * d * llm.d_ff + 2 * d
  output = 0 if llm.tie_embeddings else d * llm.vocab_size
  return llm.vocab_size * d + llm.n_layers * per_layer + d + output


@functools.lru_cache(maxsize=64)
def _param_count(scale: str, model_overrides: str) -> int:
  from visual_priors.models import scales  # pylint: disable=import-outside-toplevel
  return decoder_params(scales.get_scale(scale, **json.loads(model_overrides)))


def param_count(config: ml_collections.ConfigDict) -> int:
  """LM parameters of the config's scale with its model overrides (CPU scales: their default vocabulary)."""
  overrides = config.pretrain.overrides.get("model", {})
  overrides = overrides.to_dict() if isinstance(overrides, ml_collections.ConfigDict) else dict(overrides)
  return _param_count(config.pretrain.scale, json.dumps(overrides, sort_keys=True))


def mixture_meta(text: str) -> dict[str, Any]:
  """source / category / proportion / reasoning_share / visual_share (fractions) of a mixture spec.

  Source mixtures: the paper's shares (weights x published per-source rates), None when a source has no
  published rate. Category mixtures: the proportions the spec pins ("reasoning", "visual"); the others
  depend on the labelled pool and are None.
  """
  from visual_priors.data import mixtures  # pylint: disable=import-outside-toplevel
  spec = parse_mixture(text)
  meta: dict[str, Any] = {"source": None, "category": None, "proportion": None, "reasoning_share": None,
                          "visual_share": None}
  if isinstance(spec, mixtures.SourceWeights):
    if len(spec.weights) == 1:
      meta["source"] = next(iter(spec.weights))
    try:
      shares = mixtures.mixture_shares(spec)
    except ValueError:
      shares = {}
    meta["reasoning_share"] = None if "reasoning" not in shares else round(shares["reasoning"], 6)
    meta["visual_share"] = None if "visual" not in shares else round(shares["visual"], 6)
  else:
    proportions = dict(spec.proportions)
    if len(proportions) == 1:
      (meta["category"], meta["proportion"]), = proportions.items()
    meta["reasoning_share"] = proportions.get("reasoning")
    meta["visual_share"] = proportions.get("visual")
  return meta


def finalize(config: ml_collections.ConfigDict, *, strict: bool = False) -> ml_collections.ConfigDict:
  """A validated copy of `config` with `meta` filled from its fields (meta.family is kept as given).

  strict=True (what the runner uses) also fails when files the run needs are missing (`missing_files`).
  """
  validate(config)
  if strict:
    problems = missing_files(config)
    if problems:
      raise ValueError(f"Experiment {config.name or '(unnamed)'!r} cannot run yet: " + " ".join(problems))
  config = copy.deepcopy(config)
  derived = {
      "name": config.name, "scale": config.pretrain.scale, "params": param_count(config),
      "tokens": int(config.pretrain.token_budget), "mixture": config.data.mixture,
      **mixture_meta(config.data.mixture),
      "encoder": config.vision.encoder, "sft_variant": sft_variant(config), "blind": bool(config.adapt.blind),
      "seed": int(config.seed),
  }
  meta = ml_collections.ConfigDict({key: None for key in META_KEYS})
  meta.update(derived)
  meta.family = config.meta.family
  config.meta = meta
  return config


# --------------------------------------------------------------------------------------------- run identity


@dataclasses.dataclass(frozen=True)
class StageIdentity:
  """One stage of a run: its key, the result-changing fields the key hashes, and the stages it consumes."""

  stage: str
  key: str
  fields: dict[str, Any]
  upstream: tuple[str, ...]


def canonical(value: Any) -> Any:
  """`value` as plain JSON data with floats normalised (integral floats -> int, 12 significant digits)."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, bool) or value is None or isinstance(value, str):
    return value
  if isinstance(value, int):
    return int(value)
  if isinstance(value, float):
    if not math.isfinite(value):
      raise ValueError(f"Cannot hash the non-finite number {value!r}.")
    if value.is_integer() and abs(value) < 2 ** 63:
      return int(value)
    return float(f"{value:.12g}")
  if isinstance(value, Mapping):
    return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda item: str(item[0]))}
  if isinstance(value, (list, tuple)):
    return [canonical(v) for v in value]
  if isinstance(value, pathlib.PurePath):
    return str(value)
  raise TypeError(f"Cannot hash a {type(value).__name__} ({value!r}) in an experiment config.")


def fingerprint(fields: Mapping[str, Any]) -> str:
  """sha256 (first KEY_LENGTH hex digits) of the canonical JSON of `fields`."""
  text = json.dumps(canonical(fields), sort_keys=True, separators=(",", ":"), allow_nan=False)
  return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def canonical_mixture(text: str) -> dict[str, Any]:
  """The parsed mixture as data: {"sources": {name: weight}} or {"categories": {name: fraction}}."""
  from visual_priors.data import mixtures  # pylint: disable=import-outside-toplevel
  spec = parse_mixture(text)
  if isinstance(spec, mixtures.SourceWeights):
    return {"sources": {s: round(w, 9) for s, w in spec.weights.items()}}
  return {"categories": {c: round(float(p), 9) for c, p in spec.proportions.items()}}


_STORE_DIR = re.compile(r"L\d+-[0-9a-f]{12}")  # segments.store_dir's content-addressed name


def _store_identity(store: str) -> str:
  """data.store as a key sees it: a content-addressed store directory by its name, anything else as given."""
  name = pathlib.PurePath(store).name
  return name if _STORE_DIR.fullmatch(name) else store


def _init_from_dir(config: ml_collections.ConfigDict) -> pathlib.Path | None:
  from visual_priors.train.hf_import import parse_init_from  # pylint: disable=import-outside-toplevel
  return parse_init_from(config.pretrain.get("init_from", ""))


def _init_from_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """pretrain.init_from as a key sees it: nothing when unset (keys stay as before the field existed), else the
  checkpoint's content hash (its path when the directory is not on this machine, which `finalize(strict=True)`
  refuses to run)."""
  directory = _init_from_dir(config)
  if directory is None:
    return {}
  from visual_priors.train import hf_import  # pylint: disable=import-outside-toplevel
  if not (directory / "config.json").is_file():
    return {"init_from": {"hf": None, "missing": str(directory)}}
  return {"init_from": {"hf": hf_import.content_sha256(directory)}}


def _source_identity(source: Any) -> dict[str, Any]:
  """A vision weights source as a key sees it: {kind: content hash}, or its path when it is not on this machine
  (which `finalize(strict=True)` refuses to run)."""
  from visual_priors.models.vision import sources  # pylint: disable=import-outside-toplevel
  from visual_priors.train import hf_import  # pylint: disable=import-outside-toplevel
  if source.problem():
    return {source.kind: None, "missing": str(source.path)}
  return {source.kind: sources.content_sha256(source, hf_import.memoised_sha256)}


def _vision_init_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """vision.init_from as a key sees it: nothing when unset (keys stay as before the field existed)."""
  source = _vision_source(config.vision.get("init_from", ""), "vision.init_from")
  return {} if source is None else {"init_from": _source_identity(source)}


def _eval_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The eval fields as a key sees them: eval.alignment.outlier_quantile left out at 1.0 (none), and vision
  models given as "bv:" / "hf:" sources by their content (a plain .npz path stays the string it was)."""
  fields = config.eval.to_dict()
  alignment = fields["alignment"]
  if alignment.get("outlier_quantile", 1.0) == 1.0:
    alignment.pop("outlier_quantile", None)
  models = []
  for entry in alignment["vision_models"]:
    encoder, _, text = str(entry).partition("=")
    if entry != "self" and text.startswith(("bv:", "hf:")):
      entry = {"encoder": encoder, **_source_identity(_vision_model_entry(entry)[1])}
    models.append(entry)
  alignment["vision_models"] = models
  return fields


def _stage_fields(config: ml_collections.ConfigDict) -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
  """Each stage's own result-changing fields and upstream stages, in execution order."""
  pretrain = config.pretrain.to_dict()
  pretrain.pop("init_from", None)
  if pretrain["token_budget"] == 0:  # An untrained LM: only the architecture, vocabulary and seed matter.
    pretrain_fields = {"seed": config.seed, "store": _store_identity(config.data.store), "scale": pretrain["scale"],
                       "token_budget": 0, "model": pretrain["overrides"].get("model", {}),
                       **_init_from_identity(config)}
  else:
    pretrain_fields = {"seed": config.seed, "store": _store_identity(config.data.store),
                       "mixture": canonical_mixture(config.data.mixture), **pretrain, **_init_from_identity(config)}
  data = config.adapt.data
  mmdata_fields = {"kind": data.kind, data.kind: data[data.kind].to_dict()}
  # Generated data: fields at their defaults leave the key as it was before they existed; the generator's version
  # always enters it (the same settings give other data when the generator changes).
  if data.kind == "generated":
    generated = mmdata_fields["generated"]
    if not generated.get("tasks"):
      generated.pop("tasks", None)
    if generated.get("mc_answer") == "letter":
      generated.pop("mc_answer")
    if generated.get("n_mle_per_level") is None:
      generated.pop("n_mle_per_level", None)
    from visual_priors.data.multimodal.generate import GENERATOR_VERSION  # pylint: disable=import-outside-toplevel
    generated["generator_version"] = GENERATOR_VERSION
  vision = {"kind": config.vision.kind, "encoder": config.vision.encoder, **_vision_init_identity(config)}
  if config.vision.kind == "checkpoint":
    vision["checkpoint"] = config.vision.checkpoint
    vision_upstream: tuple[str, ...] = ()
  else:
    vision["contrastive"] = config.vision.contrastive.to_dict()
    vision["seed"] = config.seed
    vision_upstream = ("mmdata",)
  sft_fields = {"sft": config.adapt.sft.to_dict(), "sft_data": sft_variant(config)}
  labeller = config.adapt.sft_data.labeller
  if sft_fields["sft_data"] != "full" and labeller.kind == "endpoint":  # the rule labeller leaves keys as they were
    sft_fields["labeller"] = {"model": labeller.model, "send_images": labeller.send_images}
  stages = {
      "pretrain": (pretrain_fields, ()),
      "mmdata": (mmdata_fields, ()),
      "vision": (vision, vision_upstream),
      "align": ({"align": config.adapt.align.to_dict(), "seed": config.seed,
                 **({} if config.adapt.system_prompt == "llava-v1" else {"system_prompt": config.adapt.system_prompt})},
                ("pretrain", "vision", "mmdata")),
  }
  if config.adapt.blind:
    stages["blind"] = ({"blind": True, **sft_fields}, ("align",))
  stages["sft"] = (sft_fields, ("blind",) if config.adapt.blind else ("align",))
  stages["eval"] = (_eval_identity(config), ("sft", "pretrain") if config.eval.language else ("sft",))
  return stages


def stage_identities(config: ml_collections.ConfigDict) -> dict[str, StageIdentity]:
  """The stages `config` runs, in execution order, each with its key (see the module docstring)."""
  validate(config)
  identities: dict[str, StageIdentity] = {}
  for stage, (fields, upstream) in _stage_fields(config).items():
    hashed = {"stage": stage, "fields": fields, "upstream": {name: identities[name].key for name in upstream}}
    identities[stage] = StageIdentity(stage=stage, key=fingerprint(hashed), fields=canonical(fields),
                                      upstream=upstream)
  return identities


def slug(name: str) -> str:
  """A file-name-safe form of an experiment name: "mix/mix6" -> "mix-mix6" ("run" when empty)."""
  text = re.sub(r"[^a-z0-9._]+", "-", name.lower()).strip("-.")
  return text or "run"


def run_id(config: ml_collections.ConfigDict) -> str:
  """f"{slug(name)}-{eval stage key}": the run's directory name under <root>/runs/."""
  return f"{slug(config.name)}-{stage_identities(config)['eval'].key}"


# -------------------------------------------------------------------------- overrides and experiment args


def set_field(config: ml_collections.ConfigDict, path: str, value: Any) -> None:
  """Sets a dotted path of an experiment config (`names.set_key`); under pretrain.overrides new keys may be
  created."""
  set_key(config, path, value, _OPEN_KEYS)


def apply_overrides(config: ml_collections.ConfigDict, assignments: Sequence[str]) -> ml_collections.ConfigDict:
  """A copy of `config` with the CLI's --set "key=value" assignments applied (`names.apply_assignments`)."""
  return apply_assignments(config, assignments, _OPEN_KEYS)


def parse_arg(arg: str | None, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """A big_vision-style experiment argument: "key=value,key2=value2"; a bare word means word=True
  ("local" == "local=True"). Keys must be in `defaults` (when given), whose values set the types."""
  result = dict(defaults or {})
  for item in filter(None, (part.strip() for part in (arg or "").split(","))):
    key, sep, text = item.partition("=")
    key = key.strip()
    value = parse_value(text.strip()) if sep else True
    if defaults is not None:
      if key not in defaults:
        near = closest(key, defaults)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise ValueError(f"Unknown experiment argument {key!r} in {arg!r}.{hint} "
                         f"Arguments: {', '.join(defaults)}.")
      old = defaults[key]
      if isinstance(old, str) and not isinstance(value, str):
        value = text.strip()
      elif isinstance(old, bool) and not isinstance(value, bool):
        raise ValueError(f"Experiment argument {key!r} is a switch: give True/False, got {text!r}.")
    result[key] = value
  return result


# --------------------------------------------------------------------------------- the local (nano) recipe

# What finishes in about two minutes per experiment on two CPU cores (the demo's settings; tests/train/
# test_stages.py's tiny chain is the reference for the adaptation sizes): the nano LM on a few hundred
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
  mixture, SFT-data variant and blind switch: the `local` / `tiny` switch of every experiment file."""
  config = copy.deepcopy(config)
  for path, value in {**LOCAL_SETTINGS, **(settings or {})}.items():
    set_field(config, path, value)
  return config
