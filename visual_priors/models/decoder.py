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

Generation (KV cache): `prefill` runs a prompt batch once through the same blocks and attention
kernels as training and returns the last position's logits plus a cache (a `LayerCache` of rotated
keys and values (B, S, K, H) per layer, at the KV-head count, logical axes CACHE_AXES so it shards
like the activations); `step` embeds a few new tokens, writes their keys and values at one column
index shared by all rows, and attends over the cache under a caller-given (B, S) key mask. The
decode loop and the padding convention live in `visual_priors/eval/decode.py`.

Initialisation: kernels ~ N(0, 1/fan_in), output projections (o_proj, down) further scaled by
1/sqrt(2 * n_layers); embeddings ~ N(0, 1/d_model) so tied logits start at unit scale.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

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
_MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)


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


CACHE_AXES = ("batch", "length", "kv_heads", "head_dim")


class LayerCache(NamedTuple):
  """One layer's KV cache: rotated keys and values (B, S, K, H) at the KV-head count (GQA), compute dtype."""

  k_bskh: jax.Array
  v_bskh: jax.Array


Cache = tuple[LayerCache, ...]  # one per layer


def _constrain_cache(x_bskh: jax.Array) -> jax.Array:
  return constrain(x_bskh, CACHE_AXES)


def _write(cache_bskh: jax.Array, new_btkh: jax.Array, index: jax.Array) -> jax.Array:
  """The cache with `new_btkh` written at columns index..index+T-1 (one index for every row)."""
  updated = jax.lax.dynamic_update_slice_in_dim(cache_bskh, new_btkh.astype(cache_bskh.dtype), index, axis=1)
  return _constrain_cache(updated)


