"""SigLIP's two towers and their sigmoid pairwise loss, with learned temperature and bias.

`TwoTower(img, txt, embed_dim, rngs=...)` holds `img` (ViT), `txt` (TextTransformer), `t` and `b`,
so parameter paths read `img/...`, `txt/...`, `t`, `b` (big_vision's two_towers layout).
`embed_dim` is big_vision's `out_dim`: an int gives both towers a head to that size, a pair
(image, text) sizes each, None meaning no head (the pooled width is the embedding). The released
SigLIP models use (None, width): the image embedding is the MAP head's output. The image head,
if any, starts random whatever the ViTConfig's head_zeroinit says. Embeddings are L2-normalised.
`t` is the log of the temperature (init log 10) and `b` the bias (init -10), each of shape (1,),
as SigLIP stores them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from visual_priors.models.vision import layers
from visual_priors.models.vision.text import TextConfig, TextTransformer
from visual_priors.models.vision.vit import ViT, ViTConfig

TEMPERATURE_INIT = 10.0
BIAS_INIT = -10.0
_NORM_EPS = 1e-8


def l2_normalize(x: jax.Array) -> jax.Array:
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + _NORM_EPS)


def sigmoid_loss(zimg: jax.Array, ztxt: jax.Array, t: jax.Array, b: jax.Array) -> jax.Array:
  """SigLIP's loss: -mean over images of sum over texts of log sigmoid(label * (exp(t) z_i.z_t + b)).

  zimg, ztxt: (B, E) normalised embeddings, row i of each a matching pair (label +1), every other
  pair a negative (label -1). t: the log-temperature (as the `t` parameter stores it); b: the bias.
  """
  if zimg.shape != ztxt.shape or zimg.ndim != 2:
    raise ValueError(f"sigmoid_loss needs two (B, E) embeddings of one shape, got {zimg.shape} and "
                     f"{ztxt.shape}.")
  logits = jnp.einsum("ie,je->ij", zimg.astype(jnp.float32), ztxt.astype(jnp.float32),
                      precision=jax.lax.Precision.HIGHEST)
  logits = logits * jnp.exp(jnp.reshape(t, ()).astype(jnp.float32)) + jnp.reshape(b, ()).astype(jnp.float32)
  labels = 2.0 * jnp.eye(zimg.shape[0], dtype=jnp.float32) - 1.0
  return -jnp.mean(jnp.sum(jax.nn.log_sigmoid(labels * logits), axis=-1))


class TwoTower(nnx.Module):
  """`model(images_bhwc, text_tokens_bl)` -> (zimg (B, E) | None, ztxt (B, E) | None), L2-normalised."""

  def __init__(self, img: ViTConfig, txt: TextConfig, embed_dim: int | tuple[int | None, int | None], *,
               rngs: nnx.Rngs, temperature_init: float = TEMPERATURE_INIT, bias_init: float = BIAS_INIT):
    if img.pool_type == "none":
      raise ValueError("The image tower of a TwoTower needs a pooled embedding; pool_type 'none' has "
                       "none. Use 'map' (SigLIP), 'gap' or 'tok'.")
    img_dim, txt_dim = (embed_dim, embed_dim) if isinstance(embed_dim, int) else embed_dim
    if (img_dim or img.width) != (txt_dim or txt.width):
      raise ValueError(f"The towers embed into different sizes: image {img_dim or img.width}, text "
                       f"{txt_dim or txt.width}; a head size of None keeps the tower's width.")
    # A zero-initialised head would embed every image at 0, where the L2 norm has no gradient.
    self.img = ViT(dataclasses.replace(img, num_classes=img_dim or 0, head_zeroinit=False), rngs=rngs)
    self.txt = TextTransformer(dataclasses.replace(txt, num_classes=txt_dim or 0), rngs=rngs)
    self.t = layers.param(jnp.full((1,), math.log(temperature_init), jnp.float32), (None,))
    self.b = layers.param(jnp.full((1,), bias_init, jnp.float32), (None,))

  def embed_images(self, images_bhwc: jax.Array) -> jax.Array:
    return l2_normalize(self.img(images_bhwc)[0])

  def embed_texts(self, text_tokens_bl: jax.Array) -> jax.Array:
    return l2_normalize(self.txt(text_tokens_bl)[0])

  def __call__(self, images_bhwc: jax.Array | None,
               text_tokens_bl: jax.Array | None) -> tuple[jax.Array | None, jax.Array | None]:
    zimg = None if images_bhwc is None else self.embed_images(images_bhwc)
    ztxt = None if text_tokens_bl is None else self.embed_texts(text_tokens_bl)
    return zimg, ztxt


def contrastive_loss(model: TwoTower, batch: Mapping[str, jax.Array],
                     rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The trainer's loss_fn for caption batches {"images": (B, H, W, 3), "text_tokens": (B, L)}.

  Returns (loss summed over the B images, B), so the trainer's sum / count is `sigmoid_loss`.
  Negatives are the other pairs of the same (micro-)batch: gradient accumulation shrinks them.
  """
  del rng  # The towers have no dropout.
  zimg, ztxt = model(batch["images"], batch["text_tokens"])
  count = jnp.float32(zimg.shape[0])
  return sigmoid_loss(zimg, ztxt, model.t[...], model.b[...]) * count, count
