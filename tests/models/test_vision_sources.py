"""Tests for visual_priors.models.vision.sources: "hf:DIR" / "bv:FILE.npz" specs, their checks, hashes and towers."""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest

from visual_priors.models.vision import ViTConfig, get_encoder, hf, random_hf, sources

BIG_VISION = pathlib.Path(__file__).parents[1] / "fixtures" / "big_vision"


def test_parse_source_forms_and_errors(tmp_path):
  assert sources.parse_source("", "f") is None
  source = sources.parse_source(f"hf:{tmp_path}", "f")
  assert (source.kind, source.path, str(source)) == ("hf", tmp_path, f"hf:{tmp_path}")
  assert sources.parse_source("bv:~/w.npz", "f").path == pathlib.Path("~/w.npz").expanduser()
  assert sources.parse_source("w.npz", "f", plain_npz=True).kind == "bv"
  for text, message in (("w.npz", r"f 'w.npz' must be 'hf:DIR'"), ("hf:", "must be"), ("bv:w.pt", r"\.npz file"),
                        ("xx:dir", "must be")):
    with pytest.raises(ValueError, match=message):
      sources.parse_source(text, "f")


def test_problems_hashes_and_towers_of_a_hugging_face_directory(tmp_path):
  directory = random_hf.write_random_dinov2(tmp_path / "a", seed=1)
  source = sources.parse_source(f"hf:{directory}", "f")
  assert source.problem() is None
  digest = sources.content_sha256(source)
  copy = sources.parse_source(f"hf:{shutil.copytree(directory, tmp_path / 'b')}", "f")
  assert sources.content_sha256(copy) == digest  # content, not location
  (copy.path / "preprocessor_config.json").write_text('{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}')
  assert sources.content_sha256(copy) != digest  # the pixel normalisation is part of the weights' meaning
  config = sources.tower_config(copy, get_encoder("dinov2-nano"))
  assert config.pixel_mean == (0.5, 0.5, 0.5) and config.class_token and config.layer_scale
  parameters = sources.tower_parameters(source, sources.tower_config(source, get_encoder("dinov2-nano")), "img/")
  assert "img/cls" in parameters and "img/transformer/blocks/1/ls2" in parameters
  (copy.path / "model.safetensors").unlink()
  assert "holds no model.safetensors" in copy.problem()
  assert "holds no config.json" in sources.parse_source(f"hf:{tmp_path / 'none'}", "f").problem()


def test_with_hf_weights_keeps_the_encoders_use_and_refuses_another_architecture(tmp_path):
  directory = random_hf.write_random_dinov2(tmp_path / "a")
  registered = get_encoder("dinov2-nano", dtype="bfloat16", feature_layer=-2, image_size=32)
  config = hf.with_hf_weights(registered, directory)
  assert (config.dtype, config.feature_layer, config.image_size) == ("bfloat16", -2, 32)
  assert hf.with_hf_weights(get_encoder("dinov2-nano", pool_type="none"), directory).pool_type == "none"
  with pytest.raises(ValueError, match="depth: checkpoint 2, encoder 1; class_token: checkpoint True"):
    hf.with_hf_weights(get_encoder("vit-nano"), directory)


def test_a_big_vision_source_loads_its_image_tower():
  config = ViTConfig(image_size=16, patch_size=4, width=32, depth=2, mlp_dim=64, num_heads=2, pool_type="map",
                     dtype="float32")
  source = sources.parse_source(f"bv:{BIG_VISION / 'siglip_map_scan.npz'}", "f")
  assert sources.tower_config(source, config) == config
  assert len(sources.content_sha256(source)) == 64 and source.hashed_files() == [source.path]
  tower = sources.load_tower(source, config)
  pooled, tokens = tower(np.zeros((1, 16, 16, 3), np.float32))
  assert pooled.shape == (1, 32) and tokens.shape == (1, 16, 32)
