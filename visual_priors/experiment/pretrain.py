"""The pretrain stage: the decoder LM on data.mixture of data.store (or its initialised / imported weights).

Key: seed, the store (a content-addressed store directory by its name, wherever it lies), the canonical mixture
(a `seqio:` name by what it resolves to) and every pretrain field; an untrained LM (token_budget 0) hashes only
the architecture, vocabulary and seed; pretrain.init_from ("hf:DIR") by the checkpoint's content hash, and
nothing when unset. Outputs: run, steps, tokens, token_budget, store. Steps: token_budget over batch_size x
seq_len, rounded up (`train.config.steps_for`).
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import ml_collections

from visual_priors import overrides
from visual_priors.data import tasks
from visual_priors.data.segments import open_store
from visual_priors.experiment import schema
from visual_priors.experiment.stage import Counts, Outputs, Stage, StageContext, trainer_runtime

_STORE_DIR = re.compile(r"L\d+-[0-9a-f]{12}")  # segments.store_dir's content-addressed name


def store_identity(store: str) -> str:
  """data.store as a key sees it: a content-addressed store directory by its name, anything else as given."""
  name = pathlib.PurePath(store).name
  return name if _STORE_DIR.fullmatch(name) else store


def canonical_mixture(text: str) -> dict[str, Any]:
  """The parsed mixture as data: {"sources": {name: weight}} or {"categories": {name: fraction}}."""
  from visual_priors.data import mixtures  # pylint: disable=import-outside-toplevel
  spec = schema.parse_mixture(text)
  if isinstance(spec, mixtures.SourceWeights):
    return {"sources": {s: round(w, 9) for s, w in spec.weights.items()}}
  return {"categories": {c: round(float(p), 9) for c, p in spec.proportions.items()}}


def _init_from_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """pretrain.init_from as a key sees it: nothing when unset (keys stay as before the field existed), else the
  checkpoint's content hash (its path when the directory is not on this machine, which `finalize(strict=True)`
  refuses to run)."""
  directory = schema.init_from_dir(config)
  if directory is None:
    return {}
  from visual_priors.train import hf_import  # pylint: disable=import-outside-toplevel
  if not (directory / "config.json").is_file():
    return {"init_from": {"hf": None, "missing": str(directory)}}
  return {"init_from": {"hf": hf_import.content_sha256(directory)}}


def _store_or_none(config: ml_collections.ConfigDict) -> Any:
  """The segment store of data.store; None when a `seqio:` mixture of a user's tasks has none to read (they train
  from their own caches)."""
  try:
    return open_store(config.data.store)
  except FileNotFoundError:
    if tasks.is_seqio(config.data.mixture):
      return None
    raise


def preflight(config: ml_collections.ConfigDict) -> None:
  """Fails before any compute when the segment store the mixture reads cannot be opened."""
  _store_or_none(config)


def mixture_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """data.mixture as a key sees it: the canonical mixture, or a `seqio:` name's identity (`tasks.mixture_identity`:
  its store's plan, or its user tasks' content hashes)."""
  if tasks.is_seqio(config.data.mixture):
    tasks.import_modules(config.data.seqio_modules)
    return tasks.mixture_identity(config.data.mixture, _store_or_none(config))
  return canonical_mixture(config.data.mixture)


def key_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  pretrain = config.pretrain.to_dict()
  pretrain.pop("init_from", None)
  if pretrain["token_budget"] == 0:  # An untrained LM: only the architecture, vocabulary and seed matter.
    seqio = {"mixture": mixture_identity(config)} if tasks.is_seqio(config.data.mixture) else {}  # its vocabulary
    return {"seed": config.seed, "store": store_identity(config.data.store), "scale": pretrain["scale"],
            "token_budget": 0, "model": pretrain["overrides"].get("model", {}), **_init_from_identity(config), **seqio}
  return {"seed": config.seed, "store": store_identity(config.data.store), "mixture": mixture_identity(config),
          **pretrain, **_init_from_identity(config)}


def flops(config: ml_collections.ConfigDict, counts: Counts) -> float:
  """token_budget x train FLOPs per token (3 x forward: 6N plus causal attention) at seq_len."""
  del counts
  from visual_priors.models import flops as model_flops  # pylint: disable=import-outside-toplevel
  return config.pretrain.token_budget * model_flops.train_flops_per_token(schema.decoder_config(config),
                                                                            config.pretrain.seq_len)


def trainer_config(config: ml_collections.ConfigDict, work_dir: pathlib.Path, vocab_size: int):
  """The trainer config of the pretrain stage (steps: `train.config.steps_for` of the token budget)."""
  from visual_priors.train import config as train_config  # pylint: disable=import-outside-toplevel

  p = config.pretrain
  train = train_config.default_config()
  train.scale = p.scale
  train.batch_size, train.seq_len = int(p.batch_size), int(p.seq_len)
  train.num_steps = train_config.steps_for(p.token_budget, train.batch_size * train.seq_len)
  train.token_budget = 0
  train.optimizer.peak_lr = float(p.peak_lr)
  train.optimizer.warmup_steps = int(p.warmup_steps)
  trainer_runtime(train, config, work_dir)
  train.model.vocab_size = vocab_size
  for path in overrides.dotted_paths(p.overrides):  # the leaves of pretrain.overrides, as --set would set them
    value = overrides.get_key(p.overrides, path)
    if not overrides.is_mapping(value):
      overrides.set_key(train, path, value, train_config.OPEN_KEYS)
  return train


def run(ctx: StageContext) -> Outputs:
  from visual_priors.train import hf_import, pretrain, store_data  # pylint: disable=import-outside-toplevel

  p = ctx.config.pretrain
  tasks.import_modules(ctx.config.data.seqio_modules)
  eval_batch = int(ctx.config.runtime.eval_batch_size)
  data = store_data.mixture_data(_store_or_none(ctx.config), ctx.config.data.mixture, batch_size=int(p.batch_size),
                                 seq_len=int(p.seq_len), eval_batch_size=eval_batch, seed=int(ctx.config.seed))
  store = data.store  # data.store's, or a seqio user task's cache
  train = trainer_config(ctx.config, ctx.out_dir, data.vocab_size)
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


STAGE = Stage("pretrain", key_fields=key_fields, upstream=lambda config: (), run=run, flops=flops)
