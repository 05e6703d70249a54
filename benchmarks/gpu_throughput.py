"""The throughput targets on one GPU: LM and SFT step MFU and cached-decoding HBM-bandwidth use, each with PASS/MISS.

Needs only jax (with CUDA), flax and optax: run from the repository root on one H100/H200,

    python benchmarks/gpu_throughput.py [--cases lm-1.3b,decode-1b-mllm] [--time-limit 270] [--json out.json]

Cases and targets (bf16 compute, fp32 master weights, AdamW, no remat):
  lm-1.3b         LM train step, scale 1.3b, batch 8 x 2048            MFU >= 55%
  lm-340m         LM train step, scale 340m, batch 16 x 2048           MFU >= 45%
  sft-1b          SFT step (projector + LM train, encoder frozen): LM 1b + siglip-b16-224 resampled to 576
                  visual tokens, batch 8 x 2048                        MFU >= 55%
  decode-1b-mllm  greedy decoding with the KV cache (`eval.decode.greedy_decode`) of that MLLM: batch 64,
                  prompts of BOS + 576 image slots + 32 text tokens, 128 new tokens   >= 30% of the HBM bound

MFU = tokens/s x model FLOPs per token / peak dense bf16 FLOP/s (`visual_priors.models.flops`: matmuls, causal
attention at half; SFT adds the frozen encoder's forward and the projector; `visual_priors.train.mfu`).
Decoding: a decode step's time is (T(1 + N) - T(1)) / N, where T(n) is the best of a few `greedy_decode` calls with
max_new_tokens=n (eos_id -1, so every row runs all n): T(1) is the prefill (encoder, projector, prompt forward,
first token), the difference is N single-token steps. The bound of a step is the bytes it must read over the
device's peak HBM bandwidth (`mfu.peak_bandwidth_per_device`): the LM's weights in the compute dtype (norm scales
in their own; the input embedding table left out when untied, since a step gathers only B rows of it) plus the
whole KV cache the step attends over, n_layers x 2 x n_kv_heads x head_dim x cache length x batch x bytes, with
cache length = prompt bucket + N (`eval.decode.prompt_bucket`). Fraction = bound step time / measured step time.

Each case runs in its own process under a share of `--time-limit` (what earlier cases leave over is passed on),
so a case whose initialisation or compile runs long is killed and reported, and the others still run; each line
is printed (flushed) as soon as its case finishes, and `--json` is rewritten after every case. Compiled programs
go to `--compile-cache`, so a second run on the same machine skips the compiles. On a device with no known peak
(CPUs) the targets print as "target unmeasurable on this device". `--tiny` runs the same code at CPU sizes (the
test suite does, tests/test_gpu_throughput.py). Exit status 0 when every case measured, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

# Let XLA use most of the GPU (its default is 75%); set before jax starts (the case processes inherit it).
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the case processes import visual_priors from this checkout
RESULT_PREFIX = "RESULT "


@dataclasses.dataclass(frozen=True)
class Shape:
  """A case's sizes: LM scale, batch, sequence (train) and, for MLLM cases, encoder, visual tokens, decoding."""

  scale: str
  batch: int
  seq: int = 0
  encoder: str = ""
  visual_tokens: int = 0
  text_tokens: int = 0  # decoding: text after the image slots in each prompt
  new_tokens: int = 0  # decoding: N timed single-token steps


@dataclasses.dataclass(frozen=True)
class Case:
  """A case: what it measures, its target, its share of the time limit, and its sizes (full and --tiny)."""

  kind: str  # "lm", "sft" or "decode"
  metric: str  # "mfu" or "hbm_bandwidth_fraction"
  target: float
  share: float  # relative share of the time limit
  full: Shape
  tiny: Shape


