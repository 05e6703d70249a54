"""GPU throughput of the framework's LM train step: MFU at ~1.3B (batch 8 x 2048) and 340M (batch 16 x 2048).

Needs only jax (with CUDA), flax and optax: run from the repository root on one GPU,

    python benchmarks/gpu_lm_mfu.py [--steps 20] [--json results.json]

It prints step time, tokens/s, MFU and peak memory per case, next to the bar set by a plain ~60-line JAX
Llama (cuDNN attention, fp32 params / bf16 compute, AdamW, no remat) on one H200: 47.5% MFU at 1.36B and
38.4% at 374M (docs/design.md, install notes). The framework's model should match or beat it (target >= 50% at ~1.3B).
MFU counts matmul FLOPs with causal attention at half (visual_priors.models.flops) against the device's
peak dense bf16 FLOP/s (visual_priors.train.mfu: 989 TFLOP/s for H100/H200).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

# Let XLA use most of the GPU (its default is 75%); set before jax starts.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from visual_priors.models import scales  # noqa: E402
from visual_priors.train import bench  # noqa: E402

# (scale, batch, sequence length, reference MFU of the plain-JAX Llama on one H200)
CASES = (("1.3b", 8, 2048, 0.475), ("340m", 16, 2048, 0.384))


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=20, help="Timed steps per case.")
  parser.add_argument("--warmup", type=int, default=3, help="Untimed steps per case (compile included).")
  parser.add_argument("--remat", default="none", help="Remat policy for both cases.")
  parser.add_argument("--json", default=None, help="Also write the results to this file.")
  args = parser.parse_args()

  print(f"jax {jax.__version__}; devices: {jax.device_count()} x {jax.devices()[0].device_kind}", flush=True)
  results = []
  for scale, batch, seq, reference in CASES:
    config = scales.get_scale(scale, remat=args.remat)
    result = bench.run_bench(config, batch_size=batch, seq_len=seq, steps=args.steps,
                             warmup_steps=args.warmup, mesh_shape={"data": 1, "fsdp": -1, "tensor": 1})
    result.update(scale=scale, reference_mfu=reference)
    results.append(result)
    mfu = "unknown" if result["mfu"] is None else f"{100 * result['mfu']:.1f}%"
    print(f"{scale:>5} ({result['parameters'] / 1e9:.2f}B) batch {batch} x {seq}: "
          f"{1000 * result['step_time_seconds']:.1f} ms/step, {result['tokens_per_second']:,.0f} tokens/s, "
          f"MFU {mfu} (plain-JAX reference {100 * reference:.1f}%), "
          f"peak memory {result['peak_memory_bytes'] / 1024 ** 3:.1f} GiB, "
          f"loss {result['loss_after_warmup']:.3f} -> {result['loss_last']:.3f}", flush=True)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
