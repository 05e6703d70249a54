"""The multimodal loss: logits only at the supervised positions give the sums (and gradients) of every position's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.models import scales
from visual_priors.models.mllm import MLLM, MLLMConfig
from visual_priors.models.vision import get_encoder
from visual_priors.train import losses, multimodal_step

VOCAB = 50
CONFIG = MLLMConfig(vision=get_encoder("vit-nano", pool_type="none", num_classes=0),
                    llm=scales.get_scale("nano", vocab_size=VOCAB, attention_impl="xla"),
                    projector="mlp2x_gelu", num_visual_tokens=4)


def _batch(supervised_per_row: int, rows: int = 3, length: int = 16) -> dict:
  rng = np.random.default_rng(supervised_per_row)
  mask = np.zeros((rows, length), np.int32)
  mask[:, 1:5] = 1
  weights = np.zeros((rows, length), np.float32)
  for row in range(rows):  # answers at different places in each row
    start = 6 + row % 3
    weights[row, start:start + supervised_per_row] = 1.0
  return {"images": jnp.asarray(rng.uniform(-1, 1, (rows, 16, 16, 3)), jnp.float32),
          "decoder_input_tokens": jnp.asarray(rng.integers(3, VOCAB, (rows, length)), jnp.int32),
          "decoder_target_tokens": jnp.asarray(rng.integers(3, VOCAB, (rows, length)), jnp.int32),
          "decoder_loss_weights": jnp.asarray(weights), "decoder_image_mask": jnp.asarray(mask)}


def _dense_loss(model: MLLM, batch: dict, rng) -> tuple[jax.Array, jax.Array]:
  del rng
  logits = model(batch["images"], batch["decoder_input_tokens"], image_mask_bt=batch["decoder_image_mask"])
  _, aux = losses.next_token_loss(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])
  return aux["loss_sum"], aux["tokens"]


@pytest.mark.parametrize("supervised_per_row", [2, 7])  # 7 of 16 per row: over the fraction, every position
def test_supervised_position_logits_give_every_positions_loss_and_gradients(supervised_per_row):
  model = MLLM(CONFIG, rngs=nnx.Rngs(0))
  batch = _batch(supervised_per_row)

  def loss_and_grads(loss_fn):
    def loss(model):
      loss_sum, tokens = loss_fn(model, batch, None)
      return loss_sum, tokens
    return nnx.jit(nnx.value_and_grad(loss, has_aux=True))(model)

  (sparse_sum, sparse_tokens), sparse_grads = loss_and_grads(multimodal_step.mllm_loss)
  (dense_sum, dense_tokens), dense_grads = loss_and_grads(_dense_loss)
  assert float(sparse_tokens) == float(dense_tokens) == 3 * supervised_per_row
  np.testing.assert_allclose(float(sparse_sum), float(dense_sum), rtol=1e-5)
  for got, want in zip(jax.tree.leaves(sparse_grads), jax.tree.leaves(dense_grads), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)
