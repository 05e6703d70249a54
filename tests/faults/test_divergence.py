"""The NaN guard: a NaN or a diverging loss is never kept as "last good"; a diverged checkpoint is never resumed.

A NaN at a chosen step and a loss that jumps to ~1e6 both stop the run before the bad state is saved; a run
refuses to resume from a diverged checkpoint with one line naming the stage and the step.
"""

import pytest

import fault_tools as ft
from visual_priors.train import checkpoint, trainer


class Killed(Exception):
  pass


def _steps(work_dir):
  return checkpoint.Checkpointer(work_dir / "checkpoints", keep=10, async_save=False).all_steps()


def test_nan_at_a_chosen_step_stops_before_saving_and_the_rerun_matches_an_uninterrupted_run(tmp_path):
  ft.train(ft.run_config(tmp_path / "clean"))
  config = ft.run_config(tmp_path / "nan")
  data = ft.synthetic_data()
  with pytest.raises(trainer.NonFiniteLossError) as raised:
    ft.train(config, train_data=lambda: ft.Poisoned(data(), 5, 5), loss_fn=ft.scaled_loss(None))
  message = str(raised.value)
  assert message.startswith("pretrain: ") and "loss is nan at step 5" in message, message
  assert "last good checkpoint is step 4" in message and "\n" not in message
  assert _steps(tmp_path / "nan") == [2, 4]
  ft.train(config, train_data=lambda: ft.Poisoned(data(), None))  # clean data again: resumes from step 4
  assert ft.losses(tmp_path / "nan") == ft.losses(tmp_path / "clean")  # steps 1..6, exact


def test_a_diverging_loss_is_never_saved_and_the_run_stops_naming_the_last_good_step(tmp_path):
  config = ft.run_config(tmp_path / "lm")
  data = ft.synthetic_data()
  with pytest.raises(trainer.DivergedLossError) as raised:  # before the fix: finished "fine" with step 6 saved
    ft.train(config, train_data=lambda: ft.Poisoned(data(), 5), loss_fn=ft.scaled_loss(1e6))
  message = str(raised.value)
  assert message.startswith("pretrain: ") and "at step 6" in message and "diverged" in message, message
  assert "divergence_factor 3 x the initial loss" in message and "last good checkpoint is step 4" in message
  assert _steps(tmp_path / "lm") == [2, 4]


def test_resuming_from_a_diverged_checkpoint_is_refused_with_one_line_naming_stage_and_step(tmp_path):
  work_dir = tmp_path / "lm"
  config = ft.run_config(work_dir, steps=8)
  config.divergence_factor = 0  # the guard off: steps 6 and 8 would be saved diverged
  data = ft.synthetic_data()

  def kill_after_step_6(step):
    if step == 6:
      raise Killed()

  with pytest.raises(Killed):
    ft.train(config, train_data=lambda: ft.Poisoned(data(), 5), loss_fn=ft.scaled_loss(1e6), on_step=kill_after_step_6)
  assert _steps(work_dir) == [2, 4, 6]
  config.divergence_factor = 3.0
  with pytest.raises(checkpoint.DivergedCheckpointError) as raised:  # before the fix: resumed a dead model
    ft.train(config, stage="sft")
  message = str(raised.value)
  assert "\n" not in message and message.startswith("sft: refusing to resume from checkpoint step 6"), message
  assert "diverged" in message and "last good step is 4" in message and str(work_dir / "checkpoints" / "6") in message
  assert _steps(work_dir) == [2, 4, 6]  # nothing deleted
