"""The ViT: output contract per pool type, position embeddings, parameter axes, sharded == single device."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.models import sharding
from visual_priors.models.vision import ViT, ViTConfig
from visual_priors.models.vision.vit import posemb_sincos2d

CONFIG = ViTConfig(image_size=16, patch_size=4, width=16, depth=2, mlp_dim=32, num_heads=2,
                   pool_type="map", num_classes=8, dtype="float32")


def _images(batch: int = 2, size: int = 16, seed: int = 0) -> jax.Array:
  return jax.random.uniform(jax.random.key(seed), (batch, size, size, 3), jnp.float32, -1, 1)


@nnx.jit
def _forward(model: ViT, images: jax.Array):
  return model(images)


@pytest.mark.parametrize("pool_type,num_classes,pooled_dim", [
    ("map", 8, 8), ("gap", 8, 8), ("tok", 8, 8), ("map", 0, 16), ("gap", 0, 16), ("none", 0, None)])
def test_output_shapes_for_each_pool_type(pool_type, num_classes, pooled_dim):
  config = dataclasses.replace(CONFIG, pool_type=pool_type, num_classes=num_classes)
  pooled, tokens = _forward(ViT(config, rngs=nnx.Rngs(0)), _images(3))
  assert tokens.shape == (3, 16, 16)  # (16 / 4)^2 patches; tok's class token is not among them.
  if pooled_dim is None:
    assert pooled is None
  else:
    assert pooled.shape == (3, pooled_dim) and pooled.dtype == jnp.float32
    assert np.isfinite(np.asarray(pooled)).all()


def test_gap_pools_the_mean_of_the_returned_tokens_and_tok_pools_the_class_token():
  gap = ViT(dataclasses.replace(CONFIG, pool_type="gap", num_classes=0), rngs=nnx.Rngs(0))
  pooled, tokens = _forward(gap, _images())
  np.testing.assert_allclose(np.asarray(pooled), np.asarray(tokens).mean(axis=1), rtol=1e-5, atol=1e-6)
  tok = ViT(dataclasses.replace(CONFIG, pool_type="tok", num_classes=0), rngs=nnx.Rngs(0))
  pooled, tokens = _forward(tok, _images())
  assert not np.allclose(np.asarray(pooled)[:, None, :], np.asarray(tokens), atol=1e-3)


def test_patch_tokens_are_local_before_attention():
  # With zero attention and MLP outputs the encoder is per-token: changing one patch's pixels
  # changes that token only (raster order: patch (row 1, col 2) is token 1 * 4 + 2).
  model = ViT(dataclasses.replace(CONFIG, pool_type="none", num_classes=0), rngs=nnx.Rngs(0))
  for block in model.transformer.blocks:
    block.attn.out.kernel[...] = jnp.zeros_like(block.attn.out.kernel[...])
    block.mlp.fc2.kernel[...] = jnp.zeros_like(block.mlp.fc2.kernel[...])
  images = _images(1)
  changed = images.at[:, 4:8, 8:12, :].add(0.5)
  _, before = _forward(model, images)
  _, after = _forward(model, changed)
  moved = np.abs(np.asarray(after - before)).max(axis=-1)[0]
  assert moved[6] > 1e-3 and np.delete(moved, 6).max() < 1e-6


def test_head_zeroinit_and_learned_posemb_init():
  model = ViT(CONFIG, rngs=nnx.Rngs(0))
  assert not np.asarray(model.head.kernel[...]).any()
  pooled, _ = _forward(model, _images())
  assert not np.asarray(pooled).any()
  assert model.pos_embedding[...].shape == (1, 16, 16)
  assert 0.15 < float(jnp.std(model.pos_embedding[...])) < 0.35  # N(0, 1/width): std 0.25.
  with_head = ViT(dataclasses.replace(CONFIG, head_zeroinit=False), rngs=nnx.Rngs(0))
  assert np.asarray(with_head.head.kernel[...]).std() > 0


def test_sincos2d_posemb_formula_and_no_parameter():
  table = posemb_sincos2d(2, 3, 8)[0]  # (6, 8): quarter 2, omega = [1, 1/10000].
  omega = np.array([1.0, 1e-4])
  for row in range(2):
    for col in range(3):
      expected = np.concatenate([np.sin(col * omega), np.cos(col * omega),
                                 np.sin(row * omega), np.cos(row * omega)])
      np.testing.assert_allclose(table[row * 3 + col], expected, rtol=1e-6)
  model = ViT(dataclasses.replace(CONFIG, posemb="sincos2d"), rngs=nnx.Rngs(0))
  paths = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert "pos_embedding" not in paths
  assert _forward(model, _images())[1].shape == (2, 16, 16)


def test_patch_grid_drops_a_remainder_like_a_valid_convolution():
  config = dataclasses.replace(CONFIG, image_size=18, pool_type="gap")
  assert config.num_patches == 16
  pooled, tokens = _forward(ViT(config, rngs=nnx.Rngs(0)), _images(size=18))
  assert tokens.shape == (2, 16, 16) and pooled.shape == (2, 8)


def test_parameter_paths_carry_vision_logical_axes():
  model = ViT(dataclasses.replace(CONFIG, pool_type="tok"), rngs=nnx.Rngs(0))
  params = {"/".join(map(str, p)): v for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  axes = {path: v.get_metadata()["out_sharding"] for path, v in params.items()}
  assert axes["embedding/kernel"] == (None, None, None, "vis_embed")
  assert axes["pos_embedding"] == (None, "patch", "vis_embed")
  assert axes["cls"] == (None, None, "vis_embed")
  assert axes["transformer/blocks/1/attn/query/kernel"] == ("vis_embed", "vis_heads", "head_dim")
  assert axes["transformer/blocks/1/attn/out/kernel"] == ("vis_heads", "head_dim", "vis_embed")
  assert axes["transformer/blocks/0/mlp/fc1/kernel"] == ("vis_embed", "vis_mlp")
  assert axes["transformer/encoder_norm/scale"] == ("vis_embed",)
  for path, variable in params.items():
    assert len(axes[path]) == variable.ndim, path
    sharding.logical_to_spec(axes[path], sharding.DEFAULT_LOGICAL_AXIS_RULES)  # Every name has a rule.


def test_pool_none_with_head_projects_every_token():
  """PaliGemma's layout: no pooling, a head mapping each patch token to a new width."""
  config = dataclasses.replace(CONFIG, pool_type="none", num_classes=24, head_zeroinit=False)
  model = ViT(config, rngs=nnx.Rngs(0))
  pooled, tokens = _forward(model, _images())
  assert pooled is None and tokens.shape == (2, 16, 24) and config.token_width == 24
  plain = ViT(dataclasses.replace(config, num_classes=0), rngs=nnx.Rngs(0))
  _, raw = _forward(plain, _images())
  kernel, bias = model.head.kernel[...], model.head.bias[...]
  np.testing.assert_allclose(tokens, np.einsum("bnd,dc->bnc", raw, kernel) + bias, atol=1e-5)


