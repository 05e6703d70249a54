"""The adaptation stages as configs of the one trainer: contrastive, align, sft, blind; their manifests.

  stage        model     trains          starts from (config.upstream)                  defaults
  contrastive  TwoTower  everything      nothing: both towers from scratch, or the      LR 1e-3, 5% warm-up, wd 1e-4
                                         image tower from vision.init_from
  align        MLLM      proj/.*         lm: a pretrain run; vision: a contrastive run, LR 1e-3, 6% warm-up
                                         a big_vision .npz ("FILE.npz" or "bv:FILE.npz")
                                         or a Hugging Face directory ("hf:DIR"), the
                                         latter two of config.vision.encoder's shape
  sft          MLLM      (proj|llm)/.*   init: an align run (or a blind run)            LR 4e-5, 3% warm-up
  blind        MLLM      llm/.*          init: an align run; text-only batches          LR 4e-5, 3% warm-up
All stages: AdamW, cosine decay, 1 epoch (`config.epochs`), global batch 512 (docs/paper.md, section 4).
The "blind" recipe is two runs: `blind` (the instruction data with images withheld), then `sft` with
`upstream.init` = the blind run. align/sft/blind follow LLaVA's and Cambrian-1's training scripts where
the paper is silent: no weight decay, Adam betas (0.9, 0.999), cosine to 0, gradient clipping at 1.0.

A stage config is `{stage, train, epochs, warmup_fraction, upstream, ...}`: `train` is the trainer's
own config (`visual_priors.train.config`, without `scale`: the model comes from upstream), and the run
length is `epochs` over the data's `num_examples` (unless `train.num_steps` is set), with
`warmup_fraction` of those steps warming up. The MLLM's vision tower drops the pooling head (pool
"map"/"gap" become "none"; the patch tokens are what the MLLM reads). `train.compute_dtype` sets the
compute dtype of every tower; `train.remat` and `train.model` apply to the LM. A tower read from a checkpoint
(`models/vision/sources.py`: "hf:DIR", "bv:FILE.npz") is the registered encoder `vision.encoder` checked
against it; the contrastive stage's `vision.init_from` fills its image tower (not the image head, which
starts random), and whether a stage trains the tower is its `train.trainable` / `train.frozen` regex as ever.

Each finished stage writes `<work_dir>/manifest.json`: the config, the model, and every upstream it
started from (directory, manifest path and its sha256, checkpoint step; or a weights file and its
sha256), plus the upstream's own upstreams as `lineage`.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
from flax import nnx

from visual_priors.data import cache, vocab as vocab_lib
from visual_priors.data.multimodal import chat
from visual_priors.models import flops
from visual_priors.models.decoder import DecoderConfig
from visual_priors.models.mllm import MLLM, MLLMConfig, feature_extractor
from visual_priors.models.vision import TextConfig, TwoTower, ViTConfig, contrastive_loss, get_encoder
from visual_priors.models.vision import flops as vision_flops
from visual_priors.models.vision import sources
from visual_priors.names import lookup, unknown_keys
from visual_priors.train import config as config_lib, multimodal_step, partition, pretrain, step as step_lib
from visual_priors.train import stage_data, trainer
from visual_priors.train.recipes import BATCH_SIZE, EPOCHS, NUM_VISUAL_TOKENS, PROJECTOR, RECIPES
from visual_priors.train import upstream as upstream_lib
from visual_priors.train.state import TrainState

MANIFEST = upstream_lib.MANIFEST


# Which runs each stage's `upstream.init` may name.
_INIT_STAGES = {"sft": ("align", "blind"), "blind": ("align",)}
# Subtrees whose keys are free-form (checked when the model is built).
OPEN_KEYS = ("train.model",)


def stage_config(stage: str) -> ml_collections.ConfigDict:
  """The stage's config with its defaults; set `train.work_dir` and `upstream.*` before running."""
  recipe = lookup(RECIPES, stage, "stage")
  train = config_lib.default_config()
  del train["scale"]
  train.batch_size = BATCH_SIZE
  train.seq_len = recipe.seq_len
  train.num_steps = 0  # 0: `epochs` over the data decide
  train.token_budget = 0
  train.trainable = recipe.trainable
  train.optimizer.peak_lr = recipe.peak_lr
  train.optimizer.weight_decay = recipe.weight_decay
  train.optimizer.b2 = recipe.b2
  train.optimizer.final_lr_fraction = 0.0
  config = ml_collections.ConfigDict()
  config.stage = stage
  config.train = train
  config.epochs = EPOCHS
  config.warmup_fraction = recipe.warmup_fraction
  config.upstream = ml_collections.ConfigDict({name: "" for name in recipe.upstream})
  if stage in ("contrastive", "align"):
    # contrastive: the image tower to train; align: the architecture of an upstream .npz.
    config.vision = ml_collections.ConfigDict({"encoder": "siglip-b16-224"})
  if stage == "contrastive":  # "" | "hf:DIR" | "bv:FILE.npz": the image tower's starting weights
    config.vision.init_from = ""
  if stage == "align":  # which hidden state feeds the projector (ViTConfig.feature_layer); None: the tower's own
    config.vision.feature_layer = None
  if stage == "contrastive":  # the text tower takes the image tower's shape, both embed at its width
    config.vocab_size = 0  # the caption vocabulary's size (set from the data)
  if stage == "align":
    config.mllm = ml_collections.ConfigDict({"projector": PROJECTOR, "num_visual_tokens": NUM_VISUAL_TOKENS,
                                             "resample": "bilinear"})
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first problem of a stage config (before anything is built)."""
  stage = config.get("stage")
  lookup(RECIPES, stage, "stage")
  unknown = unknown_keys(config, stage_config(stage), OPEN_KEYS)
  if unknown:
    raise ValueError(f"Unknown {stage} config keys {unknown}; valid keys: {', '.join(stage_config(stage))}.")
  for name, value in config.upstream.items():
    if not value:
      raise ValueError(f"The {stage} stage needs config.upstream.{name} (see visual_priors.train.adaptation).")
  if not config.epochs > 0 and config.train.num_steps <= 0:
    raise ValueError(f"epochs must be > 0 (or set train.num_steps), got {config.epochs}.")
  if not 0 <= config.warmup_fraction < 1:
    raise ValueError(f"warmup_fraction must be in [0, 1), got {config.warmup_fraction}.")
  if stage == "contrastive":
    sources.parse_source(config.vision.get("init_from", ""), "vision.init_from")
  if stage == "align" and config.upstream.vision:
    vision_upstream(config.upstream.vision)


def trainer_config(config: ml_collections.ConfigDict, num_examples: int) -> ml_collections.ConfigDict:
  """The trainer's config of this stage: steps for `epochs` over `num_examples` (rounded up), warm-up."""
  train = copy.deepcopy(config.train)
  if train.num_steps <= 0:
    if num_examples <= 0:
      raise ValueError(f"The {config.stage} data holds no examples; check its input files.")
    train.num_steps = config_lib.steps_for(config.epochs * num_examples, train.batch_size)
  train.token_budget = 0
  train.optimizer.warmup_steps = int(config.warmup_fraction * train.num_steps)
  return train


