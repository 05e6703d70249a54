"""Tests for visual_priors.train.optimizer: the schedule, decoupled weight decay by regex, clipping."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from visual_priors.train import optimizer


def test_defaults_are_the_papers():
  settings = optimizer.AdamWSettings()
  assert settings.peak_lr == 3e-4 and settings.warmup_steps == 1024


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_final_fraction():
  settings = optimizer.AdamWSettings(peak_lr=1e-3, warmup_steps=10, final_lr_fraction=0.1)
  schedule = optimizer.learning_rate_schedule(settings, total_steps=110)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(5e-4)
  assert float(schedule(10)) == pytest.approx(1e-3)
  assert float(schedule(60)) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4), rel=1e-5)  # cosine midpoint
  assert float(schedule(110)) == pytest.approx(1e-4)
  decay = [float(schedule(s)) for s in range(10, 111)]
  assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_weight_decay_applies_only_to_matching_paths():
  settings = optimizer.AdamWSettings(peak_lr=0.1, warmup_steps=0, final_lr_fraction=1.0, weight_decay=0.5,
                                     decay_regex=r".*kernel")
  tx, _ = optimizer.make_optimizer(settings, total_steps=10)
  params = {"dense": {"kernel": jnp.ones((2, 2)), "scale": jnp.ones((2,))}}
  zero_grads = {"dense": {"kernel": jnp.zeros((2, 2)), "scale": jnp.zeros((2,))}}
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_array_equal(updates["dense"]["scale"], np.zeros(2))


def test_clipping_bounds_the_first_update_direction():
  settings = optimizer.AdamWSettings(peak_lr=1.0, warmup_steps=0, final_lr_fraction=1.0, weight_decay=0.0,
                                     clip_norm=1.0, b1=0.0, b2=0.0, eps=1e-12)
  tx, _ = optimizer.make_optimizer(settings, total_steps=10)
  params = {"w": jnp.zeros(3)}
  updates, _ = tx.update({"w": jnp.array([300.0, -400.0, 0.0])}, tx.init(params), params)
  # Adam normalises per coordinate, so after clipping to norm 1 the update is -sign(g) * lr.
  np.testing.assert_allclose(updates["w"], [-1.0, 1.0, 0.0], atol=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"warmup_steps": 10}, "warmup_steps \\(10\\) must be smaller"),
    ({"peak_lr": 0.0}, "peak_lr must be > 0"),
    ({"b2": 1.0}, "b2 must be in"),
    ({"decay_regex": "["}, "decay_regex regex"),
])
def test_bad_settings_are_rejected(change, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(optimizer.AdamWSettings(warmup_steps=1), **change).validate(total_steps=10)
