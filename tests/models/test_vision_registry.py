"""The encoder registry: named shapes, loud unknown names, registering a tower, parameter counts."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from visual_priors.models.vision import ViT, ViTConfig, hf, registry
from visual_priors.names import UnknownNameError


def _count_params(config: ViTConfig) -> int:
  abstract = nnx.eval_shape(lambda: ViT(config, rngs=nnx.Rngs(0)))
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def _hand_count(width: int, depth: int, mlp: int, patch: int, tokens: int) -> int:
  attention = 4 * (width * width + width)
  block = attention + 2 * (width * mlp) + mlp + width + 2 * 2 * width
  map_head = width + attention + 2 * width + 2 * (width * mlp) + mlp + width
  stem = patch * patch * 3 * width + width + tokens * width
  return stem + depth * block + 2 * width + map_head


@pytest.mark.parametrize("name,tokens,expected", [
    ("siglip-b16-224", 196, _hand_count(768, 12, 3072, 16, 196)),
    ("siglip-so400m14-384", 729, _hand_count(1152, 27, 4304, 14, 729)),
])
def test_siglip_shapes_token_counts_and_parameter_counts(name, tokens, expected):
  config = registry.get_encoder(name)
  assert config.num_patches == tokens and config.num_classes == 0  # SigLIP: no image head.
  count = _count_params(config)
  assert count == expected
  # The published sizes of the image towers: B/16 ~92.9M ("86M" without the MAP head), So400m ~428M.
  assert 92e6 < count < 94e6 if name == "siglip-b16-224" else 420e6 < count < 435e6


def test_siglip_two_tower_pairs_the_text_tower_and_embeds_at_the_image_width():
  model = nnx.eval_shape(lambda: registry.build_two_tower("siglip-so400m14-224", rngs=nnx.Rngs(0)))
  assert not hasattr(model.img, "head")
  assert model.txt.head.kernel.shape == (1152, 1152)
  assert model.txt.pos_embedding.shape == (1, 16, 1152)
  assert model.txt.embed.embedding.shape == (32000, 1152)
  tiny_text = registry.get_text_tower("vit-tiny", vocab_size=500)
  assert tiny_text.vocab_size == 500 and tiny_text.width == registry.get_encoder("vit-tiny").width
  with pytest.raises(UnknownNameError, match="text tower"):
    registry.get_text_tower("metaclip-b16-224")


@pytest.mark.parametrize("name,pooled_dim,tokens", [("vit-tiny", 64, 64), ("vit-nano", 32, 16)])
def test_cpu_encoders_run(name, pooled_dim, tokens):
  config = registry.get_encoder(name)
  pooled, patch_tokens = ViT(config, rngs=nnx.Rngs(0))(
      np.zeros((2, config.image_size, config.image_size, 3), np.float32))
  assert pooled.shape == (2, pooled_dim) and patch_tokens.shape == (2, tokens, config.width)


def test_feature_towers_are_registered_without_a_pooled_output():
  config = registry.get_encoder("vit-ti16-224")
  assert config.pool_type == "none" and config.num_classes == 0


def test_paper_towers_are_their_hugging_face_architectures():
  """MetaCLIP (CLIP), DINOv2-g (SwiGLU, layer scale), MAE-H: sizes, feature layer and normalisation."""
  clip = registry.get_encoder("metaclip-b16-224")
  assert (clip.width, clip.depth, clip.patch_size, clip.image_size, clip.feature_layer) == (768, 12, 16, 224, -2)
  assert clip.class_token and clip.pre_norm and not clip.patch_bias and clip.activation == "quick_gelu"
  assert clip.pixel_mean == hf.CLIP_MEAN
  dino = registry.get_encoder("dinov2-g14-224")
  assert (dino.width, dino.depth, dino.num_heads, dino.mlp_dim, dino.activation) == (1536, 40, 24, 4096, "swiglu")
  assert dino.layer_scale and dino.num_patches == 256 and dino.pixel_std == hf.IMAGENET_STD
  mae = registry.get_encoder("mae-h14-224")
  assert (mae.width, mae.depth, mae.mlp_dim, mae.norm_eps, mae.feature_layer) == (1280, 32, 5120, 1e-12, None)


def test_unknown_names_suggest_close_ones_and_overrides_apply():
  with pytest.raises(UnknownNameError, match="siglip-b16-224"):
    registry.get_encoder("siglip-b16-244")
  config = registry.get_encoder("siglip-b16-224", pool_type="none", num_classes=0, dtype="float32")
  assert config.pool_type == "none" and config.width == 768
  assert registry.get_encoder("siglip-b16-224").pool_type == "map"


def test_register_encoder_by_name(monkeypatch):
  monkeypatch.setattr(registry, "ENCODERS", dict(registry.ENCODERS))
  mine = dataclasses.replace(registry.get_encoder("vit-nano"), depth=3)
  registry.register_encoder("my-vit", mine)
  assert registry.get_encoder("my-vit") == mine
  registry.register_encoder("my-vit", mine)  # The same config again is harmless.
  with pytest.raises(ValueError, match="replace=True"):
    registry.register_encoder("my-vit", dataclasses.replace(mine, depth=4))
  registry.register_encoder("my-vit", dataclasses.replace(mine, depth=4), replace=True)
  assert registry.get_encoder("my-vit").depth == 4
  with pytest.raises(TypeError, match="ViTConfig"):
    registry.register_encoder("bad", {"width": 8})


def test_register_encoder_with_its_text_tower(monkeypatch):
  monkeypatch.setattr(registry, "ENCODERS", dict(registry.ENCODERS))
  monkeypatch.setattr(registry, "TEXT_TOWERS", dict(registry.TEXT_TOWERS))
  text = registry.get_text_tower("vit-nano", vocab_size=50)
  registry.register_encoder("my-pair", registry.get_encoder("vit-nano"), text=text)
  model = registry.build_two_tower("my-pair", rngs=nnx.Rngs(0))
  assert model.txt.embed.embedding[...].shape == (50, 32)
  with pytest.raises(ValueError, match="replace=True"):
    registry.register_encoder("my-pair", registry.get_encoder("vit-nano"),
                              text=dataclasses.replace(text, vocab_size=60))