@dataclasses.dataclass(frozen=True)
class StagePlan:
  """What one stage hands the trainer, and what its manifest records of the model and upstreams."""

  model_factory: Callable[[nnx.Rngs], nnx.Module]
  loss_fn: step_lib.LossFn
  features: tuple[str, ...]
  initialize: Callable[[TrainState], dict[str, Any]] | None  # abstract state -> upstream variables by path
  model: dict[str, Any]
  upstream: list[dict[str, Any]]
  lineage: list[dict[str, Any]]
  flops_per_step: float


def _tower_dtype(config: ml_collections.ConfigDict, dtype: str) -> str:
  return config.train.compute_dtype or dtype


def _llm_config(config: ml_collections.ConfigDict, fields: Mapping[str, Any]) -> DecoderConfig:
  overrides = {"dtype": config.train.compute_dtype, "remat": config.train.remat}
  overrides = {name: value for name, value in overrides.items() if value is not None}
  return DecoderConfig(**{**fields, **overrides, **config.train.model})


def vision_upstream(value: str) -> sources.VisionSource | None:
  """The align stage's `upstream.vision` as a weights source ("hf:DIR", "bv:FILE.npz" or a path ending in .npz),
  or None for a contrastive run directory."""
  if value.startswith(tuple(f"{kind}:" for kind in sources.KINDS)) or pathlib.Path(value).suffix == ".npz":
    return sources.parse_source(value, "upstream.vision", plain_npz=True)
  return None


def _source_record(source: sources.VisionSource, role: str, encoder: str) -> dict[str, Any]:
  """The manifest record of a vision weights source: a .npz as `upstream.file_record`, a directory by content."""
  if source.kind == "bv":
    return {**upstream_lib.file_record(source.path, role), "encoder": encoder}
  return {"role": role, **sources.describe(source), "encoder": encoder}


