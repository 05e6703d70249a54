"""Tests for visual_priors.train.config: defaults and early, clear validation errors."""

import pytest

from visual_priors.train import config as config_lib


def test_paper_defaults():
  config = config_lib.default_config()
  assert config.seed == 42 and config.optimizer.peak_lr == 3e-4 and config.optimizer.warmup_steps == 1024
  assert config.batch_size * config.seq_len == 1024 * 2048
  # 30B tokens at ~2.1M tokens per step, rounded up.
  assert config_lib.total_steps(config) == -(-30_000_000_000 // (1024 * 2048))


def test_a_small_run_config_validates(run_config):
  config_lib.validate(run_config)
  assert config_lib.total_steps(run_config) == 6


@pytest.mark.parametrize("change, message", [
    (lambda c: c.__setitem__("learning_rate", 1.0), r"Unknown config keys \['learning_rate'\]"),
    (lambda c: c.optimizer.__setitem__("lr", 1.0), r"Unknown config keys \['optimizer.lr'\]"),
    (lambda c: c.model.__setitem__("d_mdl", 8), "Unknown model override"),
    (lambda c: c.__setitem__("batch_size", 0), "batch_size must be a positive integer"),
    (lambda c: c.checkpoint.__setitem__("keep", -1), "checkpoint.keep must be a positive integer"),
    (lambda c: c.__setitem__("batch_size", 12), "batch_size 12 is not divisible by data-parallel size 8"),
    (lambda c: c.__setitem__("grad_accum_steps", 2), "x grad_accum_steps 2 = 16"),
    (lambda c: c.__setitem__("token_budget", 100), "exactly one of num_steps"),
    (lambda c: c.__setitem__("work_dir", ""), "work_dir is empty"),
    (lambda c: c.__setitem__("remat", "some"), "remat 'some' is not one of"),
    (lambda c: c.__setitem__("trainable", "(("), "trainable regex"),
    (lambda c: c.optimizer.__setitem__("warmup_steps", 6), "warmup_steps \\(6\\) must be smaller"),
    (lambda c: c.mesh.__setitem__("tensor", 3), "Mesh"),
])
def test_bad_configs_fail_before_any_compile(run_config, change, message):
  change(run_config)
  with pytest.raises(ValueError, match=message):
    config_lib.validate(run_config)


def test_token_budget_rounds_up_to_whole_steps(run_config):
  run_config.num_steps, run_config.token_budget = 0, 8 * 16 * 10 + 1
  assert config_lib.total_steps(run_config) == 11
