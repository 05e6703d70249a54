"""Next-token loss against a direct numpy computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from visual_priors.train.losses import next_token_loss


def test_weighted_cross_entropy_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7)).astype(np.float32) * 3
  targets = rng.integers(0, 7, size=(2, 5)).astype(np.int32)
  weights = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  nll = -np.log(np.take_along_axis(probabilities, targets[..., None], -1)[..., 0])
  loss, aux = next_token_loss(logits, targets, weights)
  np.testing.assert_allclose(loss, (nll * weights).sum() / 8, rtol=1e-5)
  np.testing.assert_allclose(aux["loss_sum"], (nll * weights).sum(), rtol=1e-5)
  assert aux["tokens"] == 8 and loss.dtype == jnp.float32


def test_bfloat16_logits_give_a_float32_loss_and_no_tokens_give_zero():
  logits = jnp.zeros((1, 3, 4), jnp.bfloat16)
  loss, aux = next_token_loss(logits, jnp.zeros((1, 3), jnp.int32), jnp.ones((1, 3), jnp.int32))
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, np.log(4), rtol=1e-6)
  empty, aux = next_token_loss(logits, jnp.zeros((1, 3), jnp.int32), jnp.zeros((1, 3), jnp.int32))
  assert float(empty) == 0.0 and float(aux["tokens"]) == 0.0


def test_gradient_is_softmax_minus_one_hot():
  logits = jnp.asarray([[[0.0, 1.0, 2.0]]])
  grad = jax.grad(lambda x: next_token_loss(x, jnp.asarray([[2]]), jnp.asarray([[1]]))[0])(logits)
  np.testing.assert_allclose(grad[0, 0], jax.nn.softmax(logits[0, 0]) - jnp.asarray([0, 0, 1.0]),
                             rtol=1e-6)