def _contrastive_plan(config: ml_collections.ConfigDict) -> StagePlan:
  vision = get_encoder(config.vision.encoder)
  source = sources.parse_source(config.vision.get("init_from", ""), "vision.init_from")
  if source is not None:
    vision = sources.tower_config(source, vision)
  vision = dataclasses.replace(vision, dtype=_tower_dtype(config, vision.dtype))
  if config.vocab_size <= 0:
    raise ValueError("Set config.vocab_size to the caption vocabulary's size (the text tower's embedding rows).")
  embed_dim = vision.width
  text = TextConfig(vocab_size=config.vocab_size, width=vision.width, depth=vision.depth, mlp_dim=vision.mlp_dim,
                    num_heads=vision.num_heads, max_len=config.train.seq_len, dtype=vision.dtype)

  def model_factory(rngs: nnx.Rngs) -> TwoTower:
    return TwoTower(vision, text, embed_dim, rngs=rngs)

  towers = nnx.eval_shape(lambda: model_factory(nnx.Rngs(0)))  # the towers' configs as built (with heads)
  image_tower, text_tower = towers.img.config, towers.txt.config
  pair_flops = (vision_flops.forward_flops_per_image(image_tower)
                + flops.text_tower_forward_flops(text_tower, config.train.seq_len))
  initialize, upstream = None, []
  if source is not None:
    def initialize(state: TrainState) -> dict[str, Any]:
      del state  # the image tower's parameters but its head (the TwoTower's own, random)
      return sources.tower_parameters(source, dataclasses.replace(image_tower, num_classes=0), "img/")

    upstream = [_source_record(source, "vision", config.vision.encoder)]
  return StagePlan(
      model_factory=model_factory, loss_fn=contrastive_loss, features=multimodal_step.CAPTION_FEATURES,
      initialize=initialize,
      model={"vision": dataclasses.asdict(image_tower), "text": dataclasses.asdict(text_tower), "embed_dim": embed_dim},
      upstream=upstream, lineage=[], flops_per_step=3 * config.train.batch_size * pair_flops)


def trained_parts(mllm: MLLMConfig, trainable: str, frozen: str = "") -> set[str]:
  """The MLLM parts ("img", "proj", "llm") with at least one parameter the regexes train."""
  abstract = nnx.eval_shape(lambda: MLLM(mllm, rngs=nnx.Rngs(0)))
  paths = partition.flatten_paths(nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))
  train_regex = re.compile(trainable)
  frozen_regex = re.compile(frozen) if frozen else None
  return {path.split("/")[0] for path in paths
          if train_regex.fullmatch(path) and not (frozen_regex and frozen_regex.fullmatch(path))}


def _mllm_plan(config: ml_collections.ConfigDict, mllm: MLLMConfig,
               initialize: Callable[[TrainState], dict[str, Any]],
               upstream: list[dict[str, Any]], lineage: list[dict[str, Any]]) -> StagePlan:
  def model_factory(rngs: nnx.Rngs) -> MLLM:
    return MLLM(mllm, rngs=rngs)

  batch, seq_len = config.train.batch_size, config.train.seq_len
  if config.stage == "blind":  # text-only: neither the encoder nor the projector runs
    features = multimodal_step.TEXT_ONLY_FEATURES
    step_flops = 3 * batch * seq_len * flops.forward_flops_per_token(mllm.llm, seq_len)
  else:
    features = multimodal_step.MLLM_FEATURES
    step_flops = flops.mllm_train_flops_per_step(
        mllm, batch_size=batch, seq_len=seq_len,
        trained=trained_parts(mllm, config.train.trainable, config.train.frozen))
  return StagePlan(
      model_factory=model_factory, loss_fn=multimodal_step.mllm_loss, features=features, initialize=initialize,
      model={"mllm": mllm.to_dict()}, upstream=upstream, lineage=lineage, flops_per_step=step_flops)


