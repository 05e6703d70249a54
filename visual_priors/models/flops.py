"""Model FLOPs, the numerator of MFU: the decoder per token; the text tower, projector and MLLM step.

The ViT's FLOPs per image are `visual_priors.models.vision.flops.forward_flops_per_image`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from visual_priors.models.decoder import DecoderConfig
from visual_priors.models.vision import flops as vision_flops

if TYPE_CHECKING:  # Only for annotations.
  from visual_priors.models.mllm import MLLMConfig
  from visual_priors.models.projector import ProjectorConfig
  from visual_priors.models.vision.text import TextConfig


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


def encoder_forward_flops(width: int, depth: int, mlp_dim: int, tokens: int) -> float:
  """Matmul FLOPs of a bidirectional pre-LN encoder (the text tower's) over one sequence of `tokens`.

  Per block and token: q, k, v, out (4 * width^2 MACs), the MLP (2 * width * mlp_dim) and full (not
  causal) attention, scores and weighted values over `tokens` keys (2 * tokens * width).
  """
  per_token = 4 * width * width + 2 * width * mlp_dim + 2 * tokens * width
  return float(2 * depth * tokens * per_token)


def text_tower_forward_flops(config: TextConfig, length: int) -> float:
  """Matmul FLOPs of one text of `length` tokens through `TextTransformer(config)` (encoder and head)."""
  flops = encoder_forward_flops(config.width, config.depth, config.mlp_dim, length)
  return float(flops + 2 * config.width * config.num_classes)


def projector_forward_flops(config: ProjectorConfig) -> float:
  """Matmul FLOPs of the projector on one visual token."""
  macs = config.in_dim * config.out_dim
  if config.kind == "mlp2x_gelu":
    macs += config.out_dim * config.out_dim
  return float(2 * macs)


def mllm_train_flops_per_step(config: MLLMConfig, *, batch_size: int, seq_len: int,
                              trained: Collection[str]) -> float:
  """Model FLOPs of one MLLM train step: `batch_size` rows of `seq_len` tokens, one image per row.

  `trained` names the parts whose weights train ("img", "proj", "llm"); parts run in the order
  img -> proj -> llm. A part that trains counts 3F (forward F, gradients with respect to its
  activations F, to its weights F); a frozen part that gradients pass through (a part after a trained
  one) counts 2F; a frozen part before every trained part counts F. So SFT (proj and llm train, img
  frozen) counts img 1F, proj 3F, llm 3F; align (proj only) counts img 1F, proj 3F, llm 2F. The LM's
  F counts every row position (visual slots included) at context `seq_len`; rematerialisation is not
  counted.
  """
  unknown = sorted(set(trained) - {"img", "proj", "llm"})
  if unknown:
    raise ValueError(f"Unknown MLLM part(s) {unknown}; the parts are 'img', 'proj' and 'llm'.")
  parts = (
      ("img", batch_size * vision_flops.forward_flops_per_image(config.vision)),
      ("proj", batch_size * config.num_visual_tokens * projector_forward_flops(config.projector_config())),
      ("llm", batch_size * seq_len * forward_flops_per_token(config.llm, seq_len)),
  )
  total = 0.0
  upstream_trains = False
  for name, forward in parts:
    trains = name in trained
    total += forward * (3 if trains else 2 if upstream_trains else 1)
    upstream_trains = upstream_trains or trains
  return total
