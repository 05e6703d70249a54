"""Named vision encoders and their text towers: `get_encoder(name) -> ViTConfig`, `get_text_tower`,
`build_two_tower`, `register_encoder`, and (re-exported) the big_vision npz loader.

Registered image towers:
  name                  image  patch  width  depth  mlp    heads  pool  tokens  text tower (len)
  siglip-b16-224        224    16     768    12     3072   12     map   196     B (64)
  siglip-b16-256        256    16     768    12     3072   12     map   256     B (64)
  siglip-b16-384        384    16     768    12     3072   12     map   576     B (64)
  siglip-l16-256        256    16     1024   24     4096   16     map   256     L (64)
  siglip-l16-384        384    16     1024   24     4096   16     map   576     L (64)
  siglip-so400m14-224   224    14     1152   27     4304   16     map   256     So400m (16)
  siglip-so400m14-384   384    14     1152   27     4304   16     map   729     So400m (64)
  vit-ti16-224          224    16     192    12     768    3      none  196     -
  vit-tiny              32     4      64     2      128    4      map   64      64 wide, 2 deep (32)
  vit-nano              16     4      32     1      64     2      map   16      32 wide, 1 deep (16)
The SigLIP shapes are big_vision's (`vit.decode_variant` "B/16", "L/16", "So400m/14"; text
variants and lengths as its SigLIP demo): the image embedding is the MAP head output (no image
head, big_vision out_dim (None, width)), the text tower has a head to the same width, vocabulary
32000. The public English `.npz` checkpoints (gs://big_vision/siglip/webli_en_*.npz) load with
`load_big_vision_npz` into `build_two_tower(name)`, or their image tower into `ViT(get_encoder(name))`.
The CPU-sized vit-tiny / vit-nano compute in float32 (XLA:CPU runs bfloat16 matmuls slower);
their text towers take the data pipeline's vocabulary (`get_text_tower("vit-tiny", vocab_size=...)`).

The other towers the paper used, as their Hugging Face checkpoints are built (`hf.vit_config_from_hf`;
load the released weights with `hf.load_hf_vision(directory, get_encoder(name))`):
  name              class (example checkpoint)        image  patch  width  depth  feeds the projector  mean / std
  metaclip-b16-224  CLIPVisionModel                   224    16     768    12     hidden_states[-2]    CLIP's
                    (facebook/metaclip-b16-fullcc2.5b)
  dinov2-g14-224    Dinov2Model (facebook/dinov2-     224    14     1536   40     last, normed         ImageNet
                    giant: SwiGLU, layer scale; 518 px positions resampled to 16 x 16)
  mae-h14-224       ViTMAEModel (facebook/vit-mae-    224    14     1280   32     last, normed         ImageNet
                    huge)
  dinov2-nano       Dinov2Model (random-init, written 16     4      32     2      last, normed         ImageNet
                    by random_hf.py: the demo's)
"Feeds the projector" is the config's `feature_layer`: LLaVA's choice for CLIP (the penultimate
block, the class token dropped), the final normed patch tokens for the self-supervised towers.

Adding a tower (README.md, "Adding another tower"): write a ViTConfig and call
`register_encoder("my-vit", config, text=optional_text_config)` at import time of your module;
`get_encoder("my-vit")` then resolves it, and unknown names fail with the closest registered ones.
"""

from __future__ import annotations

import dataclasses

from flax import nnx

from visual_priors.models.vision.checkpoint import load_big_vision_npz
from visual_priors.models.vision.hf import vit_config_from_hf
from visual_priors.models.vision.text import TextConfig
from visual_priors.models.vision.two_tower import TwoTower
from visual_priors.models.vision.vit import ViTConfig
from visual_priors.names import lookup

__all__ = ["ENCODERS", "TEXT_TOWERS", "build_two_tower", "get_encoder", "get_text_tower",
           "load_big_vision_npz", "register_encoder"]

_SIGLIP_VOCAB = 32000


def _siglip(image_size: int, patch_size: int, width: int, depth: int, mlp_dim: int,
            num_heads: int) -> ViTConfig:
  return ViTConfig(image_size=image_size, patch_size=patch_size, width=width, depth=depth,
                   mlp_dim=mlp_dim, num_heads=num_heads, pool_type="map")


def _siglip_text(width: int, depth: int, mlp_dim: int, num_heads: int, max_len: int) -> TextConfig:
  return TextConfig(vocab_size=_SIGLIP_VOCAB, width=width, depth=depth, mlp_dim=mlp_dim,
                    num_heads=num_heads, max_len=max_len)


def _features(image_size: int, patch_size: int, width: int, depth: int, mlp_dim: int,
              num_heads: int) -> ViTConfig:
  return ViTConfig(image_size=image_size, patch_size=patch_size, width=width, depth=depth,
                   mlp_dim=mlp_dim, num_heads=num_heads, pool_type="none")