CASES: dict[str, Case] = {
    "lm-1.3b": Case("lm", "mfu", 0.55, 3, Shape("1.3b", 8, 2048), Shape("nano", 8, 32)),
    "lm-340m": Case("lm", "mfu", 0.45, 2, Shape("340m", 16, 2048), Shape("nano", 8, 32)),
    "sft-1b": Case("sft", "mfu", 0.55, 3, Shape("1b", 8, 2048, "siglip-b16-224", 576),
                   Shape("nano", 8, 32, "vit-nano", 4)),
    "decode-1b-mllm": Case("decode", "hbm_bandwidth_fraction", 0.30, 2,
                           Shape("1b", 64, 0, "siglip-b16-224", 576, text_tokens=32, new_tokens=128),
                           Shape("nano", 4, 0, "vit-nano", 4, text_tokens=8, new_tokens=512)),
}


# ---- one case, in its own process ----

def _mllm_config(shape: Shape):
  from visual_priors.models import scales
  from visual_priors.models.mllm import MLLMConfig, feature_extractor
  from visual_priors.models.vision import get_encoder
  llm = scales.get_scale(shape.scale, remat="none")
  vision = dataclasses.replace(feature_extractor(get_encoder(shape.encoder)), dtype=llm.dtype)
  return MLLMConfig(vision=vision, llm=llm, projector="mlp2x_gelu", num_visual_tokens=shape.visual_tokens)


def _train_case(case: Case, shape: Shape, steps: int, warmup: int) -> dict[str, Any]:
  from visual_priors.models import scales
  from visual_priors.train import bench, sft_bench
  mesh = {"data": 1, "fsdp": -1, "tensor": 1}
  if case.kind == "lm":
    result = bench.run_bench(scales.get_scale(shape.scale, remat="none"), batch_size=shape.batch,
                             seq_len=shape.seq, steps=steps, warmup_steps=warmup, mesh_shape=mesh)
  else:
    result = sft_bench.run_sft_bench(_mllm_config(shape), batch_size=shape.batch, seq_len=shape.seq,
                                     steps=steps, warmup_steps=warmup, mesh_shape=mesh)
  result["value"] = result["mfu"]
  return result


