"""Training FLOPs per token against a count written out by hand."""

from __future__ import annotations

import dataclasses

from visual_priors.models.decoder import DecoderConfig
from visual_priors.models.flops import train_flops_per_token


def test_train_flops_match_a_hand_count():
  # d=8, 2 layers, 2 heads of 4, 1 kv head, d_ff 16, vocab 10, seq 6.
  config = DecoderConfig(vocab_size=10, d_model=8, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=16)
  # Per layer, multiply-adds per token: q 8*8=64, k 8*4=32, v 32, o 64, gate/up/down 3*8*16=384.
  per_layer_macs = 64 + 32 + 32 + 64 + 384  # 576
  head_macs = 8 * 10  # 80
  weight_flops = 2 * (2 * per_layer_macs + head_macs)  # 2464
  # Attention: q.k and p.v, each 6 keys * 2 heads * 4 dims MACs = 48, causal half -> 24 each.
  attention_flops = 2 * 2 * (24 + 24)  # layers * 2 FLOPs/MAC * two matmuls = 192
  assert train_flops_per_token(config, 6) == 3 * (weight_flops + attention_flops) == 7968


def test_tied_embeddings_cost_the_same_output_matmul():
  config = DecoderConfig(vocab_size=10, d_model=8, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=16)
  tied = dataclasses.replace(config, tie_embeddings=True)
  assert train_flops_per_token(tied, 6) == train_flops_per_token(config, 6)
  assert train_flops_per_token(config, 12) > train_flops_per_token(config, 6)
