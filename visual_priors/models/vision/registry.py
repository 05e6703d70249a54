"""Named vision encoders: `get_encoder(name) -> ViTConfig`, `register_encoder`, and the npz loader.

Registered towers:
  name                  image  patch  width  depth  mlp    heads  pool  head  tokens
  siglip-b16-224        224    16     768    12     3072   12     map   768   196
  siglip-b16-256        256    16     768    12     3072   12     map   768   256
  siglip-b16-384        384    16     768    12     3072   12     map   768   576
  siglip-l16-256        256    16     1024   24     4096   16     map   1024  256
  siglip-l16-384        384    16     1024   24     4096   16     map   1024  576
  siglip-so400m14-224   224    14     1152   27     4304   16     map   1152  256
  siglip-so400m14-384   384    14     1152   27     4304   16     map   1152  729
  vit-ti16-224          224    16     192    12     768    3      none  -     196
  vit-tiny              32     4      64     2      128    4      map   64    64   (CPU, float32)
  vit-nano              16     4      32     1      64     2      map   32    16   (CPU, float32)
The SigLIP shapes are big_vision's (`vit.decode_variant` "B/16", "L/16", "So400m/14"); their
public `.npz` checkpoints load with `load_big_vision_npz`.

Shape-only entries for the other towers the paper used (pool "none": they serve as patch-token
feature extractors). Their architectures differ from this ViT in ways their weights depend on, so
they need their own module and loader before their checkpoints can be used; the configs here give
their sizes (FLOPs, memory, token counts) and a drop-in stand-in trained from scratch:
  metaclip-b16-224  CLIP ViT-B/16: class token, a LayerNorm before the encoder ("ln_pre"),
                    QuickGELU, fused qkv weights (OpenCLIP layout).
  dinov2-g14-224    DINOv2 ViT-g/14: width 1536, depth 40, 24 heads, SwiGLU MLP (hidden 4096),
                    LayerScale, class token (and register tokens in the "-reg" variants).
  mae-h14-224       MAE ViT-H/14: width 1280, depth 32, 16 heads, class token, fused qkv.

Adding a tower: a tower is anything that maps images (B, H, W, 3) in [-1, 1] to
`(pooled | None, patch tokens (B, N, width))` and is built from a frozen config by
`Tower(config, rngs=nnx.Rngs(seed))`; the MLLM only reads the tokens. For a ViT variant, write its
ViTConfig and call `register_encoder("my-vit", config)` (at import time of your module, so the name
resolves after import); look it up with `get_encoder("my-vit")`. A tower with a different
architecture needs its own nnx module honouring that contract, a config type with the same fields
the MLLM reads (image_size, patch_size, width, num_patches), and a loader for its checkpoint format
mapping every array onto the module's parameter paths with shape checks (as `checkpoint.py` does
for big_vision).
"""

from __future__ import annotations

import dataclasses

from visual_priors.models.vision.checkpoint import load_big_vision_npz
from visual_priors.models.vision.vit import ViTConfig
from visual_priors.names import lookup

__all__ = ["ENCODERS", "get_encoder", "register_encoder", "load_big_vision_npz"]


def _siglip(image_size: int, patch_size: int, width: int, depth: int, mlp_dim: int,
            num_heads: int) -> ViTConfig:
  return ViTConfig(image_size=image_size, patch_size=patch_size, width=width, depth=depth,
                   mlp_dim=mlp_dim, num_heads=num_heads, pool_type="map", num_classes=width)


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
    "metaclip-b16-224": _features(224, 16, 768, 12, 3072, 12),
    "dinov2-g14-224": _features(224, 14, 1536, 40, 4096, 24),
    "mae-h14-224": _features(224, 14, 1280, 32, 5120, 16),
    # CPU-sized: float32 compute (XLA:CPU runs bfloat16 matmuls slower than float32).
    "vit-tiny": ViTConfig(image_size=32, patch_size=4, width=64, depth=2, mlp_dim=128, num_heads=4,
                          pool_type="map", num_classes=64, dtype="float32"),
    "vit-nano": ViTConfig(image_size=16, patch_size=4, width=32, depth=1, mlp_dim=64, num_heads=2,
                          pool_type="map", num_classes=32, dtype="float32"),
}


def get_encoder(name: str, **overrides) -> ViTConfig:
  """The named encoder config, with optional field overrides (e.g. dtype="float32", pool_type="none")."""
  config = lookup(ENCODERS, name, "vision encoder")
  return dataclasses.replace(config, **overrides) if overrides else config


def register_encoder(name: str, config: ViTConfig, *, replace: bool = False) -> None:
  """Adds a named encoder; re-registering a name needs replace=True (a typo must not shadow one)."""
  if not isinstance(config, ViTConfig):
    raise TypeError(f"register_encoder needs a ViTConfig, got {type(config).__name__}.")
  if name in ENCODERS and not replace and ENCODERS[name] != config:
    raise ValueError(f"Encoder {name!r} is already registered with a different config; "
                     "pass replace=True to redefine it.")
  ENCODERS[name] = config