def _align_plan(config: ml_collections.ConfigDict) -> StagePlan:
  lm_run = upstream_lib.read_run(config.upstream.lm, "lm", ("pretrain",))
  llm = _llm_config(config, lm_run.manifest["model"])
  source = vision_upstream(config.upstream.vision)
  vision_run = None
  if source is not None:
    vision = sources.tower_config(source, get_encoder(config.vision.encoder))
    vision_record = _source_record(source, "vision", config.vision.encoder)
  else:
    vision_run = upstream_lib.read_run(config.upstream.vision, "vision", ("contrastive",))
    vision = ViTConfig(**vision_run.manifest["model"]["vision"])
    vision_record = vision_run.record
  vision = feature_extractor(dataclasses.replace(vision, dtype=_tower_dtype(config, vision.dtype)))
  if config.vision.get("feature_layer") is not None:
    vision = dataclasses.replace(vision, feature_layer=int(config.vision.feature_layer))
  mllm = MLLMConfig(vision=vision, llm=llm, **config.mllm)

  def initialize(state: TrainState) -> dict[str, Any]:
    values = upstream_lib.restore_parameters(lm_run, upstream_lib.targets_under(state, ["llm/"]), {"llm/": ""})
    if vision_run is not None:
      values.update(upstream_lib.restore_parameters(vision_run, upstream_lib.targets_under(state, ["img/"]),
                                                    {"img/": "img/"}))
    else:
      values.update(sources.tower_parameters(source, vision, "img/"))
    return values

  lineage = [record for run in (lm_run, vision_run) if run is not None
             for record in run.manifest.get("upstream", []) + run.manifest.get("lineage", [])]
  return _mllm_plan(config, mllm, initialize, [lm_run.record, vision_record], lineage)


def _init_plan(config: ml_collections.ConfigDict) -> StagePlan:
  init_run = upstream_lib.read_run(config.upstream.init, "init", _INIT_STAGES[config.stage])
  fields = init_run.manifest["model"]["mllm"]
  mllm = MLLMConfig.from_dict(fields)
  vision = dataclasses.replace(mllm.vision, dtype=_tower_dtype(config, mllm.vision.dtype))
  mllm = dataclasses.replace(mllm, vision=vision, llm=_llm_config(config, fields["llm"]))

  def initialize(state: TrainState) -> dict[str, Any]:
    return upstream_lib.restore_parameters(init_run, upstream_lib.targets_under(state, [""]), {"": ""})

  lineage = init_run.manifest.get("upstream", []) + init_run.manifest.get("lineage", [])
  return _mllm_plan(config, mllm, initialize, [init_run.record], lineage)


_PLANS: dict[str, Callable[[ml_collections.ConfigDict], StagePlan]] = {
    "contrastive": _contrastive_plan, "align": _align_plan, "sft": _init_plan, "blind": _init_plan,
}


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a stage's input pipeline must produce, read from the config and the upstream manifests."""

  image_size: int
  num_visual_tokens: int  # image slots per image; 0 for contrastive (caption batches)
  vocab: str | None  # the upstream's SentencePiece model, when its manifest names one
  vocab_sha256: str | None
  system_prompt: str | None  # the chat template's system prompt of the upstream stage, if any


def data_spec(config: ml_collections.ConfigDict) -> DataSpec:
  """Image size, visual-token count and the upstream's vocabulary and chat settings for the stage's data."""
  validate(config)
  if config.stage == "contrastive":
    vision = get_encoder(config.vision.encoder)
    return DataSpec(vision.image_size, 0, None, None, None)
  if config.stage == "align":
    lm = upstream_lib.read_run(config.upstream.lm, "lm", ("pretrain",))
    source = vision_upstream(config.upstream.vision)
    if source is not None:
      vision = sources.tower_config(source, get_encoder(config.vision.encoder))
    else:
      vision_run = upstream_lib.read_run(config.upstream.vision, "vision", ("contrastive",))
      vision = ViTConfig(**vision_run.manifest["model"]["vision"])
    vocab, sha = upstream_lib.recorded_vocabulary(lm.manifest)
    return DataSpec(vision.image_size, config.mllm.num_visual_tokens, vocab, sha, None)
  init = upstream_lib.read_run(config.upstream.init, "init", _INIT_STAGES[config.stage])
  mllm = init.manifest["model"]["mllm"]
  vocab, sha = upstream_lib.recorded_vocabulary(init.manifest)
  chat_settings = init.manifest.get("data", {}).get("chat", {})
  return DataSpec(mllm["vision"]["image_size"], mllm["num_visual_tokens"], vocab, sha,
                  chat_settings.get("system_prompt"))


class _TextOnlyIterator:
  """Passes batches through, refusing any that carries an image (the blind stage withholds them)."""

  def __init__(self, iterator: trainer.DataIterator):
    self._iterator = iterator

  def __next__(self) -> trainer.HostBatch:
    batch = next(self._iterator)
    for name in ("has_image", "decoder_image_mask"):
      if name in batch and batch[name].any():
        raise ValueError(f"The blind stage got a batch with images ({name} is set); build its data with the "
                         "images withheld (MultimodalConfig(text_only=True)).")
    return batch

  def get_state(self) -> Any:
    return self._iterator.get_state()

  def set_state(self, state: Any) -> None:
    self._iterator.set_state(state)


