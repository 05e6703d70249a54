"""Training losses: weighted next-token cross-entropy in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def next_token_loss(
    logits_btv: jax.Array, targets_bt: jax.Array, weights_bt: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean cross-entropy of `targets_bt` under `logits_btv`, over tokens with nonzero weight.

  Targets are already the next tokens (seqio's `decoder_target_tokens`). Returns
  (loss_sum / max(tokens, 1), {"tokens": sum of weights, "loss_sum": weighted loss sum}), all
  float32 scalars; summing "loss_sum" and "tokens" over micro-batches gives the exact mean.
  """
  if logits_btv.shape[:-1] != targets_bt.shape or targets_bt.shape != weights_bt.shape:
    raise ValueError(f"Shapes disagree: logits {logits_btv.shape}, targets {targets_bt.shape}, "
                     f"weights {weights_bt.shape}; expected (B, T, V), (B, T), (B, T).")
  logits = logits_btv.astype(jnp.float32)
  log_normaliser = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets_bt[..., None].astype(jnp.int32), axis=-1)[..., 0]
  weights = weights_bt.astype(jnp.float32)
  loss_sum = jnp.sum((log_normaliser - target_logit) * weights)
  tokens = jnp.sum(weights)
  return loss_sum / jnp.maximum(tokens, 1.0), {"tokens": tokens, "loss_sum": loss_sum}
