"""The ViT in Flax NNX: patch embedding, position embeddings, pre-LN encoder, pooling (SigLIP, CLIP, DINOv2, MAE).

`ViT(config, rngs=...)(images_bhwc)` takes float images in [-1, 1], (B, H, W, 3), and returns
`(pooled, tokens)`: tokens (B, N, token_width) are the patch tokens (N = (image_size // patch_size)^2: as
a VALID convolution, the patch grid drops a remainder, e.g. So400m/14 at 384 px sees 27 x 27 patches; a
class token is never among them), in the compute dtype; pooled (B, num_classes or width) is float32, or
None for pool_type "none". By default tokens are the last block's output after the final encoder norm;
`feature_layer` i picks Hugging Face's `hidden_states[i]` instead (0 = the embeddings, -1 = the last
block's output before the final norm, -2 the one before: LLaVA's choice for CLIP).

Pool types: "map" (multihead attention pooling with a learned probe, big_vision's MAPHead),
"gap" (mean of the patch tokens), "tok" (the class token's output), "none".
With num_classes > 0 a `head` Dense maps the pooled vector (SigLIP's image embedding), or with pool
"none" every token (PaliGemma's projection of the tokens to the LM width: then token_width = num_classes).

Variants beyond big_vision's ViT, each a config field whose default is big_vision's behaviour:
  class_token   a class token prepended before the encoder with its own position embedding, so
                pos_embedding is (1, 1 + N, D) (CLIP, DINOv2, MAE); big_vision's pool "tok" instead
                adds a class token without one (pos_embedding (1, N, D)).
  pre_norm      a LayerNorm after the embeddings (CLIP's pre_layrnorm).
  norm_tokens   False: the final norm applies to the pooled class token only (CLIP's post_layernorm);
                tokens are then the last block's raw output.
  norm_eps, activation, layer_scale   see `layers.py` (CLIP 1e-5 and quick-GELU, DINOv2 layer scale, ...).
  patch_bias    False: the patch embedding has no bias (CLIP).
  pixel_mean, pixel_std   the normalisation the weights expect, per RGB channel of pixels in [0, 1];
                images in [-1, 1] are mapped to (pixel - mean) / std inside the tower (the default
                0.5 / 0.5 is the identity: SigLIP's [-1, 1]).

Parameter paths (the big_vision name each loads from, see `checkpoint.py`; `hf.py` maps Hugging Face's):
  embedding/kernel (P, P, 3, D) HWIO, embedding/bias (D,)   embedding/...
  pos_embedding (1, N or 1 + N, D)                            pos_embedding  (posemb "learn")
  cls (1, 1, D)                                               cls            (pool_type "tok" or class_token)
  pre_norm/{scale,bias}                                       -              (pre_norm)
  transformer/blocks/<i>/{attn_norm,attn,mlp_norm,mlp}/...    Transformer/encoderblock_<i>/...
  transformer/blocks/<i>/{ls1,ls2} (D,)                       -              (layer_scale)
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
  class_token: bool = False
  pre_norm: bool = False
  norm_tokens: bool = True
  norm_eps: float = layers.LAYER_NORM_EPS
  activation: str = "gelu_tanh"
  layer_scale: bool = False
  patch_bias: bool = True
  pixel_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
  pixel_std: tuple[float, ...] = (0.5, 0.5, 0.5)
  feature_layer: int | None = None

  def __post_init__(self):
    for field in ("pixel_mean", "pixel_std"):  # lists from a JSON manifest become tuples (hashable)
      value = tuple(float(v) for v in getattr(self, field))
      if len(value) != self.channels:
        raise ValueError(f"{field} needs {self.channels} values (one per channel), got {value}.")
      object.__setattr__(self, field, value)
    if any(std <= 0 for std in self.pixel_std):
      raise ValueError(f"pixel_std must be positive, got {self.pixel_std}.")
    if self.feature_layer is not None and not -(self.depth + 1) <= self.feature_layer <= self.depth:
      raise ValueError(f"feature_layer {self.feature_layer} is out of range for depth {self.depth}: valid are "
                       f"{-(self.depth + 1)}..{self.depth} (Hugging Face hidden_states indices) or None.")
    if self.class_token and self.posemb != "learn":
      raise ValueError("class_token needs posemb 'learn' (its position embedding is a parameter).")
    if not self.norm_tokens and self.pool_type != "tok":
      raise ValueError("norm_tokens=False (the final norm on the class token only) needs pool_type 'tok'.")
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
    layers.check_encoder_fields(self)

  @property
  def grid_size(self) -> int:
    return self.image_size // self.patch_size

  @property
  def num_patches(self) -> int:
    return self.grid_size ** 2

  @property
  def has_cls(self) -> bool:
    """Whether a class token runs through the encoder (pool "tok" or class_token)."""
    return self.class_token or self.pool_type == "tok"

  @property
  def num_positions(self) -> int:
    """Rows of pos_embedding: the patches, plus the class token's with class_token."""
    return self.num_patches + int(self.class_token)

  @property
  def token_width(self) -> int:
    """Width of the returned tokens: num_classes for pool "none" with a head, else width."""
    return self.num_classes if self.pool_type == "none" and self.num_classes else self.width

  @property
  def normalizes_pixels(self) -> bool:
    return self.pixel_mean != (0.5,) * self.channels or self.pixel_std != (0.5,) * self.channels

  @property
  def encoder_shape(self) -> layers.EncoderShape:
    return layers.EncoderShape(self.width, self.depth, self.mlp_dim, self.num_heads, self.dtype,
                               self.param_dtype, self.attention_impl, self.remat, self.norm_eps,
                               self.activation, self.layer_scale)


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
    self.use_bias = config.patch_bias
    if config.patch_bias:
      self.bias = layers.param(jnp.zeros((d,), jnp.dtype(config.param_dtype)), ("vis_embed",))

  def __call__(self, images_bhwc: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        images_bhwc.astype(self.dtype), self.kernel[...].astype(self.dtype),
        window_strides=(self.patch_size, self.patch_size), padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=attention_lib.matmul_precision(self.dtype),
        preferred_element_type=jnp.float32)
    if self.use_bias:
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
    self.norm = layers.LayerNorm(d, shape.dtype, shape.param_dtype, shape.norm_eps)
    self.mlp = layers.MlpBlock(shape, rngs=rngs)

  def __call__(self, x_bnd: jax.Array) -> jax.Array:
    probe = jnp.broadcast_to(self.probe[...].astype(x_bnd.dtype), (x_bnd.shape[0], 1, x_bnd.shape[2]))
    x = self.attn(probe, x_bnd, "patch")
    x = x + self.mlp(self.norm(x), "length")
    return x[:, 0]


