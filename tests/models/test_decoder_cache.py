"""Decoder KV cache: prefill and step logits against the full forward, GQA cache shapes, padding, sharding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.models import scales, sharding
from visual_priors.models.decoder import Decoder, cached_attention

VOCAB = 61
CONFIG = scales.get_scale("nano", vocab_size=VOCAB, attention_impl="xla")  # 4 heads over 2 KV heads (GQA)
LENGTHS = (3, 8, 5, 1)  # prompt lengths, left-padded to PROMPT
PROMPT = 8
NEW = 4  # tokens fed one at a time after the prompt


@pytest.fixture(scope="module")
def model() -> Decoder:
  # An rbg key: its random-init programs compile in half the time of threefry's on a CPU.
  return Decoder(CONFIG, rngs=nnx.Rngs(jax.random.key(3, impl="rbg")))


def _rows(seed: int) -> np.ndarray:
  """Each row's full sequence (prompt then NEW continuation tokens), random ids."""
  return np.random.default_rng(seed).integers(1, VOCAB, (len(LENGTHS), PROMPT + NEW)).astype(np.int32)


def _left_padded(rows: np.ndarray, pad_id: int = 0):
  pad_b = PROMPT - np.asarray(LENGTHS)
  tokens = np.full((len(LENGTHS), PROMPT), pad_id, np.int32)
  for b, n in enumerate(LENGTHS):
    tokens[b, PROMPT - n:] = rows[b, :n]
  real = np.arange(PROMPT)[None] >= pad_b[:, None]
  positions = np.where(real, np.arange(PROMPT)[None] - pad_b[:, None], 0)
  return tokens, positions.astype(np.int32), real.astype(np.int32), pad_b


def _prefill_then_steps(model: Decoder, tokens, positions, segments, pad_b, rows):
  """Last-prompt logits, then the logits of each of NEW fed tokens, (B, 1 + NEW, V); and the final cache."""
  logits_bv, cache = model.prefill(model.embed(tokens), positions, segments, PROMPT + NEW)
  out = [logits_bv]
  columns = jnp.arange(PROMPT + NEW)
  for i in range(NEW):
    token_b = jnp.asarray([rows[b, n + i] for b, n in enumerate(LENGTHS)])
    mask = (columns[None] >= pad_b[:, None]) & (columns[None] <= PROMPT + i)
    step_positions = (jnp.asarray(LENGTHS) + i)[:, None]
    logits_b1v, cache = model.step(model.embed(token_b[:, None]), step_positions, cache, jnp.int32(PROMPT + i), mask)
    out.append(logits_b1v[:, 0])
  return jnp.stack(out, axis=1), cache


_cached = nnx.jit(_prefill_then_steps)


def _uncached(model: Decoder, rows: np.ndarray) -> np.ndarray:
  """Each row alone, unpadded: the logits predicting its (n + i + 1)-th token, i = 0..NEW."""
  full = np.asarray(model(jnp.asarray(rows)))
  return np.stack([full[b, n - 1:n + NEW] for b, n in enumerate(LENGTHS)])


def test_prefill_and_steps_match_the_full_forward_per_row(model):
  rows = _rows(0)
  tokens, positions, segments, pad_b = _left_padded(rows)
  logits, cache = _cached(model, tokens, positions, segments, pad_b, rows)
  np.testing.assert_allclose(np.asarray(logits), _uncached(model, rows), rtol=2e-5, atol=2e-5)
  assert len(cache) == CONFIG.n_layers
  for layer in cache:
    for array in layer:
      assert array.shape == (len(LENGTHS), PROMPT + NEW, CONFIG.n_kv_heads, CONFIG.head_dim)
      assert array.dtype == jnp.dtype(CONFIG.dtype)


def test_padding_ids_do_not_leak_into_real_rows(model):
  rows = _rows(1)
  tokens, positions, segments, pad_b = _left_padded(rows)
  other_tokens, _, _, _ = _left_padded(rows, pad_id=17)
  a, _ = _cached(model, tokens, positions, segments, pad_b, rows)
  b, _ = _cached(model, other_tokens, positions, segments, pad_b, rows)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_prefill_refuses_a_cache_shorter_than_the_prompt(model):
  tokens = jnp.ones((1, 4), jnp.int32)
  with pytest.raises(ValueError, match="cache_length 3 is shorter than the prompt"):
    model.prefill(model.embed(tokens), jnp.arange(4)[None], None, 3)


def test_cached_attention_masks_keys_and_stays_finite_when_all_are_masked():
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in ((2, 1, 4, 8), (2, 6, 2, 8), (2, 6, 2, 8)))
  mask = jnp.asarray([[True, True, False, True, False, False], [False] * 6])
  out = np.asarray(cached_attention(q, k, v, mask))
  assert np.all(np.isfinite(out))
  # Row 0 by hand: query head n uses KV head n // 2 over the three visible keys.
  visible = [0, 1, 3]
  for n in range(4):
    scores = np.asarray(k[0, visible, n // 2] @ q[0, 0, n]) / np.sqrt(8)
    weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(out[0, 0, n], weights @ np.asarray(v[0, visible, n // 2]), rtol=1e-5, atol=1e-5)


def test_cache_is_sharded_by_its_logical_axes_under_a_mesh(model):
  """Batch over (data, fsdp), KV heads over tensor; the logits equal the unsharded run."""
  rows = _rows(2)
  tokens, positions, segments, pad_b = _left_padded(rows)
  expected, _ = _cached(model, tokens, positions, segments, pad_b, rows)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  graphdef, state = nnx.split(model)
  state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))

  @jax.jit
  def run(state, tokens, positions, segments, pad_b):
    with sharding.activation_sharding(mesh):
      return _prefill_then_steps(nnx.merge(graphdef, state), tokens, positions, segments, pad_b, rows)

  logits, cache = run(state, tokens, positions, segments, pad_b)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), rtol=2e-5, atol=2e-5)
  spec = cache[0].k_bskh.sharding.spec
  assert tuple(spec) == (("data", "fsdp"), None, "tensor")
