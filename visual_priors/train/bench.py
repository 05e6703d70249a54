"""Throughput of the LM train step: step time, tokens/s, MFU and peak device memory on synthetic batches.

Imports only jax, flax, optax and this package's model/train-step modules (no TensorFlow, seqio, grain or
ml_collections), so it runs on a bare accelerator image.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from visual_priors.models import flops, sharding
from visual_priors.models.decoder import DecoderConfig
from visual_priors.train import compile_check, mfu, state as state_lib, step as step_lib


def synthetic_batch(batch_size: int, seq_len: int, vocab_size: int, packed: bool, seed: int = 0
                    ) -> dict[str, np.ndarray]:
  """Random tokens; `packed` adds two packed examples per row (segment ids and restarting positions)."""
  rows = np.random.default_rng(seed).integers(1, vocab_size, (batch_size, seq_len + 1), dtype=np.int32)
  batch = {
      "decoder_input_tokens": rows[:, :-1],
      "decoder_target_tokens": rows[:, 1:],
      "decoder_loss_weights": np.ones((batch_size, seq_len), np.int32),
  }
  if packed:
    half = seq_len // 2
    positions = np.concatenate([np.arange(half), np.arange(seq_len - half)]).astype(np.int32)
    batch["decoder_positions"] = np.broadcast_to(positions, (batch_size, seq_len)).copy()
    batch["decoder_segment_ids"] = np.broadcast_to(
        (np.arange(seq_len) >= half).astype(np.int32) + 1, (batch_size, seq_len)).copy()
  return batch


def _peak_memory_bytes(devices: list[jax.Device]) -> int | None:
  peaks = [(device.memory_stats() or {}).get("peak_bytes_in_use") for device in devices]
  return max(peaks) if peaks and all(peak is not None for peak in peaks) else None


def time_steps(train_step: Any, state: Any, batch: Any, mesh: jax.sharding.Mesh, *, warmup_steps: int,
               steps: int) -> dict[str, Any]:
  """Runs `warmup_steps` (compile included) then times `steps` steps; returns timings, losses and peak memory.

  Peak memory comes from `device.memory_stats()` where the backend has it, else from the compiled step's
  memory analysis (`memory_source` says which).
  """
  start = time.perf_counter()
  for _ in range(warmup_steps):
    state, metrics = train_step(state, batch)
  first_loss = float(jax.device_get(metrics["loss"]))
  warmup_seconds = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = train_step(state, batch)
  last_loss = float(jax.device_get(metrics["loss"]))
  step_seconds = (time.perf_counter() - start) / steps
  devices = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  peak = _peak_memory_bytes(devices)
  memory_source = "memory_stats"
  if peak is None:
    analysis = train_step.lower(state, batch).compile().memory_analysis()
    peak = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
            - analysis.alias_size_in_bytes)
    memory_source = "compiled_memory_analysis"
  return {"state": state, "first_loss": first_loss, "last_loss": last_loss, "warmup_seconds": warmup_seconds,
          "step_seconds": step_seconds, "peak": peak, "memory_source": memory_source}


def run_bench(model_config: DecoderConfig, *, batch_size: int, seq_len: int, steps: int = 10,
              warmup_steps: int = 2, mesh_shape: Mapping[str, int] | None = None,
              rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES,
              grad_accum_steps: int = 1, packed: bool = False) -> dict[str, Any]:
  """Times `steps` train steps after `warmup_steps` (compile included there); returns the measurements.

  MFU is None on devices without a known peak (CPUs). Peak memory comes from `device.memory_stats()`
  where the backend has it, else from the compiled step's memory analysis (`memory_source` says which).
  """
  if steps <= 0 or warmup_steps <= 0:
    raise ValueError(f"steps ({steps}) and warmup_steps ({warmup_steps}) must be positive.")
  mesh = sharding.make_mesh(mesh_shape or {"fsdp": -1})
  compile_check.check_batch(batch_size, mesh, grad_accum_steps)
  program = compile_check.lm_program(model_config, mesh, rules, grad_accum_steps=grad_accum_steps, packed=packed)
  spec, train_step, features = program.spec, program.train_step, program.features
  state = spec.create()
  batch = step_lib.global_batch(
      synthetic_batch(batch_size // jax.process_count(), seq_len, model_config.vocab_size, packed),
      mesh, features)

  timed = time_steps(train_step, state, batch, mesh, warmup_steps=warmup_steps, steps=steps)
  state, first_loss, last_loss = timed["state"], timed["first_loss"], timed["last_loss"]
  warmup_seconds, step_seconds = timed["warmup_seconds"], timed["step_seconds"]
  peak, memory_source = timed["peak"], timed["memory_source"]
  devices = list(mesh.devices.flat)
  tokens_per_second = batch_size * seq_len / step_seconds
  flops_per_token = flops.train_flops_per_token(model_config, seq_len)
  trainable_count, frozen_count = state_lib.parameter_count(state)
  return {
      "parameters": trainable_count + frozen_count,
      "batch_size": batch_size,
      "seq_len": seq_len,
      "packed": packed,
      "steps": steps,
      "mesh": dict(mesh.shape),
      "device_kind": devices[0].device_kind,
      "num_devices": len(devices),
      "warmup_seconds": warmup_seconds,
      "step_time_seconds": step_seconds,
      "tokens_per_second": tokens_per_second,
      "flops_per_token": flops_per_token,
      "mfu": mfu.model_flops_utilization(tokens_per_second, flops_per_token, [d.device_kind for d in devices]),
      "peak_memory_bytes": int(peak),
      "memory_source": memory_source,
      "loss_after_warmup": first_loss,
      "loss_last": last_loss,
  }