def run_stage(config: ml_collections.ConfigDict, *, train_data: Callable[[], trainer.DataIterator],
              num_examples: int, eval_sets: trainer.EvalSets | None = None,
              data_identity: Mapping[str, Any] | None = None, on_step: Callable[[int], None] | None = None,
              devices: Sequence[jax.Device] | None = None,
              mesh: jax.sharding.Mesh | None = None) -> trainer.TrainResult:
  """Trains the stage and writes `<train.work_dir>/manifest.json` once its final step is saved.

  `train_data()` returns this host's iterator of batches with the stage's features (caption batches
  for contrastive, instruction batches for align/sft, text-only instruction batches for blind);
  `num_examples` is the size of one epoch; `data_identity` (files, vocabulary, hashes) goes into the
  manifest. The mesh is `mesh` (the run's) when given, else train.mesh over `devices` (default: all).
  """
  validate(config)
  plan = _PLANS[config.stage](config)
  train = trainer_config(config, num_examples)
  make_data = (lambda: _TextOnlyIterator(train_data())) if config.stage == "blind" else train_data
  result = trainer.train(
      train, model_factory=plan.model_factory, loss_fn=plan.loss_fn, train_data=make_data,
      features=plan.features, eval_sets=eval_sets,
      flops_per_token=plan.flops_per_step / (train.batch_size * train.seq_len), on_step=on_step,
      devices=devices, mesh=mesh, initialize=plan.initialize, stage=config.stage)
  if jax.process_index() == 0:
    manifest = {
        "stage": config.stage,
        "config": config.to_dict(),
        "config_sha256": cache.sha256_json(config.to_dict()),
        "model": plan.model,
        "upstream": plan.upstream,
        "lineage": plan.lineage,
        "parameters": result.trainable_params + result.frozen_params,
        "trainable_parameters": result.trainable_params,
        "step": result.step,
        "num_steps": train.num_steps,
        "examples_seen": result.step * train.batch_size,
        "epoch_examples": num_examples,
        "checkpoint_dir": str(result.checkpoint_dir),
        "final_metrics": result.final_metrics,
        "data": dict(data_identity or {}),
        "versions": pretrain.package_versions(),
    }
    cache.write_json_atomic(pathlib.Path(train.work_dir) / MANIFEST, manifest)
  return result


def run_on_records(config: ml_collections.ConfigDict, records: Sequence[Mapping[str, Any]], files: Sequence[str], *,
                   vocab: str | None = None, system_prompt: str | None = None, drop_unsupervised: bool = False,
                   devices: Sequence[jax.Device] | None = None,
                   mesh: jax.sharding.Mesh | None = None) -> trainer.TrainResult:
  """Runs a configured stage (`stage_config` with its upstreams set) on caption pairs (contrastive) or
  instruction records; `files` are the data files the manifest records by sha256.

  The vocabulary, image size, visual-token count and system prompt default to the upstream run's; an explicit
  `vocab` must be the one the upstream LM was trained with (its sha256 is checked). `mesh` (the run's) or
  `devices` place it (`run_stage`).
  """
  spec = data_spec(config)
  vocab = vocab or spec.vocab
  if vocab is None:
    raise ValueError(f"The {config.stage} stage needs a vocabulary (no upstream manifest names one).")
  if spec.vocab_sha256 and cache.sha256_file(pathlib.Path(vocab)) != spec.vocab_sha256:
    raise ValueError(f"Vocabulary {vocab} is not the one the upstream LM was trained with (sha256 differs); "
                     "omit it to use the upstream's.")
  if config.stage == "contrastive":
    config.vocab_size = vocab_lib.load_processor(pathlib.Path(vocab)).get_piece_size()
  system_prompt = next(p for p in (system_prompt, spec.system_prompt, chat.DEFAULT_SYSTEM_PROMPT) if p is not None)
  data = stage_data.stage_data(
      config.stage, records, vocab_path=vocab, batch_size=config.train.batch_size, seq_len=config.train.seq_len,
      image_size=spec.image_size, num_visual_tokens=spec.num_visual_tokens, system_prompt=system_prompt,
      seed=config.train.seed, drop_unsupervised=drop_unsupervised,
      identity=stage_data.file_identity(files, vocab))
  return run_stage(config, train_data=data.train_data, num_examples=data.num_examples, data_identity=data.identity,
                   devices=devices, mesh=mesh)
