"""Named decoder scales: the paper's 340M..13B (shapes unpublished, chosen here) and CPU-sized ones.

The paper (docs/paper.md, section 1) gives only parameter counts, a ~32k vocabulary and 2048
context. The shapes below are Llama-like (head_dim 64 or 128, 8 KV heads, SwiGLU d_ff a multiple
of 128, untied embeddings, vocab 32000); `count_params` is within 3% of each name:

  name   d_model  n_layers  n_heads  n_kv_heads  head_dim  d_ff    parameters
  340m   1024     24        16       8           64        2688    339.3M
  1b     2048     16        32       8           64        7168    1003.6M
  1.3b   2048     24        16       8           128       5888    1301.4M  (throughput bench)
  3b     3072     28        24       8           128       8192    3015.4M
  7b     4096     32        32       8           128       13824   7040.4M
  13b    5120     40        40       8           128       16384   12911.0M

"1.3b" is not a paper scale: it matches the ~1.3B plain-JAX Llama used as the MFU reference.
"tiny" and "nano" train in seconds on a CPU, so they compute in float32 (XLA:CPU runs bfloat16
matmuls slower than float32); a data pipeline overrides their vocab_size with its own
vocabulary's size (`get_scale("tiny", vocab_size=vocab.vocab_size)`).
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from visual_priors.names import lookup
from visual_priors.models.decoder import Decoder, DecoderConfig

_PAPER_VOCAB = 32000
_ROPE_THETA = 500000.0  # Llama 3's base.


def _paper_scale(d_model: int, n_layers: int, n_heads: int, d_ff: int) -> DecoderConfig:
  return DecoderConfig(vocab_size=_PAPER_VOCAB, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                       n_kv_heads=8, d_ff=d_ff, rope_theta=_ROPE_THETA)


SCALES: dict[str, DecoderConfig] = {
    "nano": DecoderConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=192,
                          dtype="float32"),
    "tiny": DecoderConfig(vocab_size=1024, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=384,
                          dtype="float32"),
    "340m": _paper_scale(1024, 24, 16, 2688),
    "1b": _paper_scale(2048, 16, 32, 7168),
    "1.3b": _paper_scale(2048, 24, 16, 5888),
    "3b": _paper_scale(3072, 28, 24, 8192),
    "7b": _paper_scale(4096, 32, 32, 13824),
    "13b": _paper_scale(5120, 40, 40, 16384),
}


def get_scale(name: str, **overrides) -> DecoderConfig:
  """The named scale's config with `overrides` (any DecoderConfig field) applied."""
  config = lookup(SCALES, name, "model scale")
  fields = {field.name for field in dataclasses.fields(DecoderConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"Unknown DecoderConfig fields {unknown}; valid fields: {', '.join(sorted(fields))}.")
  return dataclasses.replace(config, **overrides)


def count_params(config: DecoderConfig) -> int:
  """Number of parameters of `Decoder(config)`, counted on its abstract (eval_shape) state."""
  abstract = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0)))
  return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
