"""Tests for visual_priors.eval.decode_check and `compile-check --stage eval`: the evaluation's decoding compiled
abstractly for a CPU mesh and for a TPU slice, with per-device memory."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import jax
import numpy as np
import pytest
from flax import nnx

from visual_priors import cli
from visual_priors.eval import decode_check
from visual_priors.models import scales, sharding
from visual_priors.models.mllm import MLLM, MLLMConfig, feature_extractor
from visual_priors.models.vision import get_encoder
from visual_priors.train import topology

LLM = scales.get_scale("nano")
CONFIG = MLLMConfig(vision=dataclasses.replace(feature_extractor(get_encoder("vit-nano")), dtype=LLM.dtype), llm=LLM,
                    num_visual_tokens=4)
MESH = {"data": 2, "fsdp": 2, "tensor": 2}


def _weights_per_device(mesh: jax.sharding.Mesh) -> int:
  """The MLLM's float32 weights a device holds in their training shardings."""
  abstract = nnx.state(nnx.eval_shape(lambda: MLLM(CONFIG, rngs=nnx.Rngs(0))))
  where = nnx.to_pure_dict(sharding.state_shardings(abstract, mesh))
  return sum(int(np.prod(s.shard_shape(leaf.shape))) * leaf.dtype.itemsize
             for leaf, s in zip(jax.tree.leaves(nnx.to_pure_dict(abstract)), jax.tree.leaves(where)))


def test_compile_check_eval_reports_the_decoding_memory_per_device(capsys):
  assert cli.main(["compile-check", "--stage", "eval", "--scale", "nano", "--encoder", "vit-nano", "--visual-tokens",
                   "4", "--text-tokens", "12", "--new-tokens", "4", "--batch", "8", "--mesh", "data=2,fsdp=2,tensor=2",
                   "--json"]) == 0
  report = json.loads(capsys.readouterr().out)
  assert (report["num_devices"], report["mesh"], report["batch_size"]) == (8, MESH, 8)
  assert (report["prompt_bucket"], report["seq_len"], report["visual_tokens"]) == (16, 16 + 4 - 1, 4)
  assert report["parameters"] == sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(
      nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: MLLM(CONFIG, rngs=nnx.Rngs(0)))))))
  # Arguments: each device's shards of the weights, and its 8 / 4 prompts (tokens, padding, image, slot mask).
  size = CONFIG.vision.image_size
  prompts = (8 // 4) * (16 * 4 + 4 + size * size * 3 * 4 + 16 * 4)
  assert report["argument_bytes"] == pytest.approx(_weights_per_device(sharding.make_mesh(MESH)) + prompts, rel=0.02)
  assert report["temp_bytes"] > 0 and report["output_bytes"] == 8 * 4 * 4  # the generated tokens, replicated


def test_a_batch_the_mesh_cannot_split_fails_before_compiling():
  with pytest.raises(ValueError, match="Batch 6 is not divisible by the 4 devices"):
    decode_check.compile_decode(CONFIG, mesh_shape=MESH, batch_size=6)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (extra 'tpu')")
def test_compiles_the_decoding_for_a_v5p_slice_from_a_cpu_host():
  devices = topology.topology_devices("v5p-8")
  report = decode_check.compile_decode(CONFIG, mesh_shape={"fsdp": -1}, batch_size=8, text_tokens=20,
                                       max_new_tokens=8, devices=devices)
  assert report.memory.num_devices == 4 and report.memory.device_kind.startswith("TPU v5")
  # TPU layouts pad arrays to tiles, so arguments take at least the weights' logical bytes per device.
  assert report.memory.argument_bytes >= _weights_per_device(sharding.make_mesh({"fsdp": -1}, devices))
  assert "KV cache 39 columns" in report.format() and "per-device memory" in report.format()
