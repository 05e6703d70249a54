"""The vision-language connector: the patch grid resampled to a fixed token count, then projected.

Resampling. A ViT returns its patch tokens as a row-major (g x g) grid (g = image_size / patch_size).
The LM always receives `s * s` visual tokens (576 = 24 x 24 by default, the paper's count), whatever
the encoder's grid: the grid is treated as a g x g image with `width` channels and resized to s x s.
  * "bilinear" (default): `jax.image.resize(..., "bilinear", antialias=True)`, half-pixel centres
    (torch's `interpolate(mode="bilinear", align_corners=False, antialias=True)`); upsampling
    interpolates neighbouring patches, downsampling averages them with a widened triangle filter.
  * "area": each output cell is the area-weighted mean of the input cells it overlaps (OpenCV's
    INTER_AREA; adaptive average pooling when s divides g); separable, two small matmuls.
With s == g both are the identity. Resampling runs in float32 before the projector, so the
projector's cost is that of s * s tokens.

Projector types (LLaVA's names): "linear" (one affine map, vision width -> d_model) and "mlp2x_gelu"
(affine -> GELU -> affine, both outputs d_model). Parameter paths under the MLLM's `proj/`:
  fc1/kernel (vision_width, d_model) axes ("vis_embed", "mlp") for mlp2x_gelu, ("vis_embed", "embed")
  for linear; fc1/bias; fc2/kernel (d_model, d_model) ("mlp", "embed"); fc2/bias ("embed",)
Kernels ~ N(0, 1/fan_in) (truncated), biases zero; stored in `param_dtype`, applied in `dtype`.
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

PROJECTOR_TYPES = ("linear", "mlp2x_gelu")
RESAMPLE_METHODS = ("bilinear", "area")


@dataclasses.dataclass(frozen=True)
class ProjectorConfig:
  """Shape and numerics of the projector from vision width to the LM's d_model."""

  kind: str
  in_dim: int
  out_dim: int
  dtype: str = "float32"
  param_dtype: str = "float32"

  def __post_init__(self):
    if self.kind not in PROJECTOR_TYPES:
      raise ValueError(f"Unknown projector {self.kind!r}; choose one of {PROJECTOR_TYPES}.")
    if self.in_dim <= 0 or self.out_dim <= 0:
      raise ValueError(f"Projector dims must be positive, got in_dim={self.in_dim}, out_dim={self.out_dim}.")


class Dense(nnx.Module):
  """An affine map `x @ kernel + bias` over the last axis, with logical axes on its parameters."""

  def __init__(self, in_dim: int, out_dim: int, axes: tuple[str, str], config: ProjectorConfig, *,
               rngs: nnx.Rngs):
    param_dtype = jnp.dtype(config.param_dtype)
    init = jax.nn.initializers.truncated_normal(stddev=1 / math.sqrt(in_dim))
    self.dtype = jnp.dtype(config.dtype)
    self.kernel = nnx.Param(init(rngs.params(), (in_dim, out_dim), param_dtype), out_sharding=axes,
                            eager_sharding=False)
    self.bias = nnx.Param(jnp.zeros((out_dim,), param_dtype), out_sharding=(axes[1],), eager_sharding=False)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.einsum("...i,io->...o", x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                   precision=attention_lib.matmul_precision(self.dtype))
    return y + self.bias[...].astype(self.dtype)


class Projector(nnx.Module):
  """`proj(x_bnw) -> (B, N, d_model)`: "linear" or "mlp2x_gelu" (GELU with the tanh approximation off)."""

  def __init__(self, config: ProjectorConfig, *, rngs: nnx.Rngs):
    self.config = config
    if config.kind == "linear":
      self.fc1 = Dense(config.in_dim, config.out_dim, ("vis_embed", "embed"), config, rngs=rngs)
    else:
      self.fc1 = Dense(config.in_dim, config.out_dim, ("vis_embed", "mlp"), config, rngs=rngs)
      self.fc2 = Dense(config.out_dim, config.out_dim, ("mlp", "embed"), config, rngs=rngs)

  def __call__(self, x_bnw: jax.Array) -> jax.Array:
    if self.config.kind == "linear":
      return constrain(self.fc1(x_bnw), ("batch", "length", "embed"))
    hidden = constrain(jax.nn.gelu(self.fc1(x_bnw), approximate=False), ("batch", "length", "mlp"))
    return constrain(self.fc2(hidden), ("batch", "length", "embed"))


def grid_side(num_tokens: int, what: str) -> int:
  """The side of a square token grid, or a ValueError naming `what` when `num_tokens` is not a square."""
  side = math.isqrt(num_tokens)
  if num_tokens <= 0 or side * side != num_tokens:
    below, above = max(side, 1) ** 2, (side + 1) ** 2
    raise ValueError(f"{what} must be a positive perfect square (a side x side grid), got {num_tokens}; "
                     f"e.g. {below} or {above}.")
  return side


def area_weights(source: int, target: int) -> np.ndarray:
  """(target, source) matrix: row i averages source cells over [i, i + 1) * source / target by overlap."""
  scale = source / target
  starts = np.arange(target)[:, None] * scale
  ends = starts + scale
  cells = np.arange(source)[None, :]
  overlap = np.clip(np.minimum(ends, cells + 1) - np.maximum(starts, cells), 0.0, None)
  return (overlap / scale).astype(np.float32)


def resample_tokens(tokens_bnw: jax.Array, num_tokens: int, method: str = "bilinear") -> jax.Array:
  """Patch tokens (B, g*g, W) in row-major grid order -> (B, s*s, W) with s*s = `num_tokens` (float32)."""
  if method not in RESAMPLE_METHODS:
    raise ValueError(f"Unknown resample method {method!r}; choose one of {RESAMPLE_METHODS}.")
  batch, count, width = tokens_bnw.shape
  source = grid_side(count, "The encoder's patch-token count")
  target = grid_side(num_tokens, "num_visual_tokens")
  grid = tokens_bnw.astype(jnp.float32).reshape(batch, source, source, width)
  if source != target:
    if method == "bilinear":
      grid = jax.image.resize(grid, (batch, target, target, width), "bilinear", antialias=True)
    else:
      weights = jnp.asarray(area_weights(source, target))
      grid = jnp.einsum("ih,jw,bhwc->bijc", weights, weights, grid, precision=jax.lax.Precision.HIGHEST)
  return grid.reshape(batch, target * target, width)