ENCODERS: dict[str, ViTConfig] = {
    "siglip-b16-224": _siglip(224, 16, 768, 12, 3072, 12),
    "siglip-b16-256": _siglip(256, 16, 768, 12, 3072, 12),
    "siglip-b16-384": _siglip(384, 16, 768, 12, 3072, 12),
    "siglip-l16-256": _siglip(256, 16, 1024, 24, 4096, 16),
    "siglip-l16-384": _siglip(384, 16, 1024, 24, 4096, 16),
    "siglip-so400m14-224": _siglip(224, 14, 1152, 27, 4304, 16),
    "siglip-so400m14-384": _siglip(384, 14, 1152, 27, 4304, 16),
    "vit-ti16-224": _features(224, 16, 192, 12, 768, 3),
    "metaclip-b16-224": vit_config_from_hf(
        {"model_type": "clip_vision_model", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
         "intermediate_size": 3072, "patch_size": 16, "image_size": 224, "hidden_act": "quick_gelu"},
        feature_layer=-2, dtype="bfloat16"),
    "dinov2-g14-224": vit_config_from_hf(
        {"model_type": "dinov2", "hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 24,
         "mlp_ratio": 4, "use_swiglu_ffn": True, "patch_size": 14, "image_size": 518},
        image_size=224, dtype="bfloat16"),
    "mae-h14-224": vit_config_from_hf(
        {"model_type": "vit_mae", "hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16,
         "intermediate_size": 5120, "patch_size": 14, "image_size": 224},
        dtype="bfloat16"),
    # CPU-sized: float32 compute (XLA:CPU runs bfloat16 matmuls slower than float32).
    "vit-tiny": ViTConfig(image_size=32, patch_size=4, width=64, depth=2, mlp_dim=128, num_heads=4,
                          pool_type="map", dtype="float32"),
    "vit-nano": ViTConfig(image_size=16, patch_size=4, width=32, depth=1, mlp_dim=64, num_heads=2,
                          pool_type="map", dtype="float32"),
    # DINOv2's layout at vit-nano's size: the demo's random-init Hugging Face tower (random_hf.DEMO_TOWER).
    "dinov2-nano": vit_config_from_hf(
        {"model_type": "dinov2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "mlp_ratio": 2, "patch_size": 4, "image_size": 16}),
}

_B_TEXT = _siglip_text(768, 12, 3072, 12, 64)
_L_TEXT = _siglip_text(1024, 24, 4096, 16, 64)
TEXT_TOWERS: dict[str, TextConfig] = {
    "siglip-b16-224": _B_TEXT,
    "siglip-b16-256": _B_TEXT,
    "siglip-b16-384": _B_TEXT,
    "siglip-l16-256": _L_TEXT,
    "siglip-l16-384": _L_TEXT,
    "siglip-so400m14-224": _siglip_text(1152, 27, 4304, 16, 16),
    "siglip-so400m14-384": _siglip_text(1152, 27, 4304, 16, 64),
    "vit-tiny": TextConfig(vocab_size=_SIGLIP_VOCAB, width=64, depth=2, mlp_dim=128, num_heads=4,
                           max_len=32, dtype="float32"),
    "vit-nano": TextConfig(vocab_size=_SIGLIP_VOCAB, width=32, depth=1, mlp_dim=64, num_heads=2,
                           max_len=16, dtype="float32"),
}


def get_encoder(name: str, **overrides) -> ViTConfig:
  """The named encoder config, with optional field overrides (e.g. dtype="float32", pool_type="none")."""
  config = lookup(ENCODERS, name, "vision encoder")
  return dataclasses.replace(config, **overrides) if overrides else config


def get_text_tower(name: str, **overrides) -> TextConfig:
  """The text tower trained with image encoder `name`, with optional field overrides (e.g. vocab_size)."""
  config = lookup(TEXT_TOWERS, name, "text tower")
  return dataclasses.replace(config, **overrides) if overrides else config


def build_two_tower(name: str, *, rngs: nnx.Rngs, **text_overrides) -> TwoTower:
  """SigLIP's pair for `name`: image embedding = MAP output, text head to the image width."""
  image = get_encoder(name)
  return TwoTower(image, get_text_tower(name, **text_overrides), (None, image.width), rngs=rngs)


def register_encoder(name: str, config: ViTConfig, *, text: TextConfig | None = None,
                     replace: bool = False) -> None:
  """Adds a named encoder (and optionally its text tower); redefining a name needs replace=True."""
  if not isinstance(config, ViTConfig):
    raise TypeError(f"register_encoder needs a ViTConfig, got {type(config).__name__}.")
  if text is not None and not isinstance(text, TextConfig):
    raise TypeError(f"register_encoder's text tower must be a TextConfig, got {type(text).__name__}.")
  changed = (ENCODERS.get(name, config) != config
             or (text is not None and TEXT_TOWERS.get(name, text) != text))
  if changed and not replace:
    raise ValueError(f"Encoder {name!r} is already registered with a different config; "
                     "pass replace=True to redefine it.")
  ENCODERS[name] = config
  if text is not None:
    TEXT_TOWERS[name] = text
