"""The decoder: output contract, parameter paths and axes, packing, tying, remat and precision."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.models.decoder import Decoder, DecoderConfig

CONFIG = DecoderConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                       dtype="float32", attention_impl="xla")


def _flat_params(model: nnx.Module) -> dict[str, nnx.Variable]:
  return {"/".join(map(str, path)): variable
          for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@nnx.jit
def _forward(model: Decoder, *args: jax.Array) -> jax.Array:
  return model(*args)


def _tokens(seed: int, shape=(2, 12), vocab=CONFIG.vocab_size) -> jax.Array:
  return jax.random.randint(jax.random.key(seed), shape, 1, vocab, jnp.int32)


def test_logits_shape_and_float32_with_bfloat16_compute():
  model = Decoder(dataclasses.replace(CONFIG, dtype="bfloat16"), rngs=nnx.Rngs(0))
  logits = _forward(model, _tokens(0))
  assert logits.shape == (2, 12, CONFIG.vocab_size) and logits.dtype == jnp.float32
  assert all(v[...].dtype == jnp.float32 for v in _flat_params(model).values())
  assert np.isfinite(np.asarray(logits)).all()


def test_parameter_paths_carry_logical_axes():
  params = _flat_params(Decoder(CONFIG, rngs=nnx.Rngs(0)))
  axes = {path: v.get_metadata()["out_sharding"] for path, v in params.items()}
  assert axes["embedder/embedding"] == ("vocab", "embed")
  assert axes["layers/1/attn/q_proj/kernel"] == ("embed", "heads", "head_dim")
  assert axes["layers/1/attn/k_proj/kernel"] == ("embed", "kv_heads", "head_dim")
  assert axes["layers/1/attn/o_proj/kernel"] == ("heads", "head_dim", "embed")
  assert axes["layers/0/mlp/gate/kernel"] == ("embed", "mlp")
  assert axes["layers/0/mlp/down/kernel"] == ("mlp", "embed")
  assert axes["final_norm/scale"] == ("embed",)
  assert axes["lm_head/kernel"] == ("embed", "vocab")
  assert params["layers/1/attn/k_proj/kernel"].shape == (32, 2, 8)
  for path, variable in params.items():
    assert len(axes[path]) == variable.ndim, path


def test_causal_future_tokens_do_not_change_past_logits():
  model = Decoder(CONFIG, rngs=nnx.Rngs(1))
  tokens = _tokens(1)
  changed = tokens.at[:, 7:].set(3)
  np.testing.assert_allclose(_forward(model, changed)[:, :7], _forward(model, tokens)[:, :7],
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["xla", "blockwise"])
def test_packed_example_matches_the_example_alone(impl):
  model = Decoder(dataclasses.replace(CONFIG, attention_impl=impl), rngs=nnx.Rngs(2))
  first, second = _tokens(2, (1, 5)), _tokens(3, (1, 7))
  packed = jnp.concatenate([first, second], axis=1)
  segments = jnp.asarray([[1] * 5 + [2] * 7], jnp.int32)
  positions = jnp.asarray([list(range(5)) + list(range(7))], jnp.int32)
  logits = _forward(model, packed, positions, segments)
  np.testing.assert_allclose(logits[:, :5], _forward(model, first), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits[:, 5:], _forward(model, second), rtol=1e-5, atol=1e-5)
  # Without the segment ids the second example would see the first one.
  assert not np.allclose(_forward(model, packed, positions)[:, 5:], _forward(model, second), atol=1e-3)


def test_tied_embeddings_drop_the_output_projection():
  tied = Decoder(dataclasses.replace(CONFIG, tie_embeddings=True), rngs=nnx.Rngs(0))
  params = _flat_params(tied)
  assert "lm_head/kernel" not in params
  assert _forward(tied, _tokens(4)).shape == (2, 12, CONFIG.vocab_size)
  untied = _flat_params(Decoder(CONFIG, rngs=nnx.Rngs(0)))
  assert sum(v.size for v in untied.values()) - sum(v.size for v in params.values()) == 32 * 97


@pytest.mark.parametrize("policy", ["full", "dots_saveable"])
def test_remat_keeps_loss_and_gradients(policy):
  tokens = _tokens(5)

  def loss_and_grads(config):
    model = Decoder(config, rngs=nnx.Rngs(0))
    return nnx.jit(nnx.value_and_grad(lambda m: jnp.mean(m(tokens) ** 2)))(model)

  loss, grads = loss_and_grads(CONFIG)
  remat_loss, remat_grads = loss_and_grads(dataclasses.replace(CONFIG, remat=policy))
  np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), remat_grads, grads)


def test_bad_configs_are_rejected_with_the_reason():
  with pytest.raises(ValueError, match="multiple of n_kv_heads"):
    dataclasses.replace(CONFIG, n_kv_heads=3)
  with pytest.raises(ValueError, match="remat"):
    dataclasses.replace(CONFIG, remat="sometimes")
  with pytest.raises(ValueError, match="attention_impl"):
    dataclasses.replace(CONFIG, attention_impl="flash")
