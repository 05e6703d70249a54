"""Tests for visual_priors.train.bench: measurements on CPU, and an import path free of TF/seqio/grain."""

import subprocess
import sys

import numpy as np
import pytest

from visual_priors.models import scales
from visual_priors.train import bench

NANO = scales.get_scale("nano", vocab_size=64)


def test_bench_measures_throughput_and_memory_on_cpu():
  result = bench.run_bench(NANO, batch_size=8, seq_len=32, steps=2, warmup_steps=1, mesh_shape={"fsdp": 8})
  assert result["tokens_per_second"] == pytest.approx(8 * 32 / result["step_time_seconds"])
  assert result["mfu"] is None  # CPU: unknown peak, no guess
  assert result["memory_source"] == "compiled_memory_analysis" and result["peak_memory_bytes"] > 0
  assert result["parameters"] == scales.count_params(NANO) and result["num_devices"] == 8
  assert np.isfinite(result["loss_last"]) and result["flops_per_token"] > 0


def test_synthetic_packed_batch_restarts_positions_per_segment():
  batch = bench.synthetic_batch(2, 8, 64, packed=True)
  np.testing.assert_array_equal(batch["decoder_positions"][0], [0, 1, 2, 3, 0, 1, 2, 3])
  np.testing.assert_array_equal(batch["decoder_segment_ids"][0], [1, 1, 1, 1, 2, 2, 2, 2])
  np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:], batch["decoder_target_tokens"][:, :-1])


def test_bench_module_imports_only_the_accelerator_stack():
  code = ("import sys, visual_priors.train.bench; "
          "print(sorted(m for m in ('tensorflow', 'seqio', 'grain', 'ml_collections') if m in sys.modules))")
  imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert imported.stdout.strip() == "[]"
