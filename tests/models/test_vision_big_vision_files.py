"""Files written by big_vision's own code (tests/fixtures/big_vision) load and reproduce its outputs."""

from __future__ import annotations

import dataclasses
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.models.mllm import feature_extractor
from visual_priors.models.vision import TextConfig, TwoTower, ViT, ViTConfig, load_big_vision_npz
from visual_priors.models.vision.checkpoint import load_vit_npz

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures" / "big_vision"
TOLERANCE = 1e-5
IMG = ViTConfig(image_size=16, patch_size=4, width=32, depth=2, mlp_dim=64, num_heads=2, pool_type="map",
                dtype="float32")
TXT = TextConfig(vocab_size=64, width=32, depth=2, mlp_dim=64, num_heads=2, max_len=8, dtype="float32")
VITS = {
    "vit_gap_head_sincos": dict(pool_type="gap", num_classes=10, posemb="sincos2d"),
    "vit_tok": dict(pool_type="tok"),
    "vit_map_head": dict(pool_type="map", num_classes=12),
    "paligemma_none_head_scan": dict(pool_type="none", num_classes=48),
}


def _io(name: str) -> dict[str, np.ndarray]:
  with np.load(FIXTURES / f"{name}.io.npz") as data:
    return dict(data)


def _max_diff(a, b) -> float:
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  assert a.shape == b.shape
  return float(np.max(np.abs(a - b)))


@pytest.mark.parametrize("name,embed_dim", [("siglip_map_prefixed", (None, 32)), ("siglip_map_scan", 24)])
def test_two_towers_match_big_vision(name, embed_dim):
  model = TwoTower(IMG, TXT, embed_dim, rngs=nnx.Rngs(0))
  load_big_vision_npz(FIXTURES / f"{name}.npz", model)
  io = _io(name)
  zimg, ztxt = model(jnp.asarray(io["images"]), jnp.asarray(io["text"]))
  assert _max_diff(zimg, io["zimg"]) <= TOLERANCE
  assert _max_diff(ztxt, io["ztxt"]) <= TOLERANCE
  # The image tower alone, from the same two-tower file (its `img/` keys; txt, t, b not its concern).
  vit = load_vit_npz(FIXTURES / f"{name}.npz", model.img.config)
  pooled, _ = vit(jnp.asarray(io["images"]))
  assert _max_diff(pooled / np.linalg.norm(pooled, axis=1, keepdims=True), io["zimg"]) <= TOLERANCE


@pytest.mark.parametrize("name", sorted(VITS))
def test_vits_match_big_vision(name):
  config = dataclasses.replace(IMG, **VITS[name])
  io = _io(name)
  vit = load_vit_npz(FIXTURES / f"{name}.npz", config)
  pooled, tokens = vit(jnp.asarray(io["images"]))
  if config.pool_type == "none":  # the head maps every token: big_vision's logits are the tokens
    assert pooled is None
    assert _max_diff(tokens, io["logits"]) <= TOLERANCE
  else:
    assert _max_diff(pooled, io["logits"]) <= TOLERANCE
    assert _max_diff(tokens, io["encoded"]) <= TOLERANCE
  # As the MLLM and the alignment evaluation read it: patch tokens of a feature extractor, heads skipped
  # (PaliGemma's per-token head is kept: it is part of the token path).
  extractor = feature_extractor(config)
  _, features = load_vit_npz(FIXTURES / f"{name}.npz", extractor)(jnp.asarray(io["images"]))
  expected = io["logits"] if config.pool_type == "none" else io["encoded"]
  assert _max_diff(features, expected) <= TOLERANCE
  if config.pool_type == "none":
    plain = load_vit_npz(FIXTURES / f"{name}.npz", dataclasses.replace(config, num_classes=0))
    assert _max_diff(plain(jnp.asarray(io["images"]))[1], io["encoded"]) <= TOLERANCE


def test_wrong_model_names_the_keys_and_the_likeliest_cause():
  path = FIXTURES / "siglip_map_prefixed.npz"
  cases = [
      (dataclasses.replace(IMG, depth=3), r"(?s)missing img/Transformer/encoderblock_2/.*\n.*Likeliest cause: the file "
                                          r"has 2 encoder blocks under img/, the model 3"),
      (dataclasses.replace(IMG, image_size=32), r"Likeliest cause: pos_embedding is \(1, 16, 32\) in the file"),
      (dataclasses.replace(IMG, pool_type="gap"), r"Likeliest cause: the file has a MAP pooling head"),
      (dataclasses.replace(IMG, num_classes=7), r"Likeliest cause: the model has a head \(num_classes\)"),
      (dataclasses.replace(IMG, mlp_dim=48), r"Likeliest cause: \d+ arrays have other shapes"),
  ]
  for config, pattern in cases:
    with pytest.raises(ValueError, match=pattern):
      load_big_vision_npz(path, ViT(config, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError) as error:
    load_big_vision_npz(path, ViT(dataclasses.replace(IMG, depth=5), rngs=nnx.Rngs(0)))
  assert "... and" in str(error.value) and str(error.value).count("\n  missing") <= 8


def test_a_hugging_face_file_is_named_as_such(tmp_path):
  np.savez(tmp_path / "hf.npz", **{"embeddings.patch_embedding.weight": np.zeros((32, 3, 4, 4), np.float32)})
  with pytest.raises(ValueError, match="Hugging Face"):
    load_big_vision_npz(tmp_path / "hf.npz", ViT(IMG, rngs=nnx.Rngs(0)))
