"""The SigLIP text tower in Flax NNX: token embedding, learned positions, pre-LN encoder, pooling, head.

`TextTransformer(config, rngs=...)(tokens_bl)` -> (pooled float32 (B, num_classes or width),
tokens (B, L, width)). As big_vision's text transformer: no attention mask (texts are padded to a
fixed length and pad tokens take part), pool_type "last" (SigLIP's choice) reads the last position,
"first" the first, "gap" the mean. L may be shorter than max_len (the first L positions are used).

Parameter paths (big_vision name in brackets, see `checkpoint.py`):
  embed/embedding (V, D) [Embed_0/embedding], pos_embedding (1, max_len, D) [pos_embedding],
  encoder/blocks/<i>/... [Encoder_0/encoderblock_<i>/...], encoder/encoder_norm [Encoder_0/encoder_norm],
  head/{kernel,bias} (D, num_classes) [head].
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from visual_priors.models.sharding import constrain
from visual_priors.models.vision import layers

TEXT_POOL_TYPES = ("last", "first", "gap")


@dataclasses.dataclass(frozen=True)
class TextConfig:
  """Shape and numerics of the text tower."""

  vocab_size: int
  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  max_len: int = 64
  pool_type: str = "last"
  num_classes: int = 0
  dtype: str = "bfloat16"
  param_dtype: str = "float32"
  attention_impl: str = "auto"
  remat: str = "none"

  def __post_init__(self):
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}.")
    if self.pool_type not in TEXT_POOL_TYPES:
      raise ValueError(f"pool_type {self.pool_type!r} is not one of {TEXT_POOL_TYPES}.")
    layers.check_encoder_fields(self)

  @property
  def encoder_shape(self) -> layers.EncoderShape:
    return layers.EncoderShape(self.width, self.depth, self.mlp_dim, self.num_heads, self.dtype,
                               self.param_dtype, self.attention_impl, self.remat)


class Embed(nnx.Module):
  """Token embedding table, N(0, 1/width) as linen's nn.Embed."""

  def __init__(self, config: TextConfig, *, rngs: nnx.Rngs):
    self.dtype = jnp.dtype(config.dtype)
    init = jax.nn.initializers.normal(stddev=1 / math.sqrt(config.width))
    table = init(rngs.params(), (config.vocab_size, config.width), jnp.dtype(config.param_dtype))
    self.embedding = layers.param(table, ("vocab", "vis_embed"))

  def __call__(self, tokens_bl: jax.Array) -> jax.Array:
    # Gather from a table whole along the width (tokens split over fsdp cannot index a split table).
    table = constrain(self.embedding[...], ("vocab", None))
    return jnp.take(table, tokens_bl, axis=0).astype(self.dtype)


class TextTransformer(nnx.Module):
  """`txt(tokens_bl)` -> (pooled float32 (B, num_classes or width), tokens (B, L, width))."""

  def __init__(self, config: TextConfig, *, rngs: nnx.Rngs):
    self.config = config
    d = config.width
    self.embed = Embed(config, rngs=rngs)
    init = jax.nn.initializers.normal(stddev=1 / math.sqrt(d))
    self.pos_embedding = layers.param(
        init(rngs.params(), (1, config.max_len, d), jnp.dtype(config.param_dtype)),
        (None, "length", "vis_embed"))
    self.encoder = layers.Encoder(config.encoder_shape, rngs=rngs)
    if config.num_classes:
      self.head = layers.Dense("bd,dc->bc", (d, config.num_classes), ("vis_embed", None), (0,), (None,),
                               dtype=config.dtype, param_dtype=config.param_dtype, rngs=rngs,
                               out_dtype="float32")

  def __call__(self, tokens_bl: jax.Array) -> tuple[jax.Array, jax.Array]:
    length = tokens_bl.shape[1]
    if length > self.config.max_len:
      raise ValueError(f"Text of length {length} exceeds the tower's max_len {self.config.max_len}; "
                       "truncate it or build the tower with a larger max_len.")
    x = self.embed(tokens_bl)
    positions = self.pos_embedding[...][:, :length].astype(jnp.float32)
    x = constrain((x.astype(jnp.float32) + positions).astype(x.dtype), ("batch", "length", "vis_embed"))
    x = self.encoder(x, "length")
    if self.config.pool_type == "last":
      pooled = x[:, -1]
    elif self.config.pool_type == "first":
      pooled = x[:, 0]
    else:
      pooled = jnp.mean(x.astype(jnp.float32), axis=1)
    pooled = self.head(pooled) if self.config.num_classes else pooled
    return constrain(pooled.astype(jnp.float32), ("batch", None)), x
