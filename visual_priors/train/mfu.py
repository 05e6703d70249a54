"""Peak dense bf16 FLOP/s and HBM bandwidth per accelerator kind, and model-FLOPs utilisation (MFU) from tokens/s."""

from __future__ import annotations

from collections.abc import Sequence

# (substring of the lower-cased `jax.Device.device_kind`, peak dense bf16 FLOP/s per device), first match
# wins, so more specific names come first. Vendor figures, without structured sparsity:
# - NVIDIA H100 SXM 989.4 TFLOPS, H100 PCIe 756 TFLOPS: NVIDIA H100 Tensor Core GPU datasheet.
# - NVIDIA H200 (SXM) 989 TFLOPS: NVIDIA H200 Tensor Core GPU datasheet.
# - NVIDIA A100 312 TFLOPS: NVIDIA A100 Tensor Core GPU datasheet.
# - Google TPU v4 275, v5e 197, v5p 459, v6e (Trillium) 918 TFLOPS per chip: Cloud TPU system
#   architecture pages (cloud.google.com/tpu/docs/v4, /v5e, /v5p, /v6e).
# jax reports v5e as "TPU v5 lite", v5p as "TPU v5" or "TPU v5p", v6e as "TPU v6 lite" or "TPU v6e".
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 756e12),
    ("h100", 989e12),
    ("h200", 989e12),
    ("a100", 312e12),
    ("tpu v4", 275e12),
    ("tpu v5 lite", 197e12),
    ("tpu v5e", 197e12),
    ("tpu v5", 459e12),
    ("tpu v6 lite", 918e12),
    ("tpu v6e", 918e12),
)


# (substring of the lower-cased device kind, peak HBM bandwidth in bytes/s per device), first match wins:
# the bound of memory-bound work such as cached decoding. Vendor figures:
# - NVIDIA H100 SXM 3.35 TB/s, H100 PCIe 2.0 TB/s: NVIDIA H100 datasheet; H200 (SXM) 4.8 TB/s: H200 datasheet.
# - NVIDIA A100 80GB PCIe 1.935 TB/s, 80GB SXM 2.039 TB/s, 40GB 1.555 TB/s: NVIDIA A100 datasheet.
# - Google TPU v4 1.2 TB/s, v5e 819 GB/s, v5p 2.765 TB/s, v6e 1.64 TB/s per chip: the Cloud TPU pages above.
PEAK_HBM_BYTES_PER_SECOND: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 2.0e12),
    ("h100", 3.35e12),
    ("h200", 4.8e12),
    ("a100 80gb pcie", 1.935e12),
    ("a100-sxm4-80gb", 2.039e12),
    ("a100", 1.555e12),
    ("tpu v4", 1.2e12),
    ("tpu v5 lite", 819e9),
    ("tpu v5e", 819e9),
    ("tpu v5", 2.765e12),
    ("tpu v6 lite", 1.64e12),
    ("tpu v6e", 1.64e12),
)


def _lookup(table: tuple[tuple[str, float], ...], device_kind: str) -> float | None:
  kind = device_kind.lower()
  for fragment, peak in table:
    if fragment in kind:
      return peak
  return None


def peak_flops_per_device(device_kind: str) -> float | None:
  """Peak dense bf16 FLOP/s for a device kind, or None when unknown (CPUs, unlisted accelerators)."""
  return _lookup(PEAK_BF16_FLOPS, device_kind)


def peak_bandwidth_per_device(device_kind: str) -> float | None:
  """Peak HBM bandwidth (bytes/s) for a device kind, or None when unknown (CPUs, unlisted accelerators)."""
  return _lookup(PEAK_HBM_BYTES_PER_SECOND, device_kind)


def model_flops_utilization(tokens_per_second: float, flops_per_token: float,
                            device_kinds: Sequence[str]) -> float | None:
  """Achieved model FLOP/s over the summed peak of `device_kinds`; None if any device's peak is unknown."""
  peaks = [peak_flops_per_device(kind) for kind in device_kinds]
  if not peaks or any(peak is None for peak in peaks):
    return None
  return tokens_per_second * flops_per_token / sum(peaks)
