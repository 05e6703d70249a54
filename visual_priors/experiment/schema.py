"""The experiment schema (ml_collections): defaults, validation, derived metadata, and --set overrides.

An experiment is one `base_config()` with some fields changed (experiments/<file>.py builds them). Which of its
fields enter which stage's key is each stage module's business (`graph` lists them); name, description, meta
and runtime never enter a key.

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
import json
import math
import pathlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from visual_priors.data.multimodal.chat import SYSTEM_PROMPTS
from visual_priors.data.multimodal.gen_questions import MC_ANSWERS, TASKS
from visual_priors.data.multimodal.gen_text_only import TEXT_ONLY_EVERY
from visual_priors.eval import benchmarks as benchmark_registry
from visual_priors.names import closest, lookup, unknown_keys
from visual_priors.overrides import apply_assignments, coerce_value, dotted_paths, get_key, is_mapping, set_key
from visual_priors.train.recipes import BATCH_SIZE, EPOCHS, NUM_VISUAL_TOKENS, PROJECTOR, RECIPES

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


def _dict(**fields: Any) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(fields)


def base_config() -> ml_collections.ConfigDict:
  """The schema with its defaults: the paper's where it states them (docs/paper.md, sections 1, 4, 5)."""
  config = ml_collections.ConfigDict()
  config.name = ""
  config.description = ""
  config.seed = 42
  # mixture: a paper mix, "NAME=W,...", "cat:CATEGORY=P" (data/mixtures.py) or "seqio:NAME", a registered seqio
  # Task or Mixture (data/tasks.py); seqio_modules: modules imported first, which register a user's tasks.
  config.data = _dict(store="latest", mixture="web-crawl=1", seqio_modules=[])
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
                      n_mle_per_level=None, objects="auto", tasks="", mc_answer="letter",
                      text_only_every=TEXT_ONLY_EVERY),
      llava=_dict(captions="", instruct="", images=""))
  # The adaptation recipes' defaults (train/recipes.py: one place for the library's stage configs and these).
  for stage in ("align", "sft"):
    recipe = RECIPES[stage]
    config.adapt[stage] = _dict(epochs=EPOCHS, steps=0, batch_size=BATCH_SIZE, peak_lr=recipe.peak_lr,
                                warmup_fraction=recipe.warmup_fraction, seq_len=recipe.seq_len)
  # Which MLLM parameters sft trains: a regex over parameter paths ("img/", "proj/", "llm/..."); the recipe's
  # default (projector and LM, the tower frozen, as LLaVA-1.5) is left out of the sft key.
  config.adapt.sft.trainable = RECIPES["sft"].trainable
  config.adapt.align.projector = PROJECTOR
  config.adapt.align.num_visual_tokens = NUM_VISUAL_TOKENS
  # The tower's hidden state that feeds the projector (Hugging Face's hidden_states index, LLaVA's
  # mm_vision_select_layer); None: the registered encoder's own choice. Left out of the align key when None.
  config.adapt.align.feature_layer = None
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


