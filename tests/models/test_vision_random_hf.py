"""Tests for visual_priors.models.vision.random_hf: a random DINOv2 in Hugging Face format, written without torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visual_priors.models.vision import get_encoder, hf, random_hf


def test_the_files_are_deterministic_in_the_seed(tmp_path):
  a = random_hf.write_random_dinov2(tmp_path / "a", seed=0)
  b = random_hf.write_random_dinov2(tmp_path / "b", seed=0)
  c = random_hf.write_random_dinov2(tmp_path / "c", seed=1)
  for name in ("config.json", "model.safetensors"):
    assert (a / name).read_bytes() == (b / name).read_bytes()
  assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
  assert json.loads((a / "config.json").read_text())["architectures"] == ["Dinov2Model"]
  assert hf.vit_config_from_hf(a) == get_encoder("dinov2-nano")  # the registered demo tower's shape


def test_transformers_loads_it_and_computes_what_the_framework_computes(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  directory = random_hf.write_random_dinov2(tmp_path / "t", seed=3)
  model = transformers.Dinov2Model.from_pretrained(directory).eval()
  config = hf.with_hf_weights(get_encoder("dinov2-nano"), directory)
  vit = hf.load_hf_vision(directory, config)
  images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  pooled, tokens = vit(images)
  pixels = ((images + 1) / 2 - np.array(config.pixel_mean)) / np.array(config.pixel_std)
  with torch.no_grad():
    out = model(pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2), dtype=torch.float32))
  np.testing.assert_allclose(np.asarray(pooled), out.pooler_output.numpy(), atol=1e-5)
  np.testing.assert_allclose(np.asarray(tokens), out.last_hidden_state[:, 1:].numpy(), atol=1e-5)
