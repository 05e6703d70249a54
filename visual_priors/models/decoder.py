"""The Llama-3-style decoder LM in Flax NNX: RMSNorm, RoPE, grouped-query attention, SwiGLU.

Parameter paths (regex-friendly; layers are unrolled, one module per layer):
  embedder/embedding                      (vocab, embed)
  layers/<i>/attn_norm/scale              (embed,)
  layers/<i>/attn/{q_proj}/kernel         (embed, heads, head_dim)
  layers/<i>/attn/{k_proj,v_proj}/kernel  (embed, kv_heads, head_dim)
  layers/<i>/attn/o_proj/kernel           (heads, head_dim, embed)
  layers/<i>/mlp_norm/scale               (embed,)
  layers/<i>/mlp/{gate,up}/kernel         (embed, mlp)
  layers/<i>/mlp/down/kernel              (mlp, embed)
  final_norm/scale                        (embed,)
  lm_head/kernel                          (embed, vocab)   absent with tie_embeddings
Layers are unrolled rather than scanned: that keeps per-layer paths (`layers/3/...`) for
freezing rules and checkpoint export, and XLA schedules an unrolled stack best on one GPU. The
cost, compile time growing with depth, stays small: the 13B forward+backward (40 layers, batch
8 x 2048, fsdp=8 on emulated CPU devices) lowers in 3 s and compiles in 19 s on a 2-core CPU.

Precision: parameters are stored in `param_dtype` (float32 master weights) and cast to `dtype`
(bfloat16 by default) where used; norms, softmax and RoPE angles run in float32; logits are
returned in float32. With dtype float32 every matmul uses Precision.HIGHEST.

Initialisation: kernels ~ N(0, 1/fan_in), output projections (o_proj, down) further scaled by
1/sqrt(2 * n_layers); embeddings ~ N(0, 1/d_model) so tied logits start at unit scale.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from visual_priors.models import attention as attention_lib
from visual_priors.models.sharding import constrain

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Shape and numerics of a decoder; `scales.SCALES` holds the named ones."""

  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  d_ff: int
  rope_theta: float = 10000.0
  tie_embeddings: bool = False
  norm_eps: float = 1e-5
  dtype: str = "bfloat16"
  param_dtype: str = "float32"
  attention_impl: str = "auto"
  remat: str = "none"

  def __post_init__(self):
    if self.d_model % self.n_heads:
      raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}.")
    if self.n_heads % self.n_kv_heads:
      raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}.")
    if (self.d_model // self.n_heads) % 2:
      raise ValueError(f"head_dim {self.d_model // self.n_heads} must be even for rotary embeddings.")
    if self.attention_impl not in attention_lib.IMPLEMENTATIONS:
      raise ValueError(f"attention_impl {self.attention_impl!r} is not one of "
                       f"{attention_lib.IMPLEMENTATIONS}.")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"remat {self.remat!r} is not one of {tuple(REMAT_POLICIES)}.")
    for field in ("dtype", "param_dtype"):
      jnp.dtype(getattr(self, field))  # Raises TypeError naming a bad dtype.

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads


def _param(rngs: nnx.Rngs, shape: Sequence[int], axes: Sequence[str], stddev: float,
           param_dtype: jnp.dtype) -> nnx.Param:
  init = jax.nn.initializers.truncated_normal(stddev=stddev)
  return nnx.Param(init(rngs.params(), tuple(shape), param_dtype), out_sharding=tuple(axes),
                   eager_sharding=False)


