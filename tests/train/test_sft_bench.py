"""Tests for visual_priors.train.sft_bench through `python -m visual_priors bench sft`."""

import json

from visual_priors import cli


def test_bench_sft_times_a_real_step_and_counts_all_three_towers(capsys):
  assert cli.main(["bench", "sft", "--scale", "nano", "--encoder", "vit-nano", "--visual-tokens", "4", "--batch", "8",
                   "--seq", "32", "--steps", "2", "--warmup", "1", "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["step_time_seconds"] > 0 and result["tokens_per_second"] > 0 and result["images_per_second"] > 0
  assert result["peak_memory_bytes"] > 0
  assert result["mfu"] is None  # no peak FLOP/s is known for a CPU
  assert result["trainable_parameters"] < result["parameters"]  # the encoder stays frozen
