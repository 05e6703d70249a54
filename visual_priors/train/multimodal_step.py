"""Loss functions and batch features of the multimodal stages, for the one trainer's train step.

Imports only jax, flax and this package's model modules (no grain, TensorFlow or ml_collections), so a
bare accelerator image can run the SFT step (`benchmarks/gpu_throughput.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax

from visual_priors.models.mllm import MLLM
from visual_priors.train import losses, step

# Instruction batches with images (align, sft): the LM features, the image slots and the images.
MLLM_FEATURES = step.LM_FEATURES + ("decoder_image_mask", "images")
# Text-only instruction batches (blind): images withheld, so no image slots and no encoder pass.
TEXT_ONLY_FEATURES = step.LM_FEATURES
# Caption batches (contrastive): images and 0-padded caption ids.
CAPTION_FEATURES = ("images", "text_tokens")


def mllm_loss(model: MLLM, batch: Mapping[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Next-token cross-entropy of the MLLM summed over loss-weighted targets, and the weight sum.

  With "images" in the batch the visual tokens fill the `decoder_image_mask` slots; without it the
  batch is text-only and the encoder does not run.
  """
  del rng  # no dropout
  logits_btv = model(batch.get("images"), batch["decoder_input_tokens"],
                     positions_bt=batch.get("decoder_positions"), segment_ids_bt=batch.get("decoder_segment_ids"),
                     image_mask_bt=batch.get("decoder_image_mask"))
  _, aux = losses.next_token_loss(logits_btv, batch["decoder_target_tokens"], batch["decoder_loss_weights"])
  return aux["loss_sum"], aux["tokens"]