def cached_attention(q_btnh: jax.Array, k_bskh: jax.Array, v_bskh: jax.Array, key_mask_bs: jax.Array) -> jax.Array:
  """Attention of a few new queries over a KV cache; scale 1/sqrt(H); (B, T, N, H) in the dtype of q.

  Scores are (B, N, T, S): small for decoding (T = 1), so no blockwise kernel is needed. A row whose
  mask is all False gets uniform weights (finite), never NaN.
  """
  b, t, n, h = q_btnh.shape
  kv_heads = k_bskh.shape[2]
  precision = attention_lib.matmul_precision(q_btnh.dtype)
  q = q_btnh.reshape(b, t, kv_heads, n // kv_heads, h)
  scores = jnp.einsum("btkgh,bskh->bkgts", q, k_bskh.astype(q.dtype), precision=precision,
                      preferred_element_type=jnp.float32) * h ** -0.5
  scores = jnp.where(key_mask_bs[:, None, None, None, :], scores, _MASKED)
  weights = jax.nn.softmax(scores, axis=-1)
  out = jnp.einsum("bkgts,bskh->btkgh", weights.astype(v_bskh.dtype), v_bskh, precision=precision,
                   preferred_element_type=jnp.float32)
  return out.reshape(b, t, n, h).astype(q_btnh.dtype)


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
    q, k, v = self.project(x_btd, positions_bt)
    return self._attend_prompt(q, k, v, segment_ids_bt)

  def project(self, x_btd: jax.Array, positions_bt: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Rotated queries (B, T, N, H), rotated keys and values (B, T, K, H)."""
    q = constrain(self.q_proj(x_btd), ("batch", "length", "heads", "head_dim"))
    k = constrain(self.k_proj(x_btd), ("batch", "length", "kv_heads", "head_dim"))
    v = constrain(self.v_proj(x_btd), ("batch", "length", "kv_heads", "head_dim"))
    return (rotary_embedding(q, positions_bt, self.rope_theta), rotary_embedding(k, positions_bt, self.rope_theta),
            v)

  def prefill(self, x_btd: jax.Array, positions_bt: jax.Array,
              segment_ids_bt: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The attention output (as `__call__`) and the rotated keys and values (B, T, K, H) a KV cache keeps."""
    q, k, v = self.project(x_btd, positions_bt)
    return self._attend_prompt(q, k, v, segment_ids_bt), k, v

  def _attend_prompt(self, q_btnh: jax.Array, k_btkh: jax.Array, v_btkh: jax.Array,
                     segment_ids_bt: jax.Array | None) -> jax.Array:
    out = attention_lib.attention(q_btnh, k_btkh, v_btkh, segment_ids_bt, implementation=self.implementation)
    return self.o_proj(constrain(out, ("batch", "length", "heads", "head_dim")))

  def step(self, x_btd: jax.Array, positions_bt: jax.Array, cache: LayerCache, index: jax.Array,
           key_mask_bs: jax.Array) -> tuple[jax.Array, LayerCache]:
    """New tokens (B, T) written into the cache at columns index..index+T-1, attending to the cached keys.

    `key_mask_bs` (B, S) says which cache columns every new token of a row may see (the caller's
    causal and padding mask, the new columns included).
    """
    q, k, v = self.project(x_btd, positions_bt)
    cache = LayerCache(_write(cache.k_bskh, k, index), _write(cache.v_bskh, v, index))
    out = cached_attention(q, cache.k_bskh, cache.v_bskh, key_mask_bs)
    out = constrain(out, ("batch", "length", "heads", "head_dim"))
    return self.o_proj(out), cache


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
    return self._feed_forward(x_btd, self.attn(self.attn_norm(x_btd), positions_bt, segment_ids_bt))

  def prefill(self, x_btd: jax.Array, positions_bt: jax.Array,
              segment_ids_bt: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The block's output (as `__call__`) and its attention's rotated keys and values (B, T, K, H)."""
    attended, k, v = self.attn.prefill(self.attn_norm(x_btd), positions_bt, segment_ids_bt)
    return self._feed_forward(x_btd, attended), k, v

  def step(self, x_btd: jax.Array, positions_bt: jax.Array, cache: LayerCache, index: jax.Array,
           key_mask_bs: jax.Array) -> tuple[jax.Array, LayerCache]:
    """The block on new tokens against its layer's KV cache (see `Attention.step`)."""
    attended, cache = self.attn.step(self.attn_norm(x_btd), positions_bt, cache, index, key_mask_bs)
    return self._feed_forward(x_btd, attended), cache

  def _feed_forward(self, x_btd: jax.Array, attended_btd: jax.Array) -> jax.Array:
    x_btd = constrain(x_btd + attended_btd, ("batch", "length", "embed"))
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
    return self._logits(self.hidden(x_btd, positions_bt, segment_ids_bt))

  def hidden(self, x_btd: jax.Array, positions_bt: jax.Array | None = None,
             segment_ids_bt: jax.Array | None = None) -> jax.Array:
    """The last block's output (before the final norm) from input embeddings: `logits` of it is `decode`."""
    if positions_bt is None:
      positions_bt = jnp.broadcast_to(jnp.arange(x_btd.shape[1]), x_btd.shape[:2])
    x_btd = constrain(x_btd.astype(jnp.dtype(self.config.dtype)), ("batch", "length", "embed"))
    policy = REMAT_POLICIES[self.config.remat]
    for block in self.layers:
      if self.config.remat == "none":
        x_btd = block(x_btd, positions_bt, segment_ids_bt)
      else:
        x_btd = nnx.remat(_apply_block, policy=policy)(block, x_btd, positions_bt, segment_ids_bt)
    return x_btd

  def logits(self, x_btd: jax.Array) -> jax.Array:
    """Logits (B, T, V) of `hidden` states: the final norm and the output projection."""
    return self._logits(x_btd)

  def prefill(self, x_btd: jax.Array, positions_bt: jax.Array, segment_ids_bt: jax.Array | None,
              cache_length: int) -> tuple[jax.Array, Cache]:
    """Runs a prompt batch once: the logits of its last position (B, V) and a KV cache of `cache_length` columns.

    The prompt's keys and values fill cache columns 0..T-1; the rest are zeros for `step` to write.
    Prompts should be left-padded (padding in segment 0, positions counting from each row's first
    real token), so that the last position of every row is its last prompt token.
    """
    length = x_btd.shape[1]
    if cache_length < length:
      raise ValueError(f"cache_length {cache_length} is shorter than the prompt ({length} positions).")
    x_btd = constrain(x_btd.astype(jnp.dtype(self.config.dtype)), ("batch", "length", "embed"))
    layers = []
    for block in self.layers:
      x_btd, k, v = block.prefill(x_btd, positions_bt, segment_ids_bt)
      pad = ((0, 0), (0, cache_length - length), (0, 0), (0, 0))
      layers.append(LayerCache(_constrain_cache(jnp.pad(k, pad)), _constrain_cache(jnp.pad(v, pad))))
    return self._logits(x_btd[:, -1:])[:, 0], tuple(layers)

  def step(self, x_btd: jax.Array, positions_bt: jax.Array, cache: Cache, index: jax.Array,
           key_mask_bs: jax.Array) -> tuple[jax.Array, Cache]:
    """New input embeddings (B, T, d) at cache columns index.. -> their logits (B, T, V) and the updated cache.

    `positions_bt` are the new tokens' RoPE positions (each row's own count), `key_mask_bs` the cache
    columns they may attend to (valid prompt columns and everything written up to the new ones).
    """
    x_btd = constrain(x_btd.astype(jnp.dtype(self.config.dtype)), ("batch", "length", "embed"))
    layers = []
    for block, layer_cache in zip(self.layers, cache, strict=True):
      x_btd, layer_cache = block.step(x_btd, positions_bt, layer_cache, index, key_mask_bs)
      layers.append(layer_cache)
    return self._logits(x_btd), tuple(layers)

  def _logits(self, x_btd: jax.Array) -> jax.Array:
    x_btd = self.final_norm(x_btd)
    logits = self.embedder.attend(x_btd) if self.config.tie_embeddings else self.lm_head(x_btd)
    return constrain(logits, ("batch", "length", "vocab"))


def _apply_block(block: Block, x_btd: jax.Array, positions_bt: jax.Array,
                 segment_ids_bt: jax.Array | None) -> jax.Array:
  return block(x_btd, positions_bt, segment_ids_bt)
