"""Tests for visual_priors.train.pretrain: a tiny model learns, and the run leaves a checkpoint + manifest."""

import json
import pathlib

import pytest

from visual_priors.models import scales
from visual_priors.names import UnknownNameError
from visual_priors.train import checkpoint, pretrain


def test_validation_loss_falls_well_below_the_unigram_entropy(run_config, synthetic):
  run_config.batch_size, run_config.seq_len = 16, 32
  run_config.num_steps, run_config.log_every_steps = 40, 20
  run_config.eval_every_steps, run_config.checkpoint.every_steps = 40, 40
  run_config.optimizer.peak_lr, run_config.optimizer.warmup_steps = 1e-2, 10
  result = pretrain.pretrain(
      run_config, train_data=synthetic.train_data(16, 32, 64),
      eval_sets={"progressions": synthetic.eval_set(16, 32, 64)}, data_identity={"mixture": "synthetic"})

  manifest = json.loads((pathlib.Path(run_config.work_dir) / "manifest.json").read_text())
  entropy = manifest["unigram_entropy_nats"]["progressions"]
  assert entropy > 4.0  # near-uniform unigrams over 63 tokens (log 63 = 4.14)
  initial = json.loads((pathlib.Path(run_config.work_dir) / "metrics.jsonl").read_text().splitlines()[0])
  assert initial["step"] == 0 and initial["eval/progressions/loss"] > entropy
  assert manifest["final_metrics"]["eval/progressions/loss"] < 0.25 * entropy

  assert manifest["parameters"] == scales.count_params(pretrain.decoder_config(run_config))
  assert manifest["tokens_seen"] == result.tokens_seen == 40 * 16 * 32
  assert manifest["data"] == {"mixture": "synthetic"}
  assert manifest["config"]["scale"] == "nano" and manifest["model"]["vocab_size"] == 64
  assert manifest["versions"]["jax"] and manifest["versions"]["python"]
  saved = checkpoint.Checkpointer(manifest["checkpoint_dir"], keep=1, async_save=False)
  assert saved.latest_step() == 40


def test_decoder_config_layers_scale_run_settings_and_overrides(run_config):
  run_config.compute_dtype = None
  assert pretrain.decoder_config(run_config).dtype == scales.SCALES["nano"].dtype
  run_config.compute_dtype, run_config.remat = "bfloat16", "full"
  model = pretrain.decoder_config(run_config)
  assert (model.dtype, model.remat, model.vocab_size) == ("bfloat16", "full", 64)
  run_config.scale = "nan0"
  with pytest.raises(UnknownNameError, match="Did you mean 'nano'"):
    pretrain.decoder_config(run_config)


def test_unigram_entropy_of_known_counts():
  # Tokens 1,1,2,3 with weights 1: p = (1/2, 1/4, 1/4) -> H = 1.5 bits.
  batch = {"decoder_target_tokens": [[1, 1, 2, 3, 9]], "decoder_loss_weights": [[1, 1, 1, 1, 0]]}
  assert pretrain.unigram_entropy(lambda: [batch]) == pytest.approx(1.5 * 0.6931471805599453)
