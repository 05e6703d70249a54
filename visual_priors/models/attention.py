"""Causal grouped-query attention kernels with packed-segment masking: cuDNN, XLA and blockwise.

All kernels take q (B, T, N, H), k and v (B, S, K, H) with N a multiple of K, and optional
segment ids (B, T): a query attends to earlier-or-equal keys of the same segment. Padding (segment
0) attends only to padding, so no row is ever fully masked and every output stays finite.

Implementations:
  * "cudnn": `jax.nn.dot_product_attention(implementation="cudnn", is_causal=True)`, the fused
    flash-attention kernel (GPU, bf16/fp16 only). Without segment ids nothing but the causal flag
    is passed (the fastest path). With segment ids jax 0.10 offers no public packed-sequence
    argument: `query_seq_lengths`/`key_value_seq_lengths` only describe one right-padded
    sequence per row, and the ragged offsets of cuDNN's packed layout are private
    (`jax._src.cudnn`). So the segment mask goes in as `mask` (B, 1, T, T), which jax turns into
    an additive bias that cuDNN reads (and differentiates) per block: correct, but it costs
    B*T*T bf16 of memory and some speed. Feed unpacked full-length rows (segment ids None) where
    peak throughput matters.
  * "xla": `jax.nn.dot_product_attention(implementation="xla")`; materialises the (B, N, T, S)
    scores, so it is for short sequences (CPU tests, T <= XLA_MAX_SEQ_LEN under "auto").
  * "blockwise": online-softmax attention written here, a `lax.scan` over key blocks with a
    custom VJP that recomputes scores blockwise in the backward pass (FlashAttention-2's
    algorithm): memory O(B*N*T*block) in both passes, never S x S. Runs on every backend.
  * "auto": cudnn on GPU for bf16/fp16, else xla up to XLA_MAX_SEQ_LEN tokens, else blockwise.
    The backend is the platform of the active mesh (`sharding.activation_sharding`), so a
    compile-only check for TPU devices on a CPU host picks what the TPU would run.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from visual_priors.models import sharding

IMPLEMENTATIONS = ("auto", "cudnn", "xla", "blockwise")
XLA_MAX_SEQ_LEN = 1024
DEFAULT_BLOCK_SIZE = 512
_MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)


def resolve_implementation(name: str, seq_len: int, dtype: jnp.dtype, head_dim: int) -> str:
  """The concrete kernel ("cudnn", "xla" or "blockwise") that `name` means for this input."""
  if name not in IMPLEMENTATIONS:
    raise ValueError(f"Unknown attention implementation {name!r}; choose one of {IMPLEMENTATIONS}.")
  mesh = sharding.active_mesh()
  platform = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
  if name == "cudnn" and platform != "gpu":
    raise ValueError(f"attention_impl 'cudnn' needs a GPU but the backend is {platform!r}; "
                     "use 'auto' (or 'blockwise'/'xla').")
  if name != "auto":
    return name
  cudnn_ok = jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_dim % 8 == 0 and head_dim <= 128
  if platform == "gpu" and cudnn_ok:
    return "cudnn"
  return "xla" if seq_len <= XLA_MAX_SEQ_LEN else "blockwise"


def segment_mask(segment_ids_bt: jax.Array) -> jax.Array:
  """(B, 1, T, T) bool: query t may see key s of the same segment (causality applied separately)."""
  return (segment_ids_bt[:, None, :, None] == segment_ids_bt[:, None, None, :])


def attention(
    q_btnh: jax.Array,
    k_bskh: jax.Array,
    v_bskh: jax.Array,
    segment_ids_bt: jax.Array | None,
    *,
    implementation: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> jax.Array:
  """Causal attention, scale 1/sqrt(H); returns (B, T, N, H) in the dtype of q."""
  kind = resolve_implementation(implementation, q_btnh.shape[1], q_btnh.dtype, q_btnh.shape[-1])
  if kind == "blockwise":
    if segment_ids_bt is None:
      segment_ids_bt = jnp.ones(q_btnh.shape[:2], jnp.int32)
    return blockwise_attention(q_btnh, k_bskh, v_bskh, segment_ids_bt, block_size=block_size)
  mask = None if segment_ids_bt is None else segment_mask(segment_ids_bt)
  return jax.nn.dot_product_attention(
      q_btnh, k_bskh, v_bskh, mask=mask, is_causal=True, implementation=kind)


def matmul_precision(dtype: jnp.dtype) -> jax.lax.Precision:
  """HIGHEST for float32 compute (exact fp32 on every backend), DEFAULT for bf16/fp16."""
  return jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else jax.lax.Precision.DEFAULT


def _split_blocks(x_bs: jax.Array, block_size: int, fill: int | float) -> jax.Array:
  """(B, S, ...) -> (S/block, B, block, ...), padding S up to a multiple of block with `fill`."""
  batch, length = x_bs.shape[:2]
  padded = -(-length // block_size) * block_size
  pad = [(0, 0), (0, padded - length)] + [(0, 0)] * (x_bs.ndim - 2)
  x_bs = jnp.pad(x_bs, pad, constant_values=fill)
  x = x_bs.reshape((batch, padded // block_size, block_size) + x_bs.shape[2:])
  return jnp.moveaxis(x, 1, 0)


def _block_mask(seg_q_bt, seg_k_bs, start, block_size, length):
  """(B, 1, 1, T, block) visibility of one key block: causal, same segment, not key padding."""
  q_index = jnp.arange(seg_q_bt.shape[1])[:, None]
  k_index = start + jnp.arange(block_size)[None, :]
  visible = (q_index >= k_index) & (k_index < length)
  same = seg_q_bt[:, :, None] == seg_k_bs[:, None, :]
  return (visible[None] & same)[:, None, None]


def _grouped(q_btnh: jax.Array, kv_heads: int) -> jax.Array:
  b, t, n, h = q_btnh.shape
  return q_btnh.reshape(b, t, kv_heads, n // kv_heads, h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def blockwise_attention(q_btnh, k_bskh, v_bskh, segment_ids_bt, block_size=DEFAULT_BLOCK_SIZE):
  """Causal, segment-masked attention by online softmax over key blocks; O(T * block) memory."""
  return _blockwise_forward(q_btnh, k_bskh, v_bskh, segment_ids_bt, block_size)[0]


def _blockwise_forward(q_btnh, k_bskh, v_bskh, segment_ids_bt, block_size):
  b, t, n, h = q_btnh.shape
  length, kv_heads = k_bskh.shape[1], k_bskh.shape[2]
  block_size = min(block_size, length)
  precision = matmul_precision(q_btnh.dtype)
  scale = h ** -0.5
  q = _grouped(q_btnh, kv_heads)  # (B, T, K, G, H)
  k_blocks = _split_blocks(k_bskh, block_size, 0)
  v_blocks = _split_blocks(v_bskh, block_size, 0)
  seg_blocks = _split_blocks(segment_ids_bt, block_size, -1)
  starts = jnp.arange(k_blocks.shape[0]) * block_size

  def step(carry, block):
    m, l, acc = carry  # (B, K, G, T), (B, K, G, T), (B, K, G, T, H)
    k, v, seg, start = block
    s = jnp.einsum("btkgh,bskh->bkgts", q, k, precision=precision,
                   preferred_element_type=jnp.float32) * scale
    mask = _block_mask(segment_ids_bt, seg, start, block_size, length)
    s = jnp.where(mask, s, _MASKED)
    m_new = jnp.maximum(m, s.max(-1))
    p = jnp.where(mask, jnp.exp(s - m_new[..., None]), 0.0)
    correction = jnp.exp(m - m_new)
    l = l * correction + p.sum(-1)
    pv = jnp.einsum("bkgts,bskh->bkgth", p.astype(v.dtype), v, precision=precision,
                    preferred_element_type=jnp.float32)
    return (m_new, l, acc * correction[..., None] + pv), None

  groups = n // kv_heads
  init = (jnp.full((b, kv_heads, groups, t), _MASKED, jnp.float32),
          jnp.zeros((b, kv_heads, groups, t), jnp.float32),
          jnp.zeros((b, kv_heads, groups, t, h), jnp.float32))
  (m, l, acc), _ = jax.lax.scan(step, init, (k_blocks, v_blocks, seg_blocks, starts))
  out_bkgth = acc / l[..., None]
  lse_bkgt = m + jnp.log(l)
  out = jnp.transpose(out_bkgth, (0, 3, 1, 2, 4)).reshape(b, t, n, h).astype(q_btnh.dtype)
  return out, (q_btnh, k_bskh, v_bskh, segment_ids_bt, out, lse_bkgt)


def _blockwise_backward(block_size, residuals, d_out_btnh):
  q_btnh, k_bskh, v_bskh, segment_ids_bt, out_btnh, lse = residuals
  b, t, n, h = q_btnh.shape
  length, kv_heads = k_bskh.shape[1], k_bskh.shape[2]
  block_size = min(block_size, length)
  precision = matmul_precision(q_btnh.dtype)
  scale = h ** -0.5
  q = _grouped(q_btnh, kv_heads)
  d_out = _grouped(d_out_btnh, kv_heads)
  # D_t = sum_h dO * O, the softmax-gradient correction term (FlashAttention-2, eq. for dS).
  delta = jnp.einsum("btkgh,btkgh->bkgt", d_out.astype(jnp.float32),
                     _grouped(out_btnh, kv_heads).astype(jnp.float32), precision=precision)
  k_blocks = _split_blocks(k_bskh, block_size, 0)
  v_blocks = _split_blocks(v_bskh, block_size, 0)
  seg_blocks = _split_blocks(segment_ids_bt, block_size, -1)
  starts = jnp.arange(k_blocks.shape[0]) * block_size

  def step(d_q, block):
    k, v, seg, start = block
    s = jnp.einsum("btkgh,bskh->bkgts", q, k, precision=precision,
                   preferred_element_type=jnp.float32) * scale
    mask = _block_mask(segment_ids_bt, seg, start, block_size, length)
    p = jnp.where(mask, jnp.exp(s - lse[..., None]), 0.0)
    d_v = jnp.einsum("bkgts,btkgh->bskh", p.astype(d_out.dtype), d_out, precision=precision,
                     preferred_element_type=jnp.float32)
    d_p = jnp.einsum("btkgh,bskh->bkgts", d_out, v, precision=precision,
                     preferred_element_type=jnp.float32)
    d_s = (p * (d_p - delta[..., None]) * scale).astype(q.dtype)
    d_q = d_q + jnp.einsum("bkgts,bskh->btkgh", d_s, k, precision=precision,
                           preferred_element_type=jnp.float32)
    d_k = jnp.einsum("bkgts,btkgh->bskh", d_s, q, precision=precision,
                     preferred_element_type=jnp.float32)
    return d_q, (d_k, d_v)

  d_q0 = jnp.zeros(q.shape, jnp.float32)
  d_q, (d_k_blocks, d_v_blocks) = jax.lax.scan(
      step, d_q0, (k_blocks, v_blocks, seg_blocks, starts))

  def merge(blocks):  # (S/block, B, block, K, H) -> (B, S, K, H), dropping key padding.
    merged = jnp.moveaxis(blocks, 0, 1).reshape((b, -1) + blocks.shape[3:])
    return merged[:, :length].astype(k_bskh.dtype)

  return (d_q.reshape(b, t, n, h).astype(q_btnh.dtype), merge(d_k_blocks), merge(d_v_blocks), None)


blockwise_attention.defvjp(_blockwise_forward, _blockwise_backward)
