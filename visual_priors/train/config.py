"""The training-run config (ml_collections): defaults, early validation, and the run length in steps."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from visual_priors.models import sharding
from visual_priors.models.decoder import REMAT_POLICIES, DecoderConfig
from visual_priors.names import unknown_keys
from visual_priors.train import optimizer

# Subtrees whose keys are free-form (checked elsewhere): model overrides are DecoderConfig fields.
OPEN_KEYS = ("model",)


def default_config() -> ml_collections.ConfigDict:
  """Defaults for a pre-training run; the paper's values where it gives them (docs/paper.md, section 1)."""
  config = ml_collections.ConfigDict()
  config.scale = "3b"  # a name in visual_priors.models.scales.SCALES; the paper's default setting
  config.model = ml_collections.ConfigDict()  # DecoderConfig field overrides, e.g. {"vocab_size": 8000}
  config.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": -1, "tensor": 1})
  config.logical_axis_rules = sharding.DEFAULT_LOGICAL_AXIS_RULES
  config.batch_size = 1024  # global, in sequences (paper: 1024 x 2048 ~ 2.1M tokens per step)
  config.seq_len = 2048
  # Run length: exactly one of num_steps and token_budget is positive; the budget is rounded up to steps.
  config.num_steps = 0
  config.token_budget = 30_000_000_000  # the paper's default 30B tokens
  config.optimizer = ml_collections.ConfigDict(dataclasses.asdict(optimizer.AdamWSettings()))
  config.grad_accum_steps = 1
  # None keeps the scale's own setting (bfloat16 compute for the paper scales, float32 for the CPU-sized
  # ones); parameters stay float32 master weights either way.
  config.compute_dtype = ml_collections.config_dict.placeholder(str)
  config.remat = ml_collections.config_dict.placeholder(str)  # None, or a name in decoder.REMAT_POLICIES
  # Regexes fully matched against '/'-joined parameter paths: what trains and, of that, what stays frozen.
  config.trainable = ".*"
  config.frozen = ""
  config.checkpoint = ml_collections.ConfigDict({"every_steps": 1000, "keep": 3, "async_save": True})
  config.log_every_steps = 50
  config.eval_every_steps = 1000
  config.eval_max_batches = 0  # per eval set; 0 = the whole set
  # The NaN guard's divergence test: a checkpoint is diverged when the mean train loss of the steps since the
  # previous checkpoint is above divergence_factor x the run's initial loss (the loss of its step 1). A diverged
  # state is never saved (the run stops, as on a NaN, keeping the last good checkpoint) and a run refuses to
  # resume from a checkpoint that is diverged by this test. 0 turns the test off (a NaN still stops the run).
  config.divergence_factor = 3.0
  config.seed = 42  # the paper's seed
  config.work_dir = ""
  return config


def steps_for(amount: float, per_step: int) -> int:
  """The one step-count rule: optimizer steps that cover `amount` (tokens or examples) at `per_step` each,
  rounded up, at least one."""
  return max(1, math.ceil(amount / per_step))


def total_steps(config: ml_collections.ConfigDict) -> int:
  """Optimizer steps of the run: `num_steps`, or the token budget over tokens per step (`steps_for`)."""
  if config.num_steps > 0:
    return int(config.num_steps)
  return steps_for(config.token_budget, config.batch_size * config.seq_len)


def run_mesh(mesh_shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None,
             mesh: jax.sharding.Mesh | None = None) -> jax.sharding.Mesh:
  """The mesh a run trains on: `mesh` when given (the runner builds one per run and hands it to every stage),
  which must have the shape `mesh_shape` asks for; else one built from `mesh_shape` over `devices` (default:
  all)."""
  if mesh is None:
    return sharding.make_mesh(mesh_shape, devices)
  wanted = sharding.mesh_sizes(mesh_shape, mesh.devices.size)
  if wanted != dict(mesh.shape):
    raise ValueError(f"The run's mesh is {dict(mesh.shape)}, but this config's mesh {dict(mesh_shape)} asks for "
                     f"{wanted}.")
  return mesh


def data_parallel_size(mesh_shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None,
                       mesh: jax.sharding.Mesh | None = None) -> int:
  """How many ways the batch is split: the product of the data and fsdp mesh axes."""
  mesh = run_mesh(mesh_shape, devices, mesh)
  return mesh.shape["data"] * mesh.shape["fsdp"]


def _require_positive(config: ml_collections.ConfigDict, names: Sequence[str]) -> None:
  for name in names:
    value = config
    for part in name.split("."):
      value = value[part]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f"Config {name} must be a positive integer, got {value!r}.")


def validate(config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None,
             mesh: jax.sharding.Mesh | None = None) -> None:
  """Raises ValueError naming the first problem; run before anything is traced or compiled. `mesh`: the run's
  (`run_mesh`), else the one config.mesh makes over `devices`."""
  unknown = unknown_keys(config, default_config(), OPEN_KEYS)
  if unknown:
    raise ValueError(f"Unknown config keys {unknown}; valid top-level keys: {', '.join(default_config())}.")
  model_fields = {field.name for field in dataclasses.fields(DecoderConfig)}
  bad_model = sorted(set(config.model) - model_fields)
  if bad_model:
    raise ValueError(f"Unknown model override(s) {bad_model}; DecoderConfig fields: {sorted(model_fields)}.")
  _require_positive(config, ("batch_size", "seq_len", "grad_accum_steps", "checkpoint.every_steps",
                             "checkpoint.keep", "log_every_steps", "eval_every_steps"))
  if config.divergence_factor != 0 and not config.divergence_factor > 1:
    raise ValueError(f"Config divergence_factor must be 0 (off) or above 1, got {config.divergence_factor}.")
  if config.eval_max_batches < 0:
    raise ValueError(f"Config eval_max_batches must be >= 0 (0 = all), got {config.eval_max_batches}.")
  if (config.num_steps > 0) == (config.token_budget > 0) or min(config.num_steps, config.token_budget) < 0:
    raise ValueError(
        f"Set exactly one of num_steps ({config.num_steps}) and token_budget ({config.token_budget}) to a "
        "positive value and the other to 0."
    )
  if not config.work_dir:
    raise ValueError("Config work_dir is empty; set it to the run's output directory.")
  parallel = data_parallel_size(config.mesh, devices, mesh)
  per_step = parallel * config.grad_accum_steps
  if config.batch_size % per_step:
    raise ValueError(
        f"batch_size {config.batch_size} is not divisible by data-parallel size {parallel} x "
        f"grad_accum_steps {config.grad_accum_steps} = {per_step}; pick a multiple of {per_step}."
    )
  try:
    if config.compute_dtype is not None:
      jnp.dtype(config.compute_dtype)
  except TypeError:
    raise ValueError(f"compute_dtype {config.compute_dtype!r} is not a dtype name (e.g. 'bfloat16').") from None
  if config.remat is not None and config.remat not in REMAT_POLICIES:
    raise ValueError(f"remat {config.remat!r} is not one of {sorted(REMAT_POLICIES)}.")
  for name in ("trainable", "frozen"):
    try:
      re.compile(config[name])
    except re.error as error:
      raise ValueError(f"Config {name} regex {config[name]!r} is invalid: {error}.") from None
  rule_names = [rule[0] for rule in config.logical_axis_rules]
  if len(set(rule_names)) != len(rule_names):
    raise ValueError(f"logical_axis_rules name an axis twice: {rule_names}.")
  optimizer.AdamWSettings(**config.optimizer).validate(total_steps(config))