def parse_mixture(text: str, seqio_modules: Sequence[str] = ()) -> Any:
  """data/mixtures.parse_spec, with errors that name the field; "seqio:NAME" is returned as it is, once the modules
  that register tasks are imported (the pretrain stage's key resolves the name: `tasks.mixture_identity`)."""
  from visual_priors.data import mixtures, tasks  # pylint: disable=import-outside-toplevel
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"data.mixture must be a mixture spec string (e.g. 'mix6', 'code=0.5,web-crawl=0.5', "
                     f"'cat:reasoning=0.75', 'seqio:TASK'), got {text!r}.")
  try:
    if tasks.is_seqio(text):
      tasks.import_modules(seqio_modules)
      return text.strip()
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
    raise ValueError(f"Config lacks key(s) {missing}; start from visual_priors.experiment.schema.base_config().")
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
  if not (isinstance(config.data.seqio_modules, (list, tuple))
          and all(isinstance(m, str) and m for m in config.data.seqio_modules)):
    raise ValueError(f"data.seqio_modules must be a list of module names, got {config.data.seqio_modules!r}.")
  parse_mixture(config.data.mixture, config.data.seqio_modules)

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
  if vision_source(config.vision.init_from, "vision.init_from") and config.vision.checkpoint:
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
  _number(config, "adapt.data.generated.text_only_every", minimum=0, integer=True)
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
  try:
    re.compile(config.adapt.sft.trainable)
  except (re.error, TypeError) as error:
    raise ValueError(f"adapt.sft.trainable must be a regex over parameter paths (e.g. '(img|proj|llm)/.*'), got "
                     f"{config.adapt.sft.trainable!r}: {error}") from None
  _choice(config, "adapt.align.projector", PROJECTOR_TYPES)
  _number(config, "adapt.align.num_visual_tokens", minimum=0, exclusive=True, integer=True)
  if config.adapt.align.feature_layer is not None:
    from visual_priors.models.vision import get_encoder  # pylint: disable=import-outside-toplevel
    depth = get_encoder(config.vision.encoder).depth
    _number(config, "adapt.align.feature_layer", minimum=-(depth + 1), maximum=depth, integer=True)
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
      vision_model_entry(entry)
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
  init_from = init_from_dir(config)
  if init_from is not None and not (init_from / "config.json").is_file():
    problems.append(f"pretrain.init_from {config.pretrain.init_from!r}: {init_from} holds no config.json.")
  source = vision_source(config.vision.init_from, "vision.init_from")
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
      encoder, entry_source = vision_model_entry(entry)
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


def vision_source(text: Any, field: str) -> Any:
  """models.vision.sources.parse_source, imported when a config is checked (VisionSource | None)."""
  from visual_priors.models.vision import sources  # pylint: disable=import-outside-toplevel
  return sources.parse_source(text, field)


def vision_model_entry(entry: Any) -> tuple[str, Any]:
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


def init_from_dir(config: ml_collections.ConfigDict) -> pathlib.Path | None:
  """The Hugging Face directory of pretrain.init_from ("hf:DIR"), or None."""
  from visual_priors.train.hf_import import parse_init_from  # pylint: disable=import-outside-toplevel
  return parse_init_from(config.pretrain.get("init_from", ""))


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


def decoder_config(config: ml_collections.ConfigDict) -> Any:
  """The DecoderConfig of the experiment's LM: its scale with pretrain.overrides.model applied (CPU scales: their
  default vocabulary)."""
  overrides = config.pretrain.overrides.get("model", {})
  overrides = overrides.to_dict() if isinstance(overrides, ml_collections.ConfigDict) else dict(overrides)
  return _decoder_config(config.pretrain.scale, json.dumps(overrides, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _decoder_config(scale: str, model_overrides: str) -> Any:
  from visual_priors.models import scales  # pylint: disable=import-outside-toplevel
  return scales.get_scale(scale, **json.loads(model_overrides))


def param_count(config: ml_collections.ConfigDict) -> int:
  """LM parameters of the config's scale with its model overrides."""
  return decoder_params(decoder_config(config))


def mixture_meta(text: str) -> dict[str, Any]:
  """source / category / proportion / reasoning_share / visual_share (fractions) of a mixture spec.

  Source mixtures: the paper's shares (weights x published per-source rates), None when a source has no
  published rate. Category mixtures: the proportions the spec pins ("reasoning", "visual"); the others
  depend on the labelled pool and are None.
  """
  from visual_priors.data import mixtures, tasks  # pylint: disable=import-outside-toplevel
  meta: dict[str, Any] = {"source": None, "category": None, "proportion": None, "reasoning_share": None,
                          "visual_share": None}
  if tasks.is_seqio(text):  # a seqio Task or Mixture: its shares are whatever its data holds
    return meta
  spec = parse_mixture(text)
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


# ---------------------------------------------------------------------------------------------------- overrides


def set_field(config: ml_collections.ConfigDict, path: str, value: Any) -> None:
  """Sets a dotted path of an experiment config (`names.set_key`); under pretrain.overrides new keys may be
  created."""
  set_key(config, path, value, _OPEN_KEYS)


def apply_overrides(config: ml_collections.ConfigDict, assignments: Sequence[str]) -> ml_collections.ConfigDict:
  """A copy of `config` with the CLI's --set "key=value" assignments applied (`names.apply_assignments`)."""
  return apply_assignments(config, assignments, _OPEN_KEYS)
