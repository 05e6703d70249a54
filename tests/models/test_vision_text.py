"""The text tower: pooling, shorter texts, parameter axes and bad input."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.models.vision import TextConfig, TextTransformer

CONFIG = TextConfig(vocab_size=30, width=16, depth=2, mlp_dim=32, num_heads=2, max_len=6, dtype="float32")


def _tokens(length: int = 6) -> jax.Array:
  return jax.random.randint(jax.random.key(0), (3, length), 0, CONFIG.vocab_size)


@pytest.mark.parametrize("pool_type,index", [("last", -1), ("first", 0), ("gap", None)])
def test_pooling_reads_the_encoded_tokens(pool_type, index):
  model = TextTransformer(dataclasses.replace(CONFIG, pool_type=pool_type), rngs=nnx.Rngs(0))
  pooled, tokens = nnx.jit(lambda m, t: m(t))(model, _tokens())
  assert tokens.shape == (3, 6, 16) and pooled.dtype == jnp.float32
  expected = np.asarray(tokens).mean(axis=1) if index is None else np.asarray(tokens)[:, index]
  np.testing.assert_allclose(np.asarray(pooled), expected, rtol=1e-5, atol=1e-6)


def test_head_maps_to_num_classes_and_shorter_texts_use_the_first_positions():
  model = TextTransformer(dataclasses.replace(CONFIG, num_classes=5), rngs=nnx.Rngs(0))
  pooled, tokens = model(_tokens(4))
  assert pooled.shape == (3, 5) and tokens.shape == (3, 4, 16)
  with pytest.raises(ValueError, match="exceeds the tower's max_len 6"):
    model(_tokens(7))


def test_parameter_axes():
  model = TextTransformer(CONFIG, rngs=nnx.Rngs(0))
  axes = {"/".join(map(str, p)): v.get_metadata()["out_sharding"]
          for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert axes["embed/embedding"] == ("vocab", "vis_embed")
  assert axes["pos_embedding"] == (None, "length", "vis_embed")
  assert axes["encoder/blocks/1/attn/key/kernel"] == ("vis_embed", "vis_heads", "head_dim")
  with pytest.raises(ValueError, match="pool_type 'map'"):
    dataclasses.replace(CONFIG, pool_type="map")
