"""Tests for benchmarks/gpu_throughput.py: the GPU throughput script run end to end at tiny size on the CPU."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from visual_priors.models import scales

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_throughput.py"


def _script_module():
  """The script as a module (its dataclasses need it registered in sys.modules while it loads)."""
  if "gpu_throughput" not in sys.modules:
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_throughput"] = module
    spec.loader.exec_module(module)
  return sys.modules["gpu_throughput"]


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  # One CPU device: the cases' meshes and decoding then run unsharded, as on one GPU (and compile faster).
  env["XLA_FLAGS"] = " ".join(flag for flag in env.get("XLA_FLAGS", "").split()
                              if not flag.startswith("--xla_force_host_platform_device_count"))
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                        env=env, check=False)


@pytest.mark.slow
def test_every_case_measures_a_number_at_tiny_size_and_reports_the_target_unmeasurable_on_cpu(tmp_path):
  out = tmp_path / "results.json"
  done = _run("--tiny", "--steps", "2", "--warmup", "1", "--compile-cache", str(tmp_path / "cache"),
              "--json", str(out))
  assert done.returncode == 0, done.stdout + done.stderr
  module = _script_module()
  results = {result["case"]: result for result in json.loads(out.read_text())["cases"]}
  assert list(results) == list(module.CASES)
  lines = done.stdout.splitlines()
  assert "device: cpu" in lines
  for name, result in results.items():
    case = module.CASES[name]
    assert result["status"] == "measured" and result["device_kind"] == "cpu"
    assert result["step_time_seconds"] > 0 and result["tokens_per_second"] > 0
    assert result["metric"] == case.metric and result["target"] == case.target
    assert result["value"] is None  # no peak FLOP/s or bandwidth is known for a CPU
    assert result["shape"] == dict(vars(case.tiny))
    line = next(line for line in lines if line.startswith(name + " ("))
    assert "tokens/s" in line and "target unmeasurable on this device" in line
    assert f"target >= {100 * case.target:.0f}%" in line
  for name in ("lm-1.3b", "lm-340m", "sft-1b"):
    assert results[name]["mfu"] is None and results[name]["loss_last"] > 0
  decoding = results["decode-1b-mllm"]
  shape = module.CASES["decode-1b-mllm"].tiny
  llm = scales.get_scale(shape.scale)
  assert decoding["prompt_length"] == 1 + shape.visual_tokens + shape.text_tokens
  assert decoding["cache_length"] == decoding["prompt_bucket"] + shape.new_tokens
  assert decoding["kv_cache_bytes"] == (llm.n_layers * 2 * llm.n_kv_heads * llm.head_dim * decoding["cache_length"]
                                        * shape.batch * 4)  # nano computes in float32
  assert 0 < decoding["weight_bytes"] < 4 * scales.count_params(llm)  # the input embedding table is not read
  assert decoding["prefill_seconds"] > 0 and decoding["decode_seconds"] > 0
  assert decoding["bound_step_seconds"] is None


def test_a_case_past_its_time_share_is_killed_and_reported_with_exit_status_1(tmp_path):
  out = tmp_path / "results.json"
  done = _run("--tiny", "--cases", "lm-340m", "--time-limit", "1.2", "--compile-cache", "", "--json", str(out),
              timeout=120)
  assert done.returncode == 1
  assert "lm-340m: TIMED OUT (killed after 1 s; raise --time-limit); target >= 45% unmeasured" in done.stdout
  assert json.loads(out.read_text())["cases"] == [
      {"case": "lm-340m", "status": "timed out", "reason": "killed after 1 s; raise --time-limit"}]


def test_a_measured_value_prints_next_to_its_target_with_pass_or_miss():
  module = _script_module()
  base = {"case": "lm-1.3b", "status": "measured", "shape": vars(module.CASES["lm-1.3b"].full),
          "device_kind": "NVIDIA H200", "parameters": 1.3e9, "step_time_seconds": 0.25, "tokens_per_second": 65536.0,
          "warmup_seconds": 30.0, "peak_memory_bytes": 60 * 1024 ** 3, "case_seconds": 50.0}
  assert module.format_result({**base, "value": 0.561}).endswith("MFU 56.1% vs target >= 55% PASS [case 50 s]")
  assert "MFU 47.5% vs target >= 55% MISS" in module.format_result({**base, "value": 0.475})
  decoding = {"case": "decode-1b-mllm", "status": "measured", "shape": vars(module.CASES["decode-1b-mllm"].full),
              "device_kind": "NVIDIA H100 80GB HBM3", "prompt_length": 609, "prompt_bucket": 1024,
              "tokens_per_second": 16000.0, "step_time_seconds": 0.004, "prefill_seconds": 0.3,
              "weight_bytes": 2e9, "kv_cache_bytes": 2e9, "bound_step_seconds": 4e9 / 3.35e12, "value": 0.2994,
              "case_seconds": 40.0}
  line = module.format_result(decoding)
  assert "batch 64, prompt 609 (bucket 1024), 128 new tokens" in line and "bound 1.19 ms/step" in line
  assert "29.9% of the HBM-bandwidth bound vs target >= 30% MISS" in line
