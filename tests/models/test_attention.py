"""Blockwise attention agrees with the XLA reference, with and without packed segments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visual_priors.models import attention


def _inputs(seed: int, batch=2, length=40, heads=4, kv_heads=2, head_dim=8):
  kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(kq, (batch, length, heads, head_dim), jnp.float32)
  k = jax.random.normal(kk, (batch, length, kv_heads, head_dim), jnp.float32)
  v = jax.random.normal(kv, (batch, length, kv_heads, head_dim), jnp.float32)
  return q, k, v


def _packed_segments(batch: int, length: int) -> jax.Array:
  # Row 0: three examples then padding; row 1: two examples filling the row.
  rows = [[1] * 9 + [2] * 17 + [3] * 6 + [0] * (length - 32), [1] * 23 + [2] * (length - 23)]
  return jnp.asarray(rows[:batch], jnp.int32)


def _naive(q, k, v, segment_ids):
  """Dense softmax attention written out directly, the ground truth for both kernels."""
  groups = q.shape[2] // k.shape[2]
  k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
  scores = jnp.einsum("btnh,bsnh->bnts", q, k, precision="highest") / np.sqrt(q.shape[-1])
  length = q.shape[1]
  visible = jnp.tril(jnp.ones((length, length), bool))[None, None]
  if segment_ids is not None:
    visible = visible & attention.segment_mask(segment_ids)
  scores = jnp.where(visible, scores, -jnp.inf)
  return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(scores, axis=-1), v, precision="highest")


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("block_size", [8, 64])
def test_blockwise_matches_xla_and_naive_forward_and_gradients(packed, block_size):
  q, k, v = _inputs(0)
  segment_ids = _packed_segments(2, q.shape[1]) if packed else None

  def loss(impl, q, k, v):
    if impl == "naive":
      out = _naive(q, k, v, segment_ids)
    else:
      out = attention.attention(q, k, v, segment_ids, implementation=impl, block_size=block_size)
    return jnp.sum(out * jnp.cos(out)), out  # A nonlinear read-out so every gradient path matters.

  results = {impl: jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)(impl, q, k, v)
             for impl in ("naive", "xla", "blockwise")}
  (_, reference_out), reference_grads = results["naive"]
  for impl in ("xla", "blockwise"):
    (_, out), grads = results[impl]
    np.testing.assert_allclose(out, reference_out, rtol=1e-5, atol=1e-5, err_msg=impl)
    for got, want in zip(grads, reference_grads):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=impl)


def test_packed_examples_do_not_see_each_other():
  q, k, v = _inputs(1)
  segment_ids = _packed_segments(2, q.shape[1])
  out = attention.attention(q, k, v, segment_ids, implementation="blockwise", block_size=16)
  # Changing the keys/values of example 1 in row 0 must leave example 2's outputs untouched.
  k2 = k.at[0, :9].add(3.0)
  v2 = v.at[0, :9].add(3.0)
  out2 = attention.attention(q, k2, v2, segment_ids, implementation="blockwise", block_size=16)
  np.testing.assert_allclose(out2[0, 9:], out[0, 9:], rtol=1e-6, atol=1e-6)
  assert not np.allclose(out2[0, :9], out[0, :9])
  assert np.isfinite(np.asarray(out)).all()


def test_blockwise_pads_a_length_that_is_not_a_multiple_of_the_block():
  q, k, v = _inputs(2, length=37)
  want = attention.attention(q, k, v, None, implementation="xla")
  got = attention.attention(q, k, v, None, implementation="blockwise", block_size=16)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_blockwise_never_materialises_a_full_score_matrix():
  q, k, v = _inputs(3, batch=1, length=256, heads=2, kv_heads=1)
  block = 32

  def f(q, k, v):
    return attention.attention(q, k, v, None, implementation="blockwise", block_size=block).sum()

  hlo = jax.jit(jax.grad(f, argnums=(0, 1, 2))).lower(q, k, v).as_text()
  assert "256x256" not in hlo and f"256x{block}" in hlo


def test_auto_resolution_on_cpu():
  assert attention.resolve_implementation("auto", 128, jnp.bfloat16, 64) == "xla"
  assert attention.resolve_implementation("auto", 8192, jnp.bfloat16, 64) == "blockwise"
  assert attention.resolve_implementation("blockwise", 64, jnp.float32, 64) == "blockwise"
  with pytest.raises(ValueError, match="needs a GPU"):
    attention.resolve_implementation("cudnn", 8192, jnp.bfloat16, 64)
  with pytest.raises(ValueError, match="flash"):
    attention.resolve_implementation("flash", 128, jnp.bfloat16, 64)
