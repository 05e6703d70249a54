"""The pre-training stage: a decoder scale trained on a data mixture, ending in a checkpoint and manifest.json.

The data arrives as factories, so the mixture pipeline (`visual_priors.data.pipeline`), a synthetic grain
dataset or anything grain-style plugs in unchanged: `train_data()` returns this host's iterator of packed
batches (seqio decoder feature names) with `get_state()`/`set_state()`, and each eval set factory returns
a finite iterable of such batches.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import pathlib
import platform
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from visual_priors.data import cache
from visual_priors.models import flops, scales
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.train import config as config_lib, step as step_lib, trainer

MANIFEST = "manifest.json"
_VERSIONED = ("visual_priors", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy")


def decoder_config(config: ml_collections.ConfigDict) -> DecoderConfig:
  """The run's DecoderConfig: the named scale, the config's compute dtype and remat if set, `config.model`."""
  overrides = {"dtype": config.compute_dtype, "remat": config.remat}
  overrides = {name: value for name, value in overrides.items() if value is not None}
  return scales.get_scale(config.scale, **{**overrides, **config.model})


def package_versions() -> dict[str, str | None]:
  versions: dict[str, str | None] = {"python": platform.python_version()}
  for name in _VERSIONED:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return versions


def unigram_entropy(batches: Callable[[], Any], max_batches: int = 0) -> float:
  """Entropy (nats) of the loss-weighted target tokens' empirical unigram distribution.

  The loss a model gets by predicting token frequencies and ignoring context: the bar a trained LM's
  validation loss must fall well below.
  """
  counts: dict[int, float] = {}
  for index, batch in enumerate(batches()):
    if max_batches and index >= max_batches:
      break
    targets = np.asarray(batch["decoder_target_tokens"]).ravel()
    weights = np.asarray(batch["decoder_loss_weights"]).ravel().astype(np.float64)
    tokens, inverse = np.unique(targets, return_inverse=True)
    for token, weight in zip(tokens.tolist(), np.bincount(inverse, weights=weights).tolist()):
      counts[token] = counts.get(token, 0.0) + weight
  total = sum(counts.values())
  if total <= 0:
    raise ValueError("The eval batches hold no loss-weighted tokens.")
  return -sum(c / total * math.log(c / total) for c in counts.values() if c > 0)


def _hf_start(config: ml_collections.ConfigDict, model_config: DecoderConfig, init_from: str | pathlib.Path | None
              ) -> tuple[DecoderConfig, Callable[[Any], dict[str, jax.Array]] | None, dict[str, Any] | None]:
  """(the model config, the state initialiser, the manifest record) of a run starting from a HF directory, or
  (model_config, None, None) without one. Fails before compute when the checkpoint does not fit the scale."""
  if not init_from:
    return model_config, None, None
  from visual_priors.train import hf_import, upstream  # pylint: disable=import-outside-toplevel

  checkpoint = hf_import.open_checkpoint(init_from)
  model_config = hf_import.matched_config(checkpoint, model_config, config.scale,
                                         min_vocab_size=model_config.vocab_size)

  def initialize(abstract):
    return hf_import.sharded_variables(checkpoint, model_config, upstream.targets_under(abstract, [""]))

  return model_config, initialize, hf_import.init_record(checkpoint.directory)


def pretrain(config: ml_collections.ConfigDict, *, train_data: Callable[[], trainer.DataIterator],
             eval_sets: trainer.EvalSets | None = None, data_identity: Mapping[str, Any] | None = None,
             on_step: Callable[[int], None] | None = None,
             devices: Sequence[jax.Device] | None = None,
             data_report: Callable[[], Mapping[str, Any]] | None = None,
             init_from: str | pathlib.Path | None = None,
             mesh: jax.sharding.Mesh | None = None) -> trainer.TrainResult:
  """Trains `decoder_config(config)` and writes `<work_dir>/manifest.json` once the final step is saved.

  `data_identity` (e.g. the segment store, mixture and vocabulary hashes) is copied into the manifest so
  a run names exactly what it was trained on. The mesh is `mesh` (the run's) when given, else config.mesh over
  `devices` (default: all).
  `data_report()` is called after training and recorded too (e.g. realised vs nominal mixture shares).
  `init_from`: a Hugging Face Llama directory whose weights start the run (`visual_priors/train/hf_import.py`:
  its shapes must be the scale's; rope_theta, norm eps, tying and vocab size are the checkpoint's), restored
  straight into the state's shardings on a fresh start; the manifest records its content hash.
  """
  model_config = decoder_config(config)
  config_lib.validate(config, devices, mesh)
  eval_sets = dict(eval_sets or {})
  model_config, initialize, init_record = _hf_start(config, model_config, init_from)

  def model_factory(rngs: nnx.Rngs) -> Decoder:
    return Decoder(model_config, rngs=rngs)

  result = trainer.train(
      config, model_factory=model_factory, loss_fn=step_lib.lm_loss, train_data=train_data,
      features=step_lib.LM_FEATURES, eval_sets=eval_sets,
      flops_per_token=flops.train_flops_per_token(model_config, config.seq_len), on_step=on_step,
      devices=devices, mesh=mesh, initialize=initialize, stage="pretrain",
  )
  if jax.process_index() == 0:
    manifest = {
        "stage": "pretrain",
        "config": config.to_dict(),
        "config_sha256": cache.sha256_json(config.to_dict()),
        "model": dataclasses.asdict(model_config),
        "parameters": result.trainable_params + result.frozen_params,
        "trainable_parameters": result.trainable_params,
        "step": result.step,
        "tokens_seen": result.tokens_seen,
        "checkpoint_dir": str(result.checkpoint_dir),
        "final_metrics": result.final_metrics,
        "unigram_entropy_nats": {
            name: unigram_entropy(make_batches, config.eval_max_batches)
            for name, make_batches in eval_sets.items()
        },
        "data": dict(data_identity or {}),
        "data_report": dict(data_report()) if data_report else None,
        "versions": package_versions(),
    }
    if init_record:
      manifest["init_from"] = init_record
    cache.write_json_atomic(pathlib.Path(config.work_dir) / MANIFEST, manifest)
  return result


def save_untrained(config: ml_collections.ConfigDict, *, data_identity: Mapping[str, Any],
                   devices: Sequence[jax.Device] | None = None,
                   init_from: str | pathlib.Path | None = None,
                   mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """A token budget of 0: the initialised decoder saved as checkpoint step 0 with a pretrain manifest, so
  later stages start from an untrained LM exactly as from a trained one (the scale sweep's "0B" runs).
  With `init_from` (a HF Llama directory) the saved weights are that checkpoint's: a public model imported
  as it is, for adaptation and evaluation."""
  from visual_priors.train import checkpoint, optimizer, state  # pylint: disable=import-outside-toplevel

  config = config.copy_and_resolve_references()
  config.num_steps, config.token_budget = 1, 0  # the optimizer's schedule needs a length; nothing is trained
  config.optimizer.warmup_steps = 0
  model_config, initialize, init_record = _hf_start(config, decoder_config(config), init_from)
  mesh = config_lib.run_mesh(config.mesh, devices, mesh)
  rules = tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in config.logical_axis_rules)
  tx, _ = optimizer.make_optimizer(optimizer.AdamWSettings(**config.optimizer), 1)
  spec = state.build_state_spec(lambda rngs: Decoder(model_config, rngs=rngs), tx, mesh, rules, seed=config.seed)
  initial = spec.create(initialize(spec.abstract) if initialize else None)
  trainable, frozen = state.parameter_count(initial)
  work_dir = pathlib.Path(config.work_dir)
  checkpointer = checkpoint.Checkpointer(work_dir / checkpoint.CHECKPOINTS, keep=1, async_save=False)
  try:
    checkpointer.save(0, initial, {})
    checkpointer.wait()
  finally:
    checkpointer.close()
  if jax.process_index() == 0:
    cache.write_json_atomic(work_dir / MANIFEST, {
        "stage": "pretrain", "untrained": True, "config": config.to_dict(),
        "config_sha256": cache.sha256_json(config.to_dict()), "model": dataclasses.asdict(model_config),
        "parameters": trainable + frozen, "trainable_parameters": trainable, "step": 0, "tokens_seen": 0,
        "checkpoint_dir": str(checkpointer.directory), "final_metrics": {}, "data": dict(data_identity),
        "versions": package_versions(), **({"init_from": init_record} if init_record else {})})
  return {"run": str(work_dir), "steps": 0, "tokens": 0, "untrained": True}
