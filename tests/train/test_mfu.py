"""Tests for visual_priors.train.mfu: the peak FLOP/s and HBM bandwidth tables and MFU arithmetic."""

import pytest

from visual_priors.train import mfu


@pytest.mark.parametrize("kind, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5", 459e12),
    ("TPU v5p", 459e12),
    ("TPU v6 lite", 918e12),
    ("cpu", None),
    ("NVIDIA GeForce RTX 4090", None),
])
def test_peak_per_device_kind(kind, peak):
  assert mfu.peak_flops_per_device(kind) == peak


def test_mfu_divides_achieved_by_summed_peak_and_is_none_when_unknown():
  # 1000 tokens/s x 1e12 FLOPs/token = 1e15 FLOP/s over two H100s (2 x 989e12).
  assert mfu.model_flops_utilization(1000.0, 1e12, ["NVIDIA H100 80GB HBM3"] * 2) == pytest.approx(
      1e15 / 1978e12)
  assert mfu.model_flops_utilization(1000.0, 1e12, ["cpu"]) is None
  assert mfu.model_flops_utilization(1000.0, 1e12, ["NVIDIA H100 80GB HBM3", "cpu"]) is None


@pytest.mark.parametrize("kind, bandwidth", [
    ("NVIDIA H100 80GB HBM3", 3.35e12),
    ("NVIDIA H100 PCIe", 2.0e12),
    ("NVIDIA H200", 4.8e12),
    ("NVIDIA A100-SXM4-80GB", 2.039e12),
    ("NVIDIA A100-SXM4-40GB", 1.555e12),
    ("TPU v5 lite", 819e9),
    ("TPU v5p", 2.765e12),
    ("cpu", None),
])
def test_peak_hbm_bandwidth_per_device_kind(kind, bandwidth):
  assert mfu.peak_bandwidth_per_device(kind) == bandwidth
