"""Loss functions and batch features of the multimodal stages, for the one trainer's train step.

Imports only jax, flax and this package's model modules (no grain, TensorFlow or ml_collections), so a
bare accelerator image can run the SFT step (`benchmarks/gpu_throughput.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from visual_priors.models.mllm import MLLM
from visual_priors.train import losses, step

# Instruction batches with images (align, sft): the LM features, the image slots and the images.
MLLM_FEATURES = step.LM_FEATURES + ("decoder_image_mask", "images")
# Text-only instruction batches (blind): images withheld, so no image slots and no encoder pass.
TEXT_ONLY_FEATURES = step.LM_FEATURES
# Caption batches (contrastive): images and 0-padded caption ids.
CAPTION_FEATURES = ("images", "text_tokens")


# Logits only at the supervised positions while a batch has at most this fraction of them: an instruction row
# supervises a few answer tokens of its seq_len, and the vocabulary projection is most of a small LM's work.
SUPERVISED_LOGITS_FRACTION = 0.25


def mllm_loss(model: MLLM, batch: Mapping[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Next-token cross-entropy of the MLLM summed over loss-weighted targets, and the weight sum.

  With "images" in the batch the visual tokens fill the `decoder_image_mask` slots; without it the
  batch is text-only and the encoder does not run. The same sums as from the logits of every position: a batch
  whose loss-weighted positions fit in SUPERVISED_LOGITS_FRACTION of it takes the logits of those positions only.
  """
  del rng  # no dropout
  hidden_btd = model.hidden(batch.get("images"), batch["decoder_input_tokens"],
                            positions_bt=batch.get("decoder_positions"),
                            segment_ids_bt=batch.get("decoder_segment_ids"),
                            image_mask_bt=batch.get("decoder_image_mask"))
  targets_bt, weights_bt = batch["decoder_target_tokens"], batch["decoder_loss_weights"]

  def every_position(hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
    _, aux = losses.next_token_loss(model.llm.logits(hidden), targets_bt, weights_bt)
    return aux["loss_sum"], aux["tokens"]

  rows, length, width = hidden_btd.shape
  per_row = int(length * SUPERVISED_LOGITS_FRACTION)
  if per_row < 1 or per_row >= length:
    return every_position(hidden_btd)
  weighted = (weights_bt != 0).reshape(-1)

  def supervised_positions(hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
    # The weighted positions first (a stable sort keeps the rest, weight 0, after them), as `rows` rows again so
    # that the logits keep the batch's layout.
    order = jnp.argsort(~weighted, stable=True)[:rows * per_row]
    picked = hidden.reshape(rows * length, width)[order].reshape(rows, per_row, width)
    _, aux = losses.next_token_loss(model.llm.logits(picked), targets_bt.reshape(-1)[order].reshape(rows, per_row),
                                    weights_bt.reshape(-1)[order].reshape(rows, per_row))
    return aux["loss_sum"], aux["tokens"]

  return jax.lax.cond(jnp.sum(weighted) <= rows * per_row, supervised_positions, every_position, hidden_btd)
