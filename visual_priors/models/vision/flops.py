"""Matmul FLOPs of the ViT's forward pass per image, for MFU of steps that run the encoder."""

from __future__ import annotations

from visual_priors.models.vision.vit import ViTConfig


def forward_flops_per_image(config: ViTConfig) -> float:
  """2 FLOPs per multiply-add of every matmul: patch embedding, each block (q/k/v/out projections,
  full bidirectional attention scores and values, MLP), the MAP head and the head. Norms, GELU,
  softmax and the position-embedding add are not counted, as in the usual 6N accounting."""
  d, f = config.width, config.mlp_dim
  tokens = config.num_patches + (1 if config.has_cls else 0)
  fc1 = 2 * f if config.activation == "swiglu" else f  # the gated MLP's fc1 computes gate and value
  patch_embedding = 2 * config.num_patches * config.patch_size ** 2 * config.channels * d
  attention = 2 * 4 * tokens * d * d + 2 * 2 * tokens * tokens * d
  mlp = 2 * tokens * d * (fc1 + f)
  total = patch_embedding + config.depth * (attention + mlp)
  if config.pool_type == "map":  # One probe query over all tokens, then the MLP on that one vector.
    total += 2 * 2 * d * d + 2 * 2 * tokens * d * d + 2 * 2 * tokens * d + 2 * 2 * d * f
  if config.num_classes:  # on the pooled vector, or on every patch token for pool "none"
    total += 2 * d * config.num_classes * (config.num_patches if config.pool_type == "none" else 1)
  return float(total)


def train_flops_per_image(config: ViTConfig) -> float:
  """Forward + backward: 3x the forward (a frozen encoder costs only its forward: use that instead)."""
  return 3.0 * forward_flops_per_image(config)
