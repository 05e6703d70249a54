"""Tests for visual_priors.train.compile_check: abstract compile on a CPU mesh and on a TPU topology."""

import importlib.util

import jax
import numpy as np
import pytest

from visual_priors.models import scales, sharding
from visual_priors.models.decoder import Decoder
from visual_priors.train import compile_check, optimizer, state as state_lib, topology

NANO = scales.get_scale("nano", vocab_size=64)
MESH = {"data": 2, "fsdp": 2, "tensor": 2}


def _per_device_bytes(tree):
  return sum(int(np.prod(leaf.sharding.shard_shape(leaf.shape))) * leaf.dtype.itemsize
             for leaf in jax.tree.leaves(tree))


def test_compiles_without_running_and_reports_per_device_memory():
  report = compile_check.compile_train_step(NANO, mesh_shape=MESH, batch_size=8, seq_len=32)
  assert (report.num_devices, report.device_kind, report.mesh) == (8, "cpu", {"data": 2, "fsdp": 2, "tensor": 2})
  assert report.parameters == scales.count_params(NANO)
  # Independently: the state's shards per device (params, frozen, Adam moments, step, rng) plus the batch.
  tx, _ = optimizer.make_optimizer(optimizer.AdamWSettings(), 100_000)
  spec = state_lib.build_state_spec(lambda rngs: Decoder(NANO, rngs=rngs), tx, sharding.make_mesh(MESH),
                                    sharding.DEFAULT_LOGICAL_AXIS_RULES)
  state_bytes = _per_device_bytes(spec.abstract)
  batch_bytes = 5 * (8 // 4) * 32 * 4  # five int32 features, batch rows split 4 ways (data x fsdp)
  assert report.argument_bytes == pytest.approx(state_bytes + batch_bytes, rel=0.02)
  assert report.alias_bytes == pytest.approx(state_bytes, rel=0.02)  # the donated state is updated in place
  assert report.temp_bytes > 0
  assert report.total_bytes == report.argument_bytes + report.output_bytes + report.temp_bytes - report.alias_bytes
  assert "per-device memory" in report.format() and "temp" in report.format()


def test_a_batch_the_mesh_cannot_split_fails_before_compiling():
  with pytest.raises(ValueError, match="Batch 6 is not divisible by data-parallel size 4"):
    compile_check.compile_train_step(NANO, mesh_shape=MESH, batch_size=6, seq_len=32)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (extra 'tpu')")
def test_compiles_for_a_tpu_slice_from_a_cpu_host():
  devices = topology.topology_devices("v5e-8")
  report = compile_check.compile_train_step(NANO, mesh_shape={"fsdp": -1}, batch_size=8, seq_len=128,
                                            devices=devices)
  assert report.num_devices == 8 and report.device_kind == "TPU v5 lite"
  # TPU layouts pad arrays to tiles, so arguments take at least the state's logical bytes per device.
  tx, _ = optimizer.make_optimizer(optimizer.AdamWSettings(), 100_000)
  spec = state_lib.build_state_spec(lambda rngs: Decoder(NANO, rngs=rngs), tx,
                                    sharding.make_mesh({"fsdp": -1}, devices), sharding.DEFAULT_LOGICAL_AXIS_RULES)
  assert report.argument_bytes >= _per_device_bytes(spec.abstract)