def decode_bytes_per_step(llm: Any, batch: int, cache_length: int) -> dict[str, int]:
  """Bytes one decode step of `llm` (a Decoder) must read: its weights and the KV cache it attends over."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  config = llm.config
  compute = jnp.dtype(config.dtype).itemsize
  leaves = jax.tree.leaves(nnx.state(llm, nnx.Param))
  weights = sum(leaf.size * (compute if leaf.ndim >= 2 else leaf.dtype.itemsize) for leaf in leaves)
  if not config.tie_embeddings:  # the input table is only gathered (B rows); the output head is read whole
    weights -= config.vocab_size * config.d_model * compute
  kv_cache = config.n_layers * 2 * config.n_kv_heads * config.head_dim * cache_length * batch * compute
  return {"weight_bytes": int(weights), "kv_cache_bytes": int(kv_cache)}


def _decode_case(shape: Shape, repeats: int) -> dict[str, Any]:
  import jax
  import numpy as np
  from flax import nnx
  from visual_priors.eval import decode
  from visual_priors.models.mllm import MLLM
  from visual_priors.train import mfu

  config = _mllm_config(shape)
  model = MLLM(config, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  slots, text = shape.visual_tokens, shape.text_tokens
  prompt_length = 1 + slots + text
  prompts = [np.concatenate([[0], np.zeros(slots, np.int32), rng.integers(3, config.llm.vocab_size, text)])
             .astype(np.int32) for _ in range(shape.batch)]
  mask = np.concatenate([[0], np.ones(slots, np.int32), np.zeros(text, np.int32)]).astype(np.int32)
  size = config.vision.image_size
  images = rng.uniform(-1, 1, (shape.batch, size, size, 3)).astype(np.float32)

  def seconds(max_new_tokens: int) -> float:
    start = time.perf_counter()
    out = decode.greedy_decode(model, prompts, max_new_tokens=max_new_tokens, eos_id=-1, images=images,
                               image_masks=[mask] * shape.batch, batch_size=shape.batch)
    elapsed = time.perf_counter() - start
    if any(row.size != max_new_tokens for row in out):
      raise RuntimeError(f"greedy_decode stopped early: {[row.size for row in out]} != {max_new_tokens}")
    return elapsed

  n = shape.new_tokens
  start = time.perf_counter()
  seconds(1)  # compiles the prefill-only program
  seconds(1 + n)  # and the one with n decode steps
  compile_seconds = time.perf_counter() - start
  prefill = min(seconds(1) for _ in range(repeats))
  full = min(seconds(1 + n) for _ in range(repeats))
  if full <= prefill:
    raise RuntimeError(f"{n} decode steps took no measurable time ({full:.4f} s with them, {prefill:.4f} s "
                       "without); use more new tokens.")
  step_seconds = (full - prefill) / n
  cache_length = decode.prompt_bucket(prompt_length) + n  # columns of the cache with max_new_tokens = 1 + n
  read = decode_bytes_per_step(model.llm, shape.batch, cache_length)
  device = jax.devices()[0]
  bandwidth = mfu.peak_bandwidth_per_device(device.device_kind)
  bound = None if bandwidth is None else (read["weight_bytes"] + read["kv_cache_bytes"]) / bandwidth
  return {
      "batch_size": shape.batch, "prompt_length": prompt_length, "prompt_bucket": decode.prompt_bucket(prompt_length),
      "num_visual_tokens": slots, "new_tokens": n, "cache_length": cache_length, "repeats": repeats,
      "device_kind": device.device_kind, "num_devices": 1, "compile_seconds": compile_seconds,
      "prefill_seconds": prefill, "decode_seconds": full - prefill, "step_time_seconds": step_seconds,
      "tokens_per_second": shape.batch / step_seconds, **read, "peak_bandwidth_bytes_per_second": bandwidth,
      "bound_step_seconds": bound, "value": None if bound is None else bound / step_seconds,
  }


def run_case(name: str, tiny: bool, steps: int, warmup: int, compile_cache: str) -> dict[str, Any]:
  """Measures one case in this process; the result's "value" is its metric (None where unmeasurable)."""
  import jax
  if compile_cache:
    jax.config.update("jax_compilation_cache_dir", compile_cache)
  case = CASES[name]
  shape = case.tiny if tiny else case.full
  start = time.perf_counter()
  if case.kind == "decode":
    result = _decode_case(shape, repeats=max(1, min(steps, 3)))
  else:
    result = _train_case(case, shape, steps, warmup)
  result.update(case=name, status="measured", kind=case.kind, metric=case.metric, target=case.target,
                shape=dataclasses.asdict(shape), jax_version=jax.__version__,
                case_seconds=time.perf_counter() - start)
  return result


# ---- the driver: one process per case, each under its share of the time limit ----

def format_result(result: dict[str, Any]) -> str:
  """One line: the case's measurement next to its target, PASS/MISS (or why there is no number)."""
  name, case = result["case"], CASES[result["case"]]
  status = result["status"]
  if status != "measured":
    return f"{name}: {status.upper()} ({result.get('reason', '')}); target {_target(case)} unmeasured"
  shape = Shape(**result["shape"])
  label = "MFU" if case.metric == "mfu" else "HBM-bandwidth bound"
  if result["value"] is None:
    verdict = (f"{label}: target unmeasurable on this device ({result['device_kind']}: no known peak); "
               f"target {_target(case)}")
  else:
    value = f"MFU {100 * result['value']:.1f}%" if case.metric == "mfu" else \
        f"{100 * result['value']:.1f}% of the {label}"
    verdict = f"{value} vs target {_target(case)} {'PASS' if result['value'] >= case.target else 'MISS'}"
  if case.kind == "decode":
    sizes = (f"LM {shape.scale} + {shape.encoder}, batch {shape.batch}, prompt {result['prompt_length']} "
             f"(bucket {result['prompt_bucket']}), {shape.new_tokens} new tokens")
    numbers = (f"{result['tokens_per_second']:,.0f} tokens/s, {1000 * result['step_time_seconds']:.2f} ms/step "
               f"(prefill {1000 * result['prefill_seconds']:.0f} ms); reads "
               f"{(result['weight_bytes'] + result['kv_cache_bytes']) / 1e9:.2f} GB/step")
    if result["bound_step_seconds"] is not None:
      numbers += f" (bound {1000 * result['bound_step_seconds']:.2f} ms/step)"
  else:
    sizes = f"{shape.scale}" + (f" + {shape.encoder}, {shape.visual_tokens} visual tokens" if shape.encoder else "")
    sizes += f", {result['parameters'] / 1e9:.2f}B parameters, batch {shape.batch} x {shape.seq}"
    numbers = (f"{1000 * result['step_time_seconds']:.1f} ms/step, {result['tokens_per_second']:,.0f} tokens/s, "
               f"compile+warmup {result['warmup_seconds']:.1f} s, "
               f"peak memory {result['peak_memory_bytes'] / 1024 ** 3:.1f} GiB")
  return f"{name} ({sizes}): {numbers}; {verdict} [case {result['case_seconds']:.0f} s]"


