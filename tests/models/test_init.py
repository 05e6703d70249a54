"""Sharded initialisation reproduces the unsharded model, already split across devices."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from visual_priors.models import sharding
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.models.init import create_sharded_model

CONFIG = DecoderConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=64,
                       tie_embeddings=True)


def test_sharded_init_equals_plain_init_and_is_split():
  mesh = sharding.make_mesh({"fsdp": 4, "tensor": 2})
  sharded = nnx.state(create_sharded_model(CONFIG, mesh, seed=3))
  plain = nnx.state(Decoder(CONFIG, rngs=nnx.Rngs(3)))
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), sharded, plain)
  embedding = sharded["embedder"]["embedding"][...]
  assert embedding.sharding.mesh == mesh
  assert embedding.addressable_shards[0].data.shape == (64 // 2, 32 // 4)
  assert "lm_head" not in sharded


def test_custom_rules_change_the_placement_not_the_code():
  mesh = sharding.make_mesh({"fsdp": 8})
  rules = tuple((name, None if name == "embed" else axes)
                for name, axes in sharding.DEFAULT_LOGICAL_AXIS_RULES)
  state = nnx.state(create_sharded_model(dataclasses.replace(CONFIG, tie_embeddings=False), mesh, rules))
  kernel = state["layers"][0]["mlp"]["up"]["kernel"][...]
  assert kernel.addressable_shards[0].data.shape == kernel.shape  # embed is no longer split.
