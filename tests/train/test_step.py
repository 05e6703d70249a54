"""Tests for visual_priors.train.step: one compile, frozen leaves untouched, exact gradient accumulation."""

import jax
import numpy as np
import pytest
from flax import nnx

from visual_priors.models import scales, sharding
from visual_priors.models.decoder import Decoder
from visual_priors.train import losses, optimizer, partition, state as state_lib, step as step_lib

CONFIG = scales.get_scale("nano", dtype="float32", vocab_size=64)
RULES = sharding.DEFAULT_LOGICAL_AXIS_RULES
FROZEN = r"embedder/.*|layers/0/attn/.*"


def _setup(accum_steps):
  tx, schedule = optimizer.make_optimizer(optimizer.AdamWSettings(warmup_steps=1, peak_lr=1e-2), 20)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  spec = state_lib.build_state_spec(lambda rngs: Decoder(CONFIG, rngs=rngs), tx, mesh, RULES, frozen=FROZEN)
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(spec.graphdef, step_lib.lm_loss, tx, schedule, grad_accum_steps=accum_steps,
                               mesh=mesh, rules=RULES),
      spec.shardings, mesh, step_lib.LM_FEATURES)
  return spec, mesh, train_step


@pytest.fixture(scope="module")
def one_micro_batch():
  return _setup(accum_steps=1)


def _run(setup, batches):
  spec, mesh, train_step = setup
  state = spec.create()
  history = []
  for batch in batches:
    state, metrics = train_step(state, step_lib.global_batch(batch, mesh, step_lib.LM_FEATURES))
    history.append(jax.device_get(metrics))
  return state, history


def test_steps_compile_once_and_leave_frozen_leaves_bit_identical(one_micro_batch, synthetic):
  spec, _, train_step = one_micro_batch
  initial = jax.device_get(spec.create())
  state, _ = _run(one_micro_batch, synthetic.batches(4, 8, 16, CONFIG.vocab_size))
  assert train_step._cache_size() == 1
  assert int(state.step) == 4
  frozen_after = partition.flatten_paths(jax.device_get(state.frozen))
  assert "embedder/embedding" in frozen_after and "layers/0/attn/q_proj/kernel" in frozen_after
  for path, value in partition.flatten_paths(initial.frozen).items():
    np.testing.assert_array_equal(frozen_after[path], value, err_msg=path)
  trained = jax.tree.leaves(jax.device_get(state.params))
  assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(initial.params), trained))


def test_reported_loss_is_the_models_mean_next_token_loss(one_micro_batch, synthetic):
  spec, _, _ = one_micro_batch
  batch = synthetic.batches(1, 8, 16, CONFIG.vocab_size)[0]
  initial = jax.device_get(spec.create())
  model = nnx.merge(spec.graphdef, partition.merge_trees(initial.params, initial.frozen))
  logits = model(batch["decoder_input_tokens"], batch["decoder_positions"], batch["decoder_segment_ids"])
  expected, _ = losses.next_token_loss(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])
  _, history = _run(one_micro_batch, [batch])
  np.testing.assert_allclose(history[0]["loss"], float(expected), rtol=1e-5)
  assert history[0]["tokens"] == batch["decoder_loss_weights"].sum()


def test_gradient_accumulation_matches_one_large_batch(one_micro_batch, synthetic):
  batches = synthetic.batches(3, 8, 16, CONFIG.vocab_size)
  state_one, history_one = _run(one_micro_batch, batches)
  state_four, history_four = _run(_setup(accum_steps=4), batches)
  for one, four in zip(history_one, history_four):
    np.testing.assert_allclose(one["loss"], four["loss"], rtol=1e-5)
    np.testing.assert_allclose(one["grad_norm"], four["grad_norm"], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(jax.device_get(state_one.params)),
                  jax.tree.leaves(jax.device_get(state_four.params))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_global_batch_refuses_rows_the_mesh_cannot_split(synthetic):
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  batch = synthetic.batches(1, 6, 16, CONFIG.vocab_size)[0]
  with pytest.raises(ValueError, match="6 rows cannot be split over data-parallel size 4"):
    step_lib.global_batch(batch, mesh, step_lib.LM_FEATURES)
  with pytest.raises(KeyError, match="lacks feature"):
    step_lib.global_batch({"decoder_input_tokens": batch["decoder_input_tokens"]}, mesh, step_lib.LM_FEATURES)
