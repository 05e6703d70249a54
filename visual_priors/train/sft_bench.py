"""Throughput of the MLLM SFT step: step time, images/s, tokens/s, MFU and peak memory on synthetic batches.

Imports only jax, flax, optax and this package's model/train-step modules (no TensorFlow, grain or
ml_collections), so it runs on a bare accelerator image (`benchmarks/gpu_throughput.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from visual_priors.models import flops, sharding
from visual_priors.models.mllm import MLLM, MLLMConfig
from visual_priors.train import bench, compile_check, mfu, multimodal_step, optimizer, partition, state as state_lib
from visual_priors.train import step as step_lib

SFT_TRAINABLE = "(proj|llm)/.*"
_SCHEDULE_STEPS = 100_000


def synthetic_sft_batch(config: MLLMConfig, batch_size: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
  """One image per row: a BOS, `num_visual_tokens` image slots, then random text, all of it supervised."""
  slots = config.num_visual_tokens
  if seq_len <= slots + 1:
    raise ValueError(f"seq_len {seq_len} leaves no text after {slots} visual tokens; use more than {slots + 1}.")
  rng = np.random.default_rng(seed)
  size = config.vision.image_size
  tokens = rng.integers(3, config.llm.vocab_size, (batch_size, seq_len + 1), dtype=np.int32)
  tokens[:, 1:slots + 1] = 0
  mask = np.zeros((batch_size, seq_len), np.int32)
  mask[:, 1:slots + 1] = 1
  weights = np.ones((batch_size, seq_len), np.int32)
  weights[:, :slots + 1] = 0
  return {
      "images": rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32),
      "decoder_input_tokens": tokens[:, :-1],
      "decoder_target_tokens": tokens[:, 1:],
      "decoder_segment_ids": np.ones((batch_size, seq_len), np.int32),
      "decoder_positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch_size, seq_len)).copy(),
      "decoder_loss_weights": weights,
      "decoder_image_mask": mask,
  }


def run_sft_bench(config: MLLMConfig, *, batch_size: int, seq_len: int, steps: int = 10, warmup_steps: int = 2,
                  mesh_shape: Mapping[str, int] | None = None, trainable: str = SFT_TRAINABLE,
                  rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES,
                  grad_accum_steps: int = 1) -> dict[str, Any]:
  """Times `steps` SFT steps (projector and LM train, encoder frozen) after `warmup_steps` (compile there).

  MFU counts the encoder forward, projector and LM (`flops.mllm_train_flops_per_step`); None on devices
  without a known peak (CPUs).
  """
  if steps <= 0 or warmup_steps <= 0:
    raise ValueError(f"steps ({steps}) and warmup_steps ({warmup_steps}) must be positive.")
  mesh = sharding.make_mesh(mesh_shape or {"fsdp": -1})
  compile_check.check_batch(batch_size, mesh, grad_accum_steps)
  program = step_lib.assemble(lambda rngs: MLLM(config, rngs=rngs), multimodal_step.mllm_loss,
                              multimodal_step.MLLM_FEATURES, mesh, rules,
                              settings=optimizer.AdamWSettings(peak_lr=4e-5, warmup_steps=0),
                              total_steps=_SCHEDULE_STEPS, trainable=trainable, grad_accum_steps=grad_accum_steps)
  spec, train_step, features = program.spec, program.train_step, program.features
  state = spec.create()
  batch = step_lib.global_batch(synthetic_sft_batch(config, batch_size // jax.process_count(), seq_len),
                                mesh, features)

  timed = bench.time_steps(train_step, state, batch, mesh, warmup_steps=warmup_steps, steps=steps)
  state, first_loss, last_loss = timed["state"], timed["first_loss"], timed["last_loss"]
  warmup_seconds, step_seconds = timed["warmup_seconds"], timed["step_seconds"]
  peak, memory_source = timed["peak"], timed["memory_source"]
  devices = list(mesh.devices.flat)
  trained = {path.split("/")[0] for path in partition.flatten_paths(state.params)}
  step_flops = flops.mllm_train_flops_per_step(config, batch_size=batch_size, seq_len=seq_len, trained=trained)
  trainable_count, frozen_count = state_lib.parameter_count(state)
  tokens_per_second = batch_size * seq_len / step_seconds
  return {
      "parameters": trainable_count + frozen_count,
      "trainable_parameters": trainable_count,
      "batch_size": batch_size,
      "seq_len": seq_len,
      "num_visual_tokens": config.num_visual_tokens,
      "steps": steps,
      "mesh": dict(mesh.shape),
      "device_kind": devices[0].device_kind,
      "num_devices": len(devices),
      "warmup_seconds": warmup_seconds,
      "step_time_seconds": step_seconds,
      "images_per_second": batch_size / step_seconds,
      "tokens_per_second": tokens_per_second,
      "flops_per_step": step_flops,
      "mfu": mfu.model_flops_utilization(tokens_per_second, step_flops / (batch_size * seq_len),
                                         [d.device_kind for d in devices]),
      "peak_memory_bytes": int(peak),
      "memory_source": memory_source,
      "loss_after_warmup": first_loss,
      "loss_last": last_loss,
  }
