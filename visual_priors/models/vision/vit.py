"""The SigLIP-style ViT in Flax NNX: patch embedding, position embeddings, pre-LN encoder, pooling.

`ViT(config, rngs=...)(images_bhwc)` takes float images in [-1, 1], (B, H, W, 3), and returns
`(pooled, tokens)`: tokens (B, N, width) are the patch tokens after the final encoder norm, in the
compute dtype (N = (image_size // patch_size)^2: as a VALID convolution, the patch grid drops
a remainder, e.g. So400m/14 at 384 px sees 27 x 27 patches; the class token of pool_type "tok" is not among
them); pooled (B, num_classes or width) is float32, or None for pool_type "none".

Pool types: "map" (multihead attention pooling with a learned probe, big_vision's MAPHead),
"gap" (mean of the tokens), "tok" (a learned class token prepended; its output), "none".
With num_classes > 0 a `head` Dense maps the pooled vector (SigLIP's image embedding).

Parameter paths (the big_vision name each loads from, see `checkpoint.py`):
  embedding/kernel (P, P, 3, D) HWIO, embedding/bias (D,)   embedding/...
  pos_embedding (1, N, D)                                     pos_embedding  (posemb "learn")
  cls (1, 1, D)                                               cls            (pool_type "tok")
  transformer/blocks/<i>/{attn_norm,attn,mlp_norm,mlp}/...    Transformer/encoderblock_<i>/...
  transformer/encoder_norm/{scale,bias}                       Transformer/encoder_norm/...
  map_head/{probe,attn,norm,mlp}/...                          MAPHead_0/{probe,MultiHeadDot...,
                                                                         LayerNorm_0,MlpBlock_0}
  head/{kernel,bias} (D, num_classes)                         head/...
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from visual_priors.models import attention as attention_lib
from visual_priors.models.sharding import constrain
from visual_priors.models.vision import layers

POOL_TYPES = ("map", "gap", "tok", "none")
POSEMB_TYPES = ("learn", "sincos2d")


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """Shape and numerics of a ViT; `registry.ENCODERS` holds the named ones."""

  image_size: int
  patch_size: int
  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  pool_type: str = "map"
  posemb: str = "learn"
  num_classes: int = 0
  head_zeroinit: bool = True
  dtype: str = "bfloat16"
  param_dtype: str = "float32"
  attention_impl: str = "auto"
  remat: str = "none"
  channels: int = 3

  def __post_init__(self):
    if self.patch_size > self.image_size:
      raise ValueError(f"patch_size {self.patch_size} exceeds image_size {self.image_size}.")
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}.")
    if self.pool_type not in POOL_TYPES:
      raise ValueError(f"pool_type {self.pool_type!r} is not one of {POOL_TYPES}.")
    if self.posemb not in POSEMB_TYPES:
      raise ValueError(f"posemb {self.posemb!r} is not one of {POSEMB_TYPES}.")
    if self.posemb == "sincos2d" and self.width % 4:
      raise ValueError(f"posemb 'sincos2d' needs width divisible by 4, got {self.width}.")
    if self.pool_type == "none" and self.num_classes:
      raise ValueError("pool_type 'none' has no pooled vector for a head; set num_classes=0.")
    layers.check_encoder_fields(self)

  @property
  def grid_size(self) -> int:
    return self.image_size // self.patch_size

  @property
  def num_patches(self) -> int:
    return self.grid_size ** 2

  @property
  def encoder_shape(self) -> layers.EncoderShape:
    return layers.EncoderShape(self.width, self.depth, self.mlp_dim, self.num_heads, self.dtype,
                               self.param_dtype, self.attention_impl, self.remat)


def posemb_sincos2d(height: int, width: int, dim: int, temperature: float = 10_000.0) -> np.ndarray:
  """(1, height*width, dim) fixed embedding: [sin x, cos x, sin y, cos y], each over dim/4 frequencies."""
  quarter = dim // 4
  omega = 1.0 / temperature ** (np.arange(quarter) / max(quarter - 1, 1))
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  angle_x = cols.reshape(-1, 1) * omega[None, :]
  angle_y = rows.reshape(-1, 1) * omega[None, :]
  table = np.concatenate([np.sin(angle_x), np.cos(angle_x), np.sin(angle_y), np.cos(angle_y)], axis=1)
  return table[None].astype(np.float32)


class PatchEmbedding(nnx.Module):
  """A stride-P, P x P convolution (NHWC input, HWIO kernel): one width-D token per patch."""

  def __init__(self, config: ViTConfig, *, rngs: nnx.Rngs):
    p, c, d = config.patch_size, config.channels, config.width
    self.patch_size = p
    self.dtype = jnp.dtype(config.dtype)
    init = layers.xavier_uniform((0, 1, 2), (3,))  # fan_in = P*P*C, as linen's Conv lecun/xavier.
    self.kernel = layers.param(init(rngs.params(), (p, p, c, d), jnp.dtype(config.param_dtype)),
                               (None, None, None, "vis_embed"))
    self.bias = layers.param(jnp.zeros((d,), jnp.dtype(config.param_dtype)), ("vis_embed",))

  def __call__(self, images_bhwc: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        images_bhwc.astype(self.dtype), self.kernel[...].astype(self.dtype),
        window_strides=(self.patch_size, self.patch_size), padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=attention_lib.matmul_precision(self.dtype),
        preferred_element_type=jnp.float32)
    y = y + self.bias[...].astype(jnp.float32)
    b, h, w, d = y.shape
    return y.reshape(b, h * w, d).astype(self.dtype)


class MAPHead(nnx.Module):
  """Multihead attention pooling: a learned probe attends to the tokens, then a residual MLP."""

  def __init__(self, shape: layers.EncoderShape, *, rngs: nnx.Rngs):
    d = shape.width
    probe = layers.xavier_uniform((1,), (2,))(rngs.params(), (1, 1, d), jnp.dtype(shape.param_dtype))
    self.probe = layers.param(probe, (None, None, "vis_embed"))
    # One query token: XLA's kernel is as fast as any, and cuDNN's needs longer query blocks.
    self.attn = layers.MultiHeadAttention(shape, rngs=rngs, implementation="xla")
    self.norm = layers.LayerNorm(d, shape.dtype, shape.param_dtype)
    self.mlp = layers.MlpBlock(shape, rngs=rngs)

  def __call__(self, x_bnd: jax.Array) -> jax.Array:
    probe = jnp.broadcast_to(self.probe[...].astype(x_bnd.dtype), (x_bnd.shape[0], 1, x_bnd.shape[2]))
    x = self.attn(probe, x_bnd, "patch")
    x = x + self.mlp(self.norm(x), "length")
    return x[:, 0]


class ViT(nnx.Module):
  """`vit(images_bhwc)` -> (pooled float32 (B, num_classes or width) | None, tokens (B, N, width))."""

  def __init__(self, config: ViTConfig, *, rngs: nnx.Rngs):
    self.config = config
    d, store = config.width, jnp.dtype(config.param_dtype)
    self.embedding = PatchEmbedding(config, rngs=rngs)
    if config.posemb == "learn":
      init = jax.nn.initializers.normal(stddev=1 / math.sqrt(d))
      self.pos_embedding = layers.param(init(rngs.params(), (1, config.num_patches, d), store),
                                        (None, "patch", "vis_embed"))
    if config.pool_type == "tok":
      self.cls = layers.param(jnp.zeros((1, 1, d), store), (None, None, "vis_embed"))
    self.transformer = layers.Encoder(config.encoder_shape, rngs=rngs)
    if config.pool_type == "map":
      self.map_head = MAPHead(config.encoder_shape, rngs=rngs)
    if config.num_classes:
      self.head = layers.Dense("bd,dc->bc", (d, config.num_classes), ("vis_embed", None), (0,), (None,),
                               dtype=config.dtype, param_dtype=config.param_dtype, rngs=rngs,
                               zero_init=config.head_zeroinit, out_dtype="float32")

  def position_embedding(self) -> jax.Array:
    if self.config.posemb == "learn":
      return self.pos_embedding[...]
    g = self.config.grid_size
    return jnp.asarray(posemb_sincos2d(g, g, self.config.width))

  def __call__(self, images_bhwc: jax.Array) -> tuple[jax.Array | None, jax.Array]:
    config = self.config
    expected = (config.image_size, config.image_size, config.channels)
    if tuple(images_bhwc.shape[1:]) != expected:
      raise ValueError(f"ViT expects images (B, {', '.join(map(str, expected))}), got {images_bhwc.shape}.")
    images_bhwc = constrain(images_bhwc, ("batch", None, None, None))
    x = self.embedding(images_bhwc)
    x = (x.astype(jnp.float32) + self.position_embedding().astype(jnp.float32)).astype(x.dtype)
    if config.pool_type == "tok":
      cls = jnp.broadcast_to(self.cls[...].astype(x.dtype), (x.shape[0], 1, x.shape[2]))
      x = jnp.concatenate([cls, x], axis=1)
    x = constrain(x, ("batch", "patch", "vis_embed"))
    x = self.transformer(x, "patch")
    tokens = x[:, 1:] if config.pool_type == "tok" else x
    if config.pool_type == "map":
      pooled = self.map_head(x)
    elif config.pool_type == "gap":
      pooled = jnp.mean(x.astype(jnp.float32), axis=1)
    elif config.pool_type == "tok":
      pooled = x[:, 0]
    else:
      return None, tokens
    pooled = self.head(pooled) if config.num_classes else pooled
    return constrain(pooled.astype(jnp.float32), ("batch", None)), tokens