def _target(case: Case) -> str:
  return f">= {100 * case.target:.0f}%"


def _run_in_subprocess(name: str, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
  command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", name, "--steps", str(args.steps),
             "--warmup", str(args.warmup), "--compile-cache", args.compile_cache] + (["--tiny"] if args.tiny else [])
  start = time.perf_counter()
  try:  # stderr passes through, so a failing case's traceback shows
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=timeout, cwd=REPO, check=False)
  except subprocess.TimeoutExpired:
    return {"case": name, "status": "timed out", "reason": f"killed after {timeout:.0f} s; raise --time-limit"}
  lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
  if done.returncode or not lines:
    return {"case": name, "status": "failed",
            "reason": f"exit {done.returncode} after {time.perf_counter() - start:.0f} s; see stderr above"}
  return json.loads(lines[-1][len(RESULT_PREFIX):])


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", default=",".join(CASES), help=f"Comma-separated, of: {', '.join(CASES)}.")
  parser.add_argument("--tiny", action="store_true", help="CPU sizes (scale nano, vit-nano): a smoke run.")
  parser.add_argument("--steps", type=int, default=10, help="Timed train steps per case (decoding: best of 3).")
  parser.add_argument("--warmup", type=int, default=2, help="Untimed train steps per case (compile included).")
  parser.add_argument("--time-limit", type=float, default=270.0, help="Seconds for all cases together.")
  parser.add_argument("--compile-cache", default=os.path.join(tempfile.gettempdir(), "visual_priors_bench_cache"),
                      help="JAX persistent compilation cache folder ('' for none).")
  parser.add_argument("--json", default=None, help="Also write the results to this file (after every case).")
  parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  names = [name.strip() for name in args.cases.split(",") if name.strip()]
  unknown = [name for name in names if name not in CASES]
  if unknown or not names:
    parser.error(f"Unknown or no cases {unknown}; choose from {', '.join(CASES)}.")
  if args.steps <= 0 or args.warmup <= 0:
    parser.error("--steps and --warmup must be positive.")

  if args.child:
    result = run_case(args.child, args.tiny, args.steps, args.warmup, args.compile_cache)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0

  print(f"jax {importlib.metadata.version('jax')}; cases: {', '.join(names)}; time limit {args.time_limit:.0f} s"
        + (" (tiny sizes)" if args.tiny else ""), flush=True)
  deadline = time.monotonic() + args.time_limit
  results: list[dict[str, Any]] = []
  device_shown = False
  for index, name in enumerate(names):
    remaining = deadline - time.monotonic()
    share = CASES[name].share / sum(CASES[other].share for other in names[index:])
    if remaining <= 1:
      result = {"case": name, "status": "skipped", "reason": "no time left; raise --time-limit"}
    else:
      result = _run_in_subprocess(name, args, remaining * share)
    if "device_kind" in result and not device_shown:
      print(f"device: {result['device_kind']}", flush=True)
      device_shown = True
    results.append(result)
    print(format_result(result), flush=True)
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps({"cases": results}, indent=2) + "\n")
  return 0 if all(result["status"] == "measured" for result in results) else 1


if __name__ == "__main__":
  raise SystemExit(main())