class ViT(nnx.Module):
  """`vit(images_bhwc)` -> (pooled float32 (B, num_classes or width) | None, tokens (B, N, token_width))."""

  def __init__(self, config: ViTConfig, *, rngs: nnx.Rngs):
    self.config = config
    d, store = config.width, jnp.dtype(config.param_dtype)
    self.embedding = PatchEmbedding(config, rngs=rngs)
    if config.posemb == "learn":
      init = jax.nn.initializers.normal(stddev=1 / math.sqrt(d))
      self.pos_embedding = layers.param(init(rngs.params(), (1, config.num_positions, d), store),
                                        (None, "patch", "vis_embed"))
    if config.has_cls:
      self.cls = layers.param(jnp.zeros((1, 1, d), store), (None, None, "vis_embed"))
    if config.pre_norm:
      self.pre_norm = layers.LayerNorm(d, config.dtype, config.param_dtype, config.norm_eps)
    self.transformer = layers.Encoder(config.encoder_shape, rngs=rngs)
    if config.pool_type == "map":
      self.map_head = MAPHead(config.encoder_shape, rngs=rngs)
    if config.num_classes:
      self.head = layers.Dense("...d,dc->...c", (d, config.num_classes), ("vis_embed", None), (0,), (None,),
                               dtype=config.dtype, param_dtype=config.param_dtype, rngs=rngs,
                               zero_init=config.head_zeroinit, out_dtype="float32")

  def position_embedding(self) -> jax.Array:
    if self.config.posemb == "learn":
      return self.pos_embedding[...]
    g = self.config.grid_size
    return jnp.asarray(posemb_sincos2d(g, g, self.config.width))

  def embed(self, images_bhwc: jax.Array) -> jax.Array:
    """(B, [1 +] N, width): patch embeddings with positions, the class token first when there is one."""
    config = self.config
    expected = (config.image_size, config.image_size, config.channels)
    if tuple(images_bhwc.shape[1:]) != expected:
      raise ValueError(f"ViT expects images (B, {', '.join(map(str, expected))}), got {images_bhwc.shape}.")
    images_bhwc = constrain(images_bhwc, ("batch", None, None, None))
    if config.normalizes_pixels:
      mean = jnp.asarray(config.pixel_mean, jnp.float32)
      std = jnp.asarray(config.pixel_std, jnp.float32)
      images_bhwc = ((images_bhwc.astype(jnp.float32) + 1.0) * 0.5 - mean) / std
    x = self.embedding(images_bhwc)
    positions = self.position_embedding().astype(jnp.float32)
    if config.has_cls:
      cls = jnp.broadcast_to(self.cls[...].astype(jnp.float32), (x.shape[0], 1, x.shape[2]))
      if config.class_token:  # the class token has its own position embedding (row 0)
        x = jnp.concatenate([cls, x.astype(jnp.float32)], axis=1) + positions
      else:  # big_vision: positions on the patches, then the class token
        x = jnp.concatenate([cls, x.astype(jnp.float32) + positions], axis=1)
    else:
      x = x.astype(jnp.float32) + positions
    x = x.astype(jnp.dtype(config.dtype))
    if config.pre_norm:
      x = self.pre_norm(x)
    return constrain(x, ("batch", "patch", "vis_embed"))

  def hidden_states(self, images_bhwc: jax.Array) -> list[jax.Array]:
    """Hugging Face's hidden_states: [embeddings, each block's output] (depth + 1 arrays (B, T, width),
    class token included, no final norm)."""
    return self.transformer.hidden_states(self.embed(images_bhwc), "patch")

  def __call__(self, images_bhwc: jax.Array) -> tuple[jax.Array | None, jax.Array]:
    config = self.config
    states = self.hidden_states(images_bhwc)
    last = states[-1]
    x = self.transformer.encoder_norm(last) if config.norm_tokens else last
    skip = 1 if config.has_cls else 0
    tokens = x[:, skip:] if config.feature_layer is None else states[config.feature_layer][:, skip:]
    if config.pool_type == "map":
      pooled = self.map_head(x)
    elif config.pool_type == "gap":
      pooled = jnp.mean(x[:, skip:].astype(jnp.float32), axis=1)
    elif config.pool_type == "tok":
      pooled = x[:, 0] if config.norm_tokens else self.transformer.encoder_norm(last[:, 0])
    else:
      if config.num_classes:
        tokens = self.head(tokens).astype(tokens.dtype)
      return None, tokens
    pooled = self.head(pooled) if config.num_classes else pooled
    return constrain(pooled.astype(jnp.float32), ("batch", None)), tokens