def test_bad_configs_and_inputs_fail_clearly():
  with pytest.raises(ValueError, match="pool_type 'avg'"):
    dataclasses.replace(CONFIG, pool_type="avg")
  with pytest.raises(ValueError, match="feature_layer 3 is out of range"):
    dataclasses.replace(CONFIG, feature_layer=3)
  with pytest.raises(ValueError, match="norm_tokens=False"):
    dataclasses.replace(CONFIG, norm_tokens=False)
  with pytest.raises(ValueError, match="activation 'relu'"):
    dataclasses.replace(CONFIG, activation="relu")
  with pytest.raises(ValueError, match="not divisible by num_heads"):
    dataclasses.replace(CONFIG, num_heads=3)
  with pytest.raises(ValueError, match="sincos2d"):
    dataclasses.replace(CONFIG, width=18, num_heads=2, posemb="sincos2d")
  with pytest.raises(ValueError, match=r"expects images \(B, 16, 16, 3\)"):
    ViT(CONFIG, rngs=nnx.Rngs(0))(jnp.zeros((1, 32, 32, 3)))


def test_sharded_forward_on_8_devices_equals_single_device():
  config = dataclasses.replace(CONFIG, num_heads=4)
  model = ViT(config, rngs=nnx.Rngs(0))
  images = _images(8, seed=3)
  expected_pooled, expected_tokens = _forward(model, images)

  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  graphdef, state = nnx.split(model)
  state = jax.device_put(state, sharding.state_shardings(state, mesh))
  assert state["transformer"]["blocks"][0]["mlp"]["fc1"]["kernel"][...].sharding.spec == (
      jax.sharding.PartitionSpec("fsdp", "tensor"))

  @jax.jit
  def sharded_forward(state, images):
    with sharding.activation_sharding(mesh):
      return nnx.merge(graphdef, state)(images)

  pooled, tokens = sharded_forward(state, jax.device_put(images, sharding.batch_sharding(mesh)))
  assert len(tokens.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(pooled), np.asarray(expected_pooled), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(tokens), np.asarray(expected_tokens), rtol=1e-5, atol=1e-5)


def test_remat_changes_neither_outputs_nor_gradients():
  images = _images()

  def loss(model: ViT) -> jax.Array:
    pooled, tokens = model(images)
    return jnp.sum(pooled ** 2) + jnp.sum(tokens ** 2)

  results = []
  for remat in ("none", "full"):
    model = ViT(dataclasses.replace(CONFIG, remat=remat, head_zeroinit=False), rngs=nnx.Rngs(0))
    value, grads = nnx.jit(nnx.value_and_grad(loss))(model)
    results.append((value, grads))
  np.testing.assert_allclose(float(results[0][0]), float(results[1][0]), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
