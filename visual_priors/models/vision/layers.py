"""Transformer-encoder layers shared by the image and text towers: LayerNorm, Dense, MHA, MLP, blocks.

Every layer is the Flax NNX counterpart of a big_vision (linen) module, with the same parameter
shapes so that checkpoints map one to one (see `checkpoint.py`):
  LayerNorm            scale, bias (D,)                      eps 1e-6, computed in float32
  MultiHeadAttention   query/key/value kernel (D, H, Dh), bias (H, Dh); out kernel (H, Dh, D), bias (D,)
  MlpBlock             fc1 kernel (D, F), bias (F,); fc2 kernel (F, D), bias (D,); tanh-GELU between
  EncoderBlock         pre-LN: x + attn(attn_norm(x)), then x + mlp(mlp_norm(x))
  Encoder              blocks, then encoder_norm
Variants other checkpoints need (`EncoderShape` fields; their defaults are big_vision's): `norm_eps`
(CLIP 1e-5, MAE 1e-12), `activation` ("gelu_tanh"; "gelu" exact, "quick_gelu" x * sigmoid(1.702 x) as
OpenAI CLIP / MetaCLIP, "swiglu": fc1 is (D, 2F), silu(first half) * second half, as DINOv2-g), and
`layer_scale` (DINOv2: per-channel `ls1`, `ls2` (D,) scaling each residual branch).
Logical axes: `vis_embed` (the model width), `vis_heads`, `head_dim`, `vis_mlp`; activations are
(batch, <length_axis>, vis_embed) where the length axis is `patch` for images and `length` for text.
Kernels are Xavier-uniform and biases zero, as in big_vision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from visual_priors.models import attention as attention_lib
from visual_priors.models.sharding import active_mesh, constrain

LAYER_NORM_EPS = 1e-6  # flax.linen.LayerNorm's default, which big_vision checkpoints were trained with.
ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "cudnn")
ACTIVATIONS = ("gelu_tanh", "gelu", "quick_gelu", "swiglu")
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
}


@dataclasses.dataclass(frozen=True)
class EncoderShape:
  """What the encoder layers need to know; the tower configs (ViTConfig, TextConfig) provide it."""

  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  dtype: str
  param_dtype: str
  attention_impl: str = "auto"
  remat: str = "none"
  norm_eps: float = LAYER_NORM_EPS
  activation: str = "gelu_tanh"
  layer_scale: bool = False


def check_encoder_fields(config) -> None:
  """Validates the fields every tower config shares: attention_impl, remat, dtype and param_dtype."""
  if config.attention_impl not in ATTENTION_IMPLEMENTATIONS:
    raise ValueError(f"attention_impl {config.attention_impl!r} is not one of {ATTENTION_IMPLEMENTATIONS}.")
  if config.remat not in REMAT_POLICIES:
    raise ValueError(f"remat {config.remat!r} is not one of {tuple(REMAT_POLICIES)}.")
  for field in ("dtype", "param_dtype"):
    jnp.dtype(getattr(config, field))  # Raises TypeError naming a bad dtype.
  if getattr(config, "activation", "gelu_tanh") not in ACTIVATIONS:
    raise ValueError(f"activation {config.activation!r} is not one of {ACTIVATIONS}.")


def xavier_uniform(in_axes: Sequence[int], out_axes: Sequence[int]) -> jax.nn.initializers.Initializer:
  return jax.nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=tuple(in_axes),
                                              out_axis=tuple(out_axes))


def param(value: jax.Array, axes: Sequence[str | None]) -> nnx.Param:
  """A parameter tagged with its logical axes (sharded only when created under a mesh-aware jit)."""
  return nnx.Param(value, out_sharding=tuple(axes), eager_sharding=False)


class LayerNorm(nnx.Module):
  """(x - mean) / sqrt(var + eps) * scale + bias over the last axis, in float32."""

  def __init__(self, width: int, dtype: str, param_dtype: str, eps: float = LAYER_NORM_EPS):
    self.dtype = jnp.dtype(dtype)
    self.eps = float(eps)
    self.scale = param(jnp.ones((width,), jnp.dtype(param_dtype)), ("vis_embed",))
    self.bias = param(jnp.zeros((width,), jnp.dtype(param_dtype)), ("vis_embed",))

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    normed = (x32 - mean) * jax.lax.rsqrt(variance + self.eps)
    out = normed * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
    return out.astype(self.dtype)


class Dense(nnx.Module):
  """An affine map written as one einsum over a named-axis kernel, plus a bias."""

  def __init__(self, equation: str, kernel_shape: Sequence[int], kernel_axes: Sequence[str | None],
               in_axes: Sequence[int], bias_axes: Sequence[str | None], *, dtype: str,
               param_dtype: str, rngs: nnx.Rngs, zero_init: bool = False, out_dtype: str | None = None):
    self.equation = equation
    self.dtype = jnp.dtype(dtype)
    self.out_dtype = jnp.dtype(out_dtype or dtype)
    store = jnp.dtype(param_dtype)
    out_axes = [axis for axis in range(len(kernel_shape)) if axis not in in_axes]
    if zero_init:
      kernel = jnp.zeros(tuple(kernel_shape), store)
    else:
      kernel = xavier_uniform(in_axes, out_axes)(rngs.params(), tuple(kernel_shape), store)
    self.kernel = param(kernel, kernel_axes)
    bias_shape = tuple(kernel_shape[axis] for axis in out_axes)
    self.bias = param(jnp.zeros(bias_shape, store), bias_axes)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.einsum(self.equation, x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                   precision=attention_lib.matmul_precision(self.dtype),
                   preferred_element_type=jnp.float32)
    return (y + self.bias[...].astype(jnp.float32)).astype(self.out_dtype)


def resolve_attention(name: str, dtype: jnp.dtype, head_dim: int) -> str:
  """"cudnn" or "xla" for bidirectional, unmasked attention: "auto" picks cuDNN on a GPU for bf16/fp16."""
  if name not in ATTENTION_IMPLEMENTATIONS:
    raise ValueError(f"Unknown attention_impl {name!r}; choose one of {ATTENTION_IMPLEMENTATIONS}.")
  mesh = active_mesh()
  platform = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
  if name == "cudnn" and platform != "gpu":
    raise ValueError(f"attention_impl 'cudnn' needs a GPU but the backend is {platform!r}; use 'auto'.")
  if name != "auto":
    return name
  cudnn_ok = jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_dim % 8 == 0 and head_dim <= 128
  return "cudnn" if platform == "gpu" and cudnn_ok else "xla"


class MultiHeadAttention(nnx.Module):
  """Bidirectional multi-head attention (no mask), scale 1/sqrt(head_dim); queries may differ from keys."""

  def __init__(self, shape: EncoderShape, *, rngs: nnx.Rngs, implementation: str | None = None):
    d, n = shape.width, shape.num_heads
    if d % n:
      raise ValueError(f"width {d} is not divisible by num_heads {n}.")
    h = d // n
    common = dict(dtype=shape.dtype, param_dtype=shape.param_dtype, rngs=rngs)
    qkv_axes = ("vis_embed", "vis_heads", "head_dim")
    self.query = Dense("bld,dnh->blnh", (d, n, h), qkv_axes, (0,), ("vis_heads", "head_dim"), **common)
    self.key = Dense("bld,dnh->blnh", (d, n, h), qkv_axes, (0,), ("vis_heads", "head_dim"), **common)
    self.value = Dense("bld,dnh->blnh", (d, n, h), qkv_axes, (0,), ("vis_heads", "head_dim"), **common)
    self.out = Dense("blnh,nhd->bld", (n, h, d), ("vis_heads", "head_dim", "vis_embed"), (0, 1),
                     ("vis_embed",), **common)
    self.implementation = implementation or shape.attention_impl

  def __call__(self, queries_bqd: jax.Array, inputs_bkd: jax.Array, length_axis: str) -> jax.Array:
    q = self.query(queries_bqd)
    k = constrain(self.key(inputs_bkd), ("batch", length_axis, "vis_heads", "head_dim"))
    v = constrain(self.value(inputs_bkd), ("batch", length_axis, "vis_heads", "head_dim"))
    kind = resolve_attention(self.implementation, q.dtype, q.shape[-1])
    out = jax.nn.dot_product_attention(q, k, v, implementation=kind)
    return self.out(out)


def activate(name: str, x: jax.Array) -> jax.Array:
  """The MLP nonlinearity `name` (see ACTIVATIONS), computed in float32."""
  x32 = x.astype(jnp.float32)
  if name == "gelu_tanh":
    y = jax.nn.gelu(x32, approximate=True)
  elif name == "gelu":
    y = jax.nn.gelu(x32, approximate=False)
  elif name == "quick_gelu":
    y = x32 * jax.nn.sigmoid(1.702 * x32)
  elif name == "swiglu":
    gate, up = jnp.split(x32, 2, axis=-1)
    y = jax.nn.silu(gate) * up
  else:
    raise ValueError(f"activation {name!r} is not one of {ACTIVATIONS}.")
  return y.astype(x.dtype)


class MlpBlock(nnx.Module):
  """fc2(act(fc1(x))); act is tanh-GELU by default, as big_vision's MlpBlock (flax's gelu is the tanh one)."""

  def __init__(self, shape: EncoderShape, *, rngs: nnx.Rngs):
    d, f = shape.width, shape.mlp_dim
    self.activation = shape.activation
    hidden = 2 * f if shape.activation == "swiglu" else f
    common = dict(dtype=shape.dtype, param_dtype=shape.param_dtype, rngs=rngs)
    self.fc1 = Dense("bld,df->blf", (d, hidden), ("vis_embed", "vis_mlp"), (0,), ("vis_mlp",), **common)
    self.fc2 = Dense("blf,fd->bld", (f, d), ("vis_mlp", "vis_embed"), (0,), ("vis_embed",), **common)

  def __call__(self, x_bld: jax.Array, length_axis: str) -> jax.Array:
    hidden = activate(self.activation, self.fc1(x_bld))
    return self.fc2(constrain(hidden, ("batch", length_axis, "vis_mlp")))


class EncoderBlock(nnx.Module):
  """Pre-LN residual block: x + attn(norm(x)), then x + mlp(norm(x)) (each branch times ls1 / ls2 with layer_scale)."""

  def __init__(self, shape: EncoderShape, *, rngs: nnx.Rngs):
    self.attn_norm = LayerNorm(shape.width, shape.dtype, shape.param_dtype, shape.norm_eps)
    self.attn = MultiHeadAttention(shape, rngs=rngs)
    self.mlp_norm = LayerNorm(shape.width, shape.dtype, shape.param_dtype, shape.norm_eps)
    self.mlp = MlpBlock(shape, rngs=rngs)
    self.layer_scale = shape.layer_scale
    if shape.layer_scale:
      self.ls1 = param(jnp.ones((shape.width,), jnp.dtype(shape.param_dtype)), ("vis_embed",))
      self.ls2 = param(jnp.ones((shape.width,), jnp.dtype(shape.param_dtype)), ("vis_embed",))

  def _scaled(self, y: jax.Array, scale: nnx.Param | None) -> jax.Array:
    return y if scale is None else (y.astype(jnp.float32) * scale[...].astype(jnp.float32)).astype(y.dtype)

  def __call__(self, x_bld: jax.Array, length_axis: str) -> jax.Array:
    y = self.attn_norm(x_bld)
    y = self._scaled(self.attn(y, y, length_axis), self.ls1 if self.layer_scale else None)
    x_bld = constrain(x_bld + y, ("batch", length_axis, "vis_embed"))
    y = self._scaled(self.mlp(self.mlp_norm(x_bld), length_axis), self.ls2 if self.layer_scale else None)
    return constrain(x_bld + y, ("batch", length_axis, "vis_embed"))


class Encoder(nnx.Module):
  """`depth` encoder blocks (unrolled: per-layer paths for freezing rules), then the final norm."""

  def __init__(self, shape: EncoderShape, *, rngs: nnx.Rngs):
    if shape.remat not in REMAT_POLICIES:
      raise ValueError(f"remat {shape.remat!r} is not one of {tuple(REMAT_POLICIES)}.")
    self.remat = shape.remat
    self.blocks = nnx.List([EncoderBlock(shape, rngs=rngs) for _ in range(shape.depth)])
    self.encoder_norm = LayerNorm(shape.width, shape.dtype, shape.param_dtype, shape.norm_eps)

  def hidden_states(self, x_bld: jax.Array, length_axis: str) -> list[jax.Array]:
    """[the input, then each block's output] (depth + 1 arrays, no final norm), as Hugging Face's hidden_states."""
    states = [x_bld]
    for block in self.blocks:
      if self.remat == "none":
        x_bld = block(x_bld, length_axis)
      else:
        x_bld = nnx.remat(_apply_block, policy=REMAT_POLICIES[self.remat],
                          static_argnums=(2,))(block, x_bld, length_axis)
      states.append(x_bld)
    return states

  def __call__(self, x_bld: jax.Array, length_axis: str) -> jax.Array:
    return self.encoder_norm(self.hidden_states(x_bld, length_axis)[-1])


def _apply_block(block: EncoderBlock, x_bld: jax.Array, length_axis: str) -> jax.Array:
  return block(x_bld, length_axis)