class Projection(nnx.Module):
  """A bias-free linear map written as one einsum over a named-axis kernel."""

  def __init__(self, equation: str, shape: Sequence[int], axes: Sequence[str], fan_in: int,
               config: DecoderConfig, *, rngs: nnx.Rngs, scale: float = 1.0,
               out_dtype: str | None = None):
    self.equation = equation
    self.dtype = jnp.dtype(config.dtype)
    self.out_dtype = None if out_dtype is None else jnp.dtype(out_dtype)
    self.kernel = _param(rngs, shape, axes, scale / math.sqrt(fan_in), jnp.dtype(config.param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.einsum(self.equation, x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                      precision=attention_lib.matmul_precision(self.dtype),
                      preferred_element_type=self.out_dtype)


class RMSNorm(nnx.Module):
  """x / rms(x) * scale, computed in float32 and returned in the compute dtype."""

  def __init__(self, config: DecoderConfig):
    self.eps = config.norm_eps
    self.dtype = jnp.dtype(config.dtype)
    self.scale = nnx.Param(jnp.ones((config.d_model,), jnp.dtype(config.param_dtype)),
                           out_sharding=("embed",), eager_sharding=False)

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    return (normed * self.scale[...].astype(jnp.float32)).astype(self.dtype)


def rotary_embedding(x_btnh: jax.Array, positions_bt: jax.Array, theta: float) -> jax.Array:
  """Rotates (first half, second half) pairs of each head by position-dependent angles."""
  half = x_btnh.shape[-1] // 2
  inverse_frequency = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions_bt.astype(jnp.float32)[:, :, None, None] * inverse_frequency
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  x1, x2 = jnp.split(x_btnh.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return rotated.astype(x_btnh.dtype)


class Attention(nnx.Module):
  """Grouped-query self-attention with rotary positions and packed-segment masking."""

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs):
    d, n, k, h = config.d_model, config.n_heads, config.n_kv_heads, config.head_dim
    out_scale = 1 / math.sqrt(2 * config.n_layers)
    kv_axes = ("embed", "kv_heads", "head_dim")
    self.q_proj = Projection("btd,dnh->btnh", (d, n, h), ("embed", "heads", "head_dim"), d, config,
                             rngs=rngs)
    self.k_proj = Projection("btd,dkh->btkh", (d, k, h), kv_axes, d, config, rngs=rngs)
    self.v_proj = Projection("btd,dkh->btkh", (d, k, h), kv_axes, d, config, rngs=rngs)
    self.o_proj = Projection("btnh,nhd->btd", (n, h, d), ("heads", "head_dim", "embed"), n * h, config,
                             rngs=rngs, scale=out_scale)
    self.rope_theta = config.rope_theta
    self.implementation = config.attention_impl

  def __call__(self, x_btd: jax.Array, positions_bt: jax.Array,
               segment_ids_bt: jax.Array | None) -> jax.Array:
    q = constrain(self.q_proj(x_btd), ("batch", "length", "heads", "head_dim"))
    k = constrain(self.k_proj(x_btd), ("batch", "length", "kv_heads", "head_dim"))
    v = constrain(self.v_proj(x_btd), ("batch", "length", "kv_heads", "head_dim"))
    q = rotary_embedding(q, positions_bt, self.rope_theta)
    k = rotary_embedding(k, positions_bt, self.rope_theta)
    out = attention_lib.attention(q, k, v, segment_ids_bt, implementation=self.implementation)
    out = constrain(out, ("batch", "length", "heads", "head_dim"))
    return self.o_proj(out)


class MLP(nnx.Module):
  """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs):
    d, f = config.d_model, config.d_ff
    out_scale = 1 / math.sqrt(2 * config.n_layers)
    self.gate = Projection("btd,df->btf", (d, f), ("embed", "mlp"), d, config, rngs=rngs)
    self.up = Projection("btd,df->btf", (d, f), ("embed", "mlp"), d, config, rngs=rngs)
    self.down = Projection("btf,fd->btd", (f, d), ("mlp", "embed"), f, config, rngs=rngs, scale=out_scale)

  def __call__(self, x_btd: jax.Array) -> jax.Array:
    hidden = jax.nn.silu(self.gate(x_btd)) * self.up(x_btd)
    return self.down(constrain(hidden, ("batch", "length", "mlp")))


class Block(nnx.Module):
  """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(config)
    self.attn = Attention(config, rngs=rngs)
    self.mlp_norm = RMSNorm(config)
    self.mlp = MLP(config, rngs=rngs)

  def __call__(self, x_btd: jax.Array, positions_bt: jax.Array,
               segment_ids_bt: jax.Array | None) -> jax.Array:
    x_btd = x_btd + self.attn(self.attn_norm(x_btd), positions_bt, segment_ids_bt)
    x_btd = constrain(x_btd, ("batch", "length", "embed"))
    x_btd = x_btd + self.mlp(self.mlp_norm(x_btd))
    return constrain(x_btd, ("batch", "length", "embed"))


class Embedder(nnx.Module):
  """Token embedding table; with tied embeddings it also produces the logits."""

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs):
    self.dtype = jnp.dtype(config.dtype)
    self.embedding = _param(rngs, (config.vocab_size, config.d_model), ("vocab", "embed"),
                            1 / math.sqrt(config.d_model), jnp.dtype(config.param_dtype))

  def __call__(self, tokens_bt: jax.Array) -> jax.Array:
    # Gather from a table whole along embed (as FSDP gathers every weight before use): a table
    # split over fsdp cannot be indexed by tokens that are themselves split over fsdp.
    table = constrain(self.embedding[...], ("vocab", None))
    return jnp.take(table, tokens_bt, axis=0).astype(self.dtype)

  def attend(self, x_btd: jax.Array) -> jax.Array:
    return jnp.einsum("btd,vd->btv", x_btd, self.embedding[...].astype(self.dtype),
                      precision=attention_lib.matmul_precision(self.dtype),
                      preferred_element_type=jnp.float32)


class Decoder(nnx.Module):
  """`model(tokens_bt, positions_bt=None, segment_ids_bt=None)` -> float32 logits (B, T, V).

  Segment ids (0 = padding) keep packed examples from attending to each other; positions restart
  at 0 for each packed example. Without positions, 0..T-1 is used; without segment ids, each row
  is one causal sequence.
  """

  def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.embedder = Embedder(config, rngs=rngs)
    self.layers = nnx.List([Block(config, rngs=rngs) for _ in range(config.n_layers)])
    self.final_norm = RMSNorm(config)
    if not config.tie_embeddings:
      self.lm_head = Projection("btd,dv->btv", (config.d_model, config.vocab_size), ("embed", "vocab"),
                                config.d_model, config, rngs=rngs, out_dtype="float32")

  def __call__(self, tokens_bt: jax.Array, positions_bt: jax.Array | None = None,
               segment_ids_bt: jax.Array | None = None) -> jax.Array:
    return self.decode(self.embed(tokens_bt), positions_bt, segment_ids_bt)

  def embed(self, tokens_bt: jax.Array) -> jax.Array:
    """Token embeddings (B, T, d_model) in the compute dtype: the input `decode` expects."""
    return constrain(self.embedder(tokens_bt), ("batch", "length", "embed"))

  def decode(self, x_btd: jax.Array, positions_bt: jax.Array | None = None,
             segment_ids_bt: jax.Array | None = None) -> jax.Array:
    """Logits from input embeddings (e.g. token embeddings with visual tokens spliced in)."""
    if positions_bt is None:
      positions_bt = jnp.broadcast_to(jnp.arange(x_btd.shape[1]), x_btd.shape[:2])
    x_btd = constrain(x_btd.astype(jnp.dtype(self.config.dtype)), ("batch", "length", "embed"))
    policy = REMAT_POLICIES[self.config.remat]
    for block in self.layers:
      if self.config.remat == "none":
        x_btd = block(x_btd, positions_bt, segment_ids_bt)
      else:
        x_btd = nnx.remat(_apply_block, policy=policy)(block, x_btd, positions_bt, segment_ids_bt)
    x_btd = self.final_norm(x_btd)
    logits = self.embedder.attend(x_btd) if self.config.tie_embeddings else self.lm_head(x_btd)
    return constrain(logits, ("batch", "length", "vocab"))


def _apply_block(block: Block, x_btd: jax.Array, positions_bt: jax.Array,
                 segment_ids_bt: jax.Array | None) -> jax.Array:
  return block(x_btd, positions_bt, segment_ids_bt)
