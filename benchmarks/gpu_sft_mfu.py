"""GPU throughput of the MLLM SFT step: a ~1B LM with a ViT-B/16 encoder at 576 visual tokens, with MFU.

Needs only jax (with CUDA), flax and optax: run from the repository root on one GPU,

    python benchmarks/gpu_sft_mfu.py [--steps 10] [--batch 8] [--seq 2048] [--json results.json]

The step is the SFT stage's: projector (mlp2x_gelu) and LM train, the encoder is frozen; fp32 master
weights, bf16 compute, AdamW. Each row holds one 224 x 224 image whose 14 x 14 patch grid is resampled
to 24 x 24 = 576 visual tokens (`--encoder siglip-b16-384` gives 576 tokens natively), then text up to
`--seq` tokens. MFU counts matmul FLOPs of the encoder forward (1x: frozen, no gradient reaches it),
the projector (3x) and the LM (3x, causal attention at half) against the device's peak dense bf16
FLOP/s (`visual_priors.models.flops.mllm_train_flops_per_step`, `visual_priors.train.mfu`).
`--tiny` runs a CPU-sized model instead (a smoke check that the script works anywhere).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys

# Let XLA use most of the GPU (its default is 75%); set before jax starts.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from visual_priors.models import scales  # noqa: E402
from visual_priors.models.mllm import MLLMConfig, feature_extractor  # noqa: E402
from visual_priors.models.vision import get_encoder  # noqa: E402
from visual_priors.train import sft_bench  # noqa: E402


def model_config(scale: str, encoder: str, num_visual_tokens: int, remat: str, dtype: str | None) -> MLLMConfig:
  llm = scales.get_scale(scale, remat=remat, **({"dtype": dtype} if dtype else {}))
  vision = feature_extractor(get_encoder(encoder))
  vision = dataclasses.replace(vision, dtype=llm.dtype)
  return MLLMConfig(vision=vision, llm=llm, projector="mlp2x_gelu", num_visual_tokens=num_visual_tokens)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scale", default="1b", help="LM scale (visual_priors.models.scales).")
  parser.add_argument("--encoder", default="siglip-b16-224", help="Vision encoder (models.vision.registry).")
  parser.add_argument("--visual-tokens", type=int, default=576)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=2048, help="Tokens per row, visual slots included.")
  parser.add_argument("--steps", type=int, default=10, help="Timed steps.")
  parser.add_argument("--warmup", type=int, default=3, help="Untimed steps (compile included).")
  parser.add_argument("--remat", default="none", help="LM remat policy.")
  parser.add_argument("--tiny", action="store_true", help="CPU-sized model: scale tiny, encoder vit-tiny.")
  parser.add_argument("--json", default=None, help="Also write the result to this file.")
  args = parser.parse_args()
  if args.tiny:
    args.scale, args.encoder, args.visual_tokens = "tiny", "vit-tiny", 64
    args.batch, args.seq = min(args.batch, 8), min(args.seq, 128)

  print(f"jax {jax.__version__}; devices: {jax.device_count()} x {jax.devices()[0].device_kind}", flush=True)
  config = model_config(args.scale, args.encoder, args.visual_tokens, args.remat, "float32" if args.tiny else None)
  result = sft_bench.run_sft_bench(config, batch_size=args.batch, seq_len=args.seq, steps=args.steps,
                                   warmup_steps=args.warmup, mesh_shape={"data": 1, "fsdp": -1, "tensor": 1})
  result.update(scale=args.scale, encoder=args.encoder)
  mfu = "unknown (no peak FLOP/s for this device)" if result["mfu"] is None else f"{100 * result['mfu']:.1f}%"
  print(f"SFT step, LM {args.scale} + {args.encoder} ({result['parameters'] / 1e9:.3f}B parameters, "
        f"{result['trainable_parameters'] / 1e9:.3f}B trained), batch {args.batch} x {args.seq} with "
        f"{args.visual_tokens} visual tokens per row:")
  print(f"  {1000 * result['step_time_seconds']:.1f} ms/step, {result['images_per_second']:,.1f} images/s, "
        f"{result['tokens_per_second']:,.0f} tokens/s, MFU {mfu}, "
        f"{result['flops_per_step'] / 1e12:.2f} TFLOP/step, peak memory "
        f"{result['peak_memory_bytes'] / 1024 ** 3:.1f} GiB, "
        f"loss {result['loss_after_warmup']:.3f} -> {result['loss_last']:.3f}", flush=True)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
