"""The multimodal LM: a ViT (`img`), a projector (`proj`) and the decoder LM (`llm`), visual tokens spliced in.

`logits = mllm(images_bhwc, tokens_bt, positions_bt, segment_ids_bt, image_mask_bt)`:
  1. the ViT encodes each row's image (float32 in [-1, 1]) into its patch tokens (B, g*g, width);
  2. the grid is resampled to `num_visual_tokens` = s*s tokens (`projector.resample_tokens`);
  3. the projector maps them to the LM's d_model;
  4. the LM embeds `tokens_bt` and, at the positions where `image_mask_bt` is set, replaces the
     embedding by the row's visual tokens in order (the k-th set position of a row gets visual token
     k); the token ids there are ignored (the chat template writes 0);
  5. the LM decodes the spliced embeddings to float32 logits (B, T, V).
A row holds at most one image: its mask marks either no position or exactly `num_visual_tokens`
positions (the chat template's expansion of `<image>`). Rows without an image (text-only examples)
have an all-zero mask; their image input is ignored. `images_bhwc=None` skips the encoder (text-only
batches, e.g. the blind stage).

Parameter paths: `img/...` (the ViT's own paths), `proj/fc1/...`, `proj/fc2/...`, `llm/...` (the
decoder's paths), so the regexes `img/.*`, `proj/.*`, `llm/.*` select the three parts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from visual_priors.models import projector as projector_lib
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.models.sharding import constrain
from visual_priors.models.vision import ViT, ViTConfig

DEFAULT_NUM_VISUAL_TOKENS = 576  # 24 x 24, the paper's fixed count (docs/paper.md, section 4)


@dataclasses.dataclass(frozen=True)
class MLLMConfig:
  """The three parts and how they connect."""

  vision: ViTConfig
  llm: DecoderConfig
  projector: str = "mlp2x_gelu"
  num_visual_tokens: int = DEFAULT_NUM_VISUAL_TOKENS
  resample: str = "bilinear"

  def __post_init__(self):
    projector_lib.grid_side(self.num_visual_tokens, "num_visual_tokens")
    if self.resample not in projector_lib.RESAMPLE_METHODS:
      raise ValueError(f"Unknown resample method {self.resample!r}; choose one of "
                       f"{projector_lib.RESAMPLE_METHODS}.")
    self.projector_config()  # Validates the projector type.

  def projector_config(self) -> projector_lib.ProjectorConfig:
    return projector_lib.ProjectorConfig(kind=self.projector, in_dim=self.vision.token_width, out_dim=self.llm.d_model,
                                         dtype=self.llm.dtype, param_dtype=self.llm.param_dtype)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, fields: dict[str, Any]) -> MLLMConfig:
    """Inverse of `to_dict` (e.g. from a stage manifest)."""
    return cls(**{**fields, "vision": ViTConfig(**fields["vision"]), "llm": DecoderConfig(**fields["llm"])})


def feature_extractor(vision: ViTConfig) -> ViTConfig:
  """A tower config as the MLLM uses it: patch tokens only ("map"/"gap" pooling and the pooled head dropped).

  pool "tok" keeps its class token, which the patch tokens attend to (as does `class_token`); a tower
  that is already pool "none" keeps its per-token head (PaliGemma's projection of the tokens).
  """
  if vision.pool_type == "none":
    return vision
  if vision.pool_type == "tok":
    return dataclasses.replace(vision, num_classes=0)
  return dataclasses.replace(vision, pool_type="none", num_classes=0)


def splice_visual_tokens(x_btd: jax.Array, visual_bsd: jax.Array, image_mask_bt: jax.Array) -> jax.Array:
  """`x_btd` with the k-th masked position of each row replaced by `visual_bsd[row, k]`."""
  mask_bt = image_mask_bt.astype(bool)
  slot_bt = jnp.clip(jnp.cumsum(mask_bt, axis=1) - 1, 0, visual_bsd.shape[1] - 1)
  gathered_btd = jnp.take_along_axis(visual_bsd, slot_bt[..., None], axis=1)
  return jnp.where(mask_bt[..., None], gathered_btd.astype(x_btd.dtype), x_btd)


class MLLM(nnx.Module):
  """Vision encoder + projector + decoder LM; see the module docstring for the forward pass."""

  def __init__(self, config: MLLMConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.img = ViT(config.vision, rngs=rngs)
    self.proj = projector_lib.Projector(config.projector_config(), rngs=rngs)
    self.llm = Decoder(config.llm, rngs=rngs)

  def visual_tokens(self, images_bhwc: jax.Array) -> jax.Array:
    """(B, H, W, 3) images -> (B, num_visual_tokens, d_model) projected visual tokens."""
    _, patches_bnw = self.img(images_bhwc)
    resampled = projector_lib.resample_tokens(patches_bnw, self.config.num_visual_tokens, self.config.resample)
    return constrain(self.proj(constrain(resampled, ("batch", "length", None))), ("batch", "length", "embed"))

  def __call__(self, images_bhwc: jax.Array | None, tokens_bt: jax.Array, positions_bt: jax.Array | None = None,
               segment_ids_bt: jax.Array | None = None, image_mask_bt: jax.Array | None = None) -> jax.Array:
    return self.llm.logits(self.hidden(images_bhwc, tokens_bt, positions_bt, segment_ids_bt, image_mask_bt))

  def hidden(self, images_bhwc: jax.Array | None, tokens_bt: jax.Array, positions_bt: jax.Array | None = None,
             segment_ids_bt: jax.Array | None = None, image_mask_bt: jax.Array | None = None) -> jax.Array:
    """The LM's last hidden states (B, T, d_model) before the final norm; `llm.logits` of them is `__call__`."""
    x_btd = self.llm.embed(tokens_bt)
    if images_bhwc is not None:
      if image_mask_bt is None:
        raise ValueError("MLLM got images but no image_mask_bt; pass the batch's decoder_image_mask.")
      x_btd = splice_visual_tokens(x_btd, self.visual_tokens(images_bhwc), image_mask_bt)
    return self.llm.hidden(x_btd, positions_bt, segment_ids_bt)
