"""Creating a Decoder directly into sharded device arrays, with no full replica on any host."""

from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import Mesh

from visual_priors.models import sharding
from visual_priors.models.decoder import Decoder, DecoderConfig


def create_sharded_model(
    config: DecoderConfig,
    mesh: Mesh,
    rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES,
    seed: int = 0,
) -> Decoder:
  """Initialises `Decoder(config)` under jit with out_shardings from the parameters' logical axes.

  Each device computes only its own shard of every parameter, so a 13B model never exists
  unsharded in host or device memory. The result equals `Decoder(config, rngs=nnx.Rngs(seed))`.
  """
  abstract = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(seed)))
  graphdef, abstract_state = nnx.split(abstract)
  shardings = sharding.state_shardings(abstract_state, mesh, rules)

  init = jax.jit(lambda: nnx.state(Decoder(config, rngs=nnx.Rngs(seed))), out_shardings=shardings)
  return nnx.merge(graphdef, init())
