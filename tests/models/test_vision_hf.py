"""Hugging Face vision checkpoints (save_pretrained of random-init models) against transformers' own forward."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from visual_priors.models.vision import hf  # pylint: disable=wrong-import-position

TOLERANCE = 1e-4
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=16, patch_size=4)


def _save(model, directory) -> str:
  """Every parameter perturbed (zero biases and unit layer scales would test nothing), then save_pretrained."""
  generator = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for parameter in model.parameters():
      parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
  model.save_pretrained(directory)
  return str(directory)


MODELS = {
    "SiglipVisionModel": lambda: transformers.SiglipVisionModel(
        transformers.SiglipVisionConfig(**TINY, intermediate_size=64)),
    "SiglipModel": lambda: transformers.SiglipModel(transformers.SiglipConfig(
        vision_config={**TINY, "intermediate_size": 64},
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=50, bos_token_id=1, eos_token_id=2, pad_token_id=0))),
    "CLIPVisionModel": lambda: transformers.CLIPVisionModel(
        transformers.CLIPVisionConfig(**TINY, intermediate_size=64, hidden_act="quick_gelu")),
    # ViT-g's SwiGLU MLP; a 24 px checkpoint (6 x 6 positions) used at 16 px: positions resampled.
    "Dinov2Model-swiglu": lambda: transformers.Dinov2Model(transformers.Dinov2Config(
        **{**TINY, "image_size": 24}, mlp_ratio=2, use_swiglu_ffn=True)),
    "Dinov2Model": lambda: transformers.Dinov2Model(transformers.Dinov2Config(**TINY, mlp_ratio=2)),
    "ViTMAEModel": lambda: transformers.ViTMAEModel(
        transformers.ViTMAEConfig(**TINY, intermediate_size=64, mask_ratio=0.0)),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  root = tmp_path_factory.mktemp("hf")
  return {name: _save(build(), root / name) for name, build in MODELS.items()}


def _reference(name: str, directory: str, pixels: np.ndarray):
  model = transformers.AutoModel.from_pretrained(directory).eval()
  tensor = torch.tensor(pixels).permute(0, 3, 1, 2)
  kwargs = {"output_hidden_states": True}
  if name == "ViTMAEModel":  # no masking, patches in order
    kwargs["noise"] = torch.arange(tensor.shape[-1] // 4 * tensor.shape[-2] // 4)[None].repeat(len(tensor), 1).float()
  with torch.no_grad():
    tower = model.vision_model if name == "SiglipModel" else model
    return tower(pixel_values=tensor, **kwargs)


def _images(config) -> tuple[np.ndarray, np.ndarray]:
  """(images in [-1, 1] for the ViT, the same normalised as transformers' processor does)."""
  unit = np.random.default_rng(1).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
  pixels = (unit - np.asarray(config.pixel_mean, np.float32)) / np.asarray(config.pixel_std, np.float32)
  return unit * 2 - 1, pixels


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tower_matches_transformers(checkpoints, name):
  config = hf.vit_config_from_hf(checkpoints[name], image_size=16)
  vit = hf.load_hf_vision(checkpoints[name], config)
  images, pixels = _images(config)
  reference = _reference(name, checkpoints[name], pixels)
  pooled, tokens = vit(jnp.asarray(images))
  skip = 1 if config.class_token else 0
  expected_tokens = reference.last_hidden_state.numpy()[:, skip:]
  expected_pooled = getattr(reference, "pooler_output", None)
  expected_pooled = (reference.last_hidden_state[:, 0] if expected_pooled is None else expected_pooled).numpy()
  assert np.max(np.abs(np.asarray(tokens) - expected_tokens)) <= TOLERANCE
  assert np.max(np.abs(np.asarray(pooled) - expected_pooled)) <= TOLERANCE
  # Every hidden state (embeddings, each block) and a chosen feature layer, as LLaVA reads CLIP's (-2).
  states = vit.hidden_states(jnp.asarray(images))
  assert len(states) == len(reference.hidden_states) == config.depth + 1
  for ours, theirs in zip(states, reference.hidden_states):
    assert np.max(np.abs(np.asarray(ours) - theirs.numpy())) <= TOLERANCE
  penultimate = hf.load_hf_vision(checkpoints[name], dataclasses.replace(config, feature_layer=-2))
  _, tokens = penultimate(jnp.asarray(images))
  assert np.max(np.abs(np.asarray(tokens) - reference.hidden_states[-2].numpy()[:, skip:])) <= TOLERANCE


def test_configs_name_each_family_variant(checkpoints):
  clip = hf.vit_config_from_hf(checkpoints["CLIPVisionModel"])
  assert (clip.class_token, clip.pre_norm, clip.norm_tokens, clip.patch_bias, clip.activation, clip.norm_eps) == (
      True, True, False, False, "quick_gelu", 1e-5)
  assert clip.pixel_mean == hf.CLIP_MEAN
  dino = hf.vit_config_from_hf(checkpoints["Dinov2Model-swiglu"])
  assert (dino.layer_scale, dino.activation, dino.mlp_dim, dino.image_size) == (True, "swiglu", 48, 24)
  siglip = hf.vit_config_from_hf(checkpoints["SiglipModel"])
  assert siglip.pool_type == "map" and not siglip.normalizes_pixels
  assert hf.vit_config_from_hf(checkpoints["ViTMAEModel"]).norm_eps == 1e-12


def test_bicubic_resampling_is_torch_s():
  table = np.random.default_rng(0).normal(size=(1, 1 + 37 * 37, 8)).astype(np.float32)
  ours = hf.resample_positions(table, 16, class_rows=1)
  grid = torch.tensor(table[:, 1:]).reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
  theirs = torch.nn.functional.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False)
  np.testing.assert_allclose(ours[:, 1:], theirs.permute(0, 2, 3, 1).reshape(1, 256, 8).numpy(), atol=1e-5)
  np.testing.assert_array_equal(ours[:, :1], table[:, :1])


def test_mismatches_fail_with_names(checkpoints, tmp_path):
  config = hf.vit_config_from_hf(checkpoints["CLIPVisionModel"])
  with pytest.raises(ValueError, match="depth: checkpoint 2, config 3"):
    hf.load_hf_vision(checkpoints["CLIPVisionModel"], dataclasses.replace(config, depth=3))
  with pytest.raises(KeyError, match="Did you mean"):
    hf.family_of({"model_type": "dinov3"})
  with pytest.raises(FileNotFoundError, match="config.json"):
    hf.load_hf_vision(tmp_path)
