"""Tests for visual_priors.train.trainer: exact resume after a kill, NaN stop, metrics, data errors."""

import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from visual_priors.models import scales
from visual_priors.models.decoder import Decoder
from visual_priors.train import checkpoint, step as step_lib, trainer


class Killed(Exception):
  pass


def _train(config, synthetic, **kwargs):
  model_config = scales.get_scale(config.scale, dtype=config.compute_dtype, **config.model)
  kwargs.setdefault("train_data", synthetic.train_data(config.batch_size, config.seq_len, model_config.vocab_size))
  kwargs.setdefault("loss_fn", step_lib.lm_loss)
  return trainer.train(config, model_factory=lambda rngs: Decoder(model_config, rngs=rngs),
                       features=step_lib.LM_FEATURES, **kwargs)


def _rows(work_dir):
  return [json.loads(line) for line in (pathlib.Path(work_dir) / "metrics.jsonl").read_text().splitlines()]


def _losses(work_dir):
  return {row["step"]: row["loss"] for row in _rows(work_dir) if "loss" in row}


def test_a_run_killed_after_step_k_resumes_to_bit_identical_losses(run_config, synthetic, tmp_path):
  run_config.work_dir = str(tmp_path / "uninterrupted")
  result = _train(run_config, synthetic)
  assert result.step == 6 and result.tokens_seen == 6 * 8 * 16
  uninterrupted = _losses(run_config.work_dir)
  assert sorted(uninterrupted) == [1, 2, 3, 4, 5, 6]

  run_config.work_dir = str(tmp_path / "killed")

  def kill_after_step_4(step):
    if step == 4:
      raise Killed()

  with pytest.raises(Killed):
    _train(run_config, synthetic, on_step=kill_after_step_4)
  assert checkpoint.Checkpointer(tmp_path / "killed" / "checkpoints", keep=5, async_save=False).all_steps() == [2, 4]
  _train(run_config, synthetic)  # a fresh start of the same run resumes at step 4
  resumed = _losses(run_config.work_dir)
  assert [row["step"] for row in _rows(run_config.work_dir) if "loss" in row] == [1, 2, 3, 4, 5, 6]
  assert resumed == uninterrupted  # exact float equality, steps 1..6 (5 and 6 after the resume)


def test_steps_rerun_after_a_resume_are_logged_once(run_config, synthetic, tmp_path):
  """Killed after step 5 with the newest checkpoint at 4: step 5 runs twice, its metrics row is kept once."""
  run_config.work_dir = str(tmp_path / "killed_late")

  def kill_after_step_5(step):
    if step == 5:
      raise Killed()

  with pytest.raises(Killed):
    _train(run_config, synthetic, on_step=kill_after_step_5)
  assert [row["step"] for row in _rows(run_config.work_dir) if "loss" in row] == [1, 2, 3, 4, 5]
  _train(run_config, synthetic)
  assert [row["step"] for row in _rows(run_config.work_dir) if "loss" in row] == [1, 2, 3, 4, 5, 6]


def test_metrics_reach_tensorboard_and_jsonl_with_eval_and_unknown_mfu(run_config, synthetic):
  run_config.num_steps, run_config.log_every_steps = 4, 2
  _train(run_config, synthetic, eval_sets={"val": synthetic.eval_set(8, run_config.seq_len, 64)},
         flops_per_token=1e6)
  events = event_accumulator.EventAccumulator(str(pathlib.Path(run_config.work_dir) / "tensorboard"))
  events.Reload()
  tags = set(events.Tags()["scalars"])
  assert {"loss", "learning_rate", "grad_norm", "tokens_per_second", "step_time_seconds", "tokens_seen",
          "eval/val/loss"} <= tags
  assert [e.step for e in events.Scalars("loss")] == [2, 4]
  assert [e.step for e in events.Scalars("eval/val/loss")] == [0, 3, 4]
  # The update of step s uses the schedule at s - 1: half the peak at step 2 (warm-up of 2 steps), and at
  # step 4 of 4 the cosine midpoint between the peak and its final 10%.
  peak = run_config.optimizer.peak_lr
  learning_rates = {e.step: e.value for e in events.Scalars("learning_rate")}
  assert learning_rates[2] == pytest.approx(peak / 2)
  assert learning_rates[4] == pytest.approx((peak + 0.1 * peak) / 2)
  rows = [row for row in _rows(run_config.work_dir) if "loss" in row]
  assert all(row["mfu"] is None for row in rows)  # CPU: no peak FLOP/s, so no guess
  assert rows[-1]["tokens_per_second"] == pytest.approx(8 * 16 / rows[-1]["step_time_seconds"])


class PoisonedIterator:
  """Delegates to a grain iterator; its `poison_at`-th batch makes the loss NaN."""

  def __init__(self, inner, poison_at):
    self.inner, self.poison_at, self.served = inner, poison_at, 0

  def __next__(self):
    batch = dict(next(self.inner))
    self.served += 1
    if self.served == self.poison_at:
      batch["decoder_loss_weights"] = np.full_like(batch["decoder_loss_weights"], -1)
    return batch

  def get_state(self):
    return {"inner": self.inner.get_state(), "served": self.served}

  def set_state(self, state):
    self.inner.set_state(state["inner"])
    self.served = state["served"]


def _nan_on_negative_weights(model, batch, rng):
  loss_sum, tokens = step_lib.lm_loss(model, batch, rng)
  return jnp.where(jnp.any(batch["decoder_loss_weights"] < 0), jnp.nan, loss_sum), tokens


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(run_config, synthetic):
  grain_data = synthetic.train_data(run_config.batch_size, run_config.seq_len, 64)
  run_config.log_every_steps = 6  # the NaN must be caught at the checkpoint step, not only at log steps
  with pytest.raises(trainer.NonFiniteLossError, match=r"loss is nan at step 5.*last good checkpoint is step 4"):
    _train(run_config, synthetic, loss_fn=_nan_on_negative_weights,
           train_data=lambda: PoisonedIterator(grain_data(), poison_at=5))
  directory = pathlib.Path(run_config.work_dir) / "checkpoints"
  assert checkpoint.Checkpointer(directory, keep=5, async_save=False).all_steps() == [2, 4]


def test_running_out_of_data_is_a_clear_error(run_config, synthetic):
  batches = synthetic.batches(2, run_config.batch_size, run_config.seq_len, 64)

  class TwoBatches:
    def __init__(self):
      self.items = iter(batches)

    def __next__(self):
      return next(self.items)

    def get_state(self):
      return {}

    def set_state(self, state):
      del state

  with pytest.raises(ValueError, match="training data ran out before step 3 of 6"):
    _train(run_config, synthetic, train_data=TwoBatches)


def test_eval_batches_stop_at_the_limit_or_when_exhausted():
  assert list(trainer._in_lockstep(iter([1, 2, 3]), max_batches=2)) == [1, 2]
  assert list(trainer._in_lockstep([1, 2], max_batches=0)) == [1, 2]
