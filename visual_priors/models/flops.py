"""Model FLOPs per trained token, the numerator of MFU."""

from __future__ import annotations

from visual_priors.models.decoder import DecoderConfig


def forward_flops_per_token(config: DecoderConfig, seq_len: int) -> float:
  """Matmul FLOPs of one token's forward pass at context `seq_len` (2 per multiply-add).

  Counts every weight matmul (q, k, v, o, gate, up, down, and the output projection, which is
  the embedding matrix when tied) and the attention scores and weighted values; causal attention
  is counted as half of the full S x S work. Norms, RoPE, softmax and the embedding lookup are
  not matmuls and are left out, as in the usual 6N accounting.
  """
  d, h = config.d_model, config.head_dim
  q_and_o = 2 * d * config.n_heads * h
  k_and_v = 2 * d * config.n_kv_heads * h
  mlp = 3 * d * config.d_ff
  per_layer_weights = q_and_o + k_and_v + mlp
  output_projection = d * config.vocab_size
  weight_flops = 2 * (config.n_layers * per_layer_weights + output_projection)
  # Scores (q.k) and weighted values (p.v): 2 matmuls x 2 FLOPs x seq_len keys x heads x head_dim,
  # halved for the causal mask.
  attention_flops = config.n_layers * 2 * 2 * seq_len * config.n_heads * h / 2
  return float(weight_flops + attention_flops)


def train_flops_per_token(config: DecoderConfig, seq_len: int) -> float:
  """Forward + backward model FLOPs per token: 3x the forward (rematerialisation not counted)."""
  return 3.0 * forward_flops_per_token(config, seq_len)
