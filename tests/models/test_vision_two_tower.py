"""TwoTower and the sigmoid loss: a hand-computed 3x3 case, parameter layout, and a few training steps."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from visual_priors.models import sharding
from visual_priors.models.vision import TextConfig, TwoTower, ViTConfig, contrastive_loss, sigmoid_loss

IMG = ViTConfig(image_size=16, patch_size=4, width=16, depth=1, mlp_dim=32, num_heads=2, dtype="float32")
TXT = TextConfig(vocab_size=30, width=16, depth=1, mlp_dim=32, num_heads=2, max_len=5, dtype="float32")


def test_sigmoid_loss_matches_a_hand_computation_on_3x3():
  zimg = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
  ztxt = np.array([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
  # Dot products z_i . z_j, by hand:
  dots = [[0.8, 0.0, -1.0],
          [0.6, 1.0, 0.0],
          [0.96, 0.8, -0.6]]
  t, b = math.log(2.0), -1.0  # temperature 2
  total = 0.0
  for i in range(3):
    for j in range(3):
      logit = 2.0 * dots[i][j] - 1.0
      label = 1.0 if i == j else -1.0
      total += math.log(1 + math.exp(-label * logit))  # -log sigmoid(label * logit)
  expected = total / 3
  loss = sigmoid_loss(jnp.asarray(zimg), jnp.asarray(ztxt), jnp.array([t]), jnp.array([b]))
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_sigmoid_loss_rejects_mismatched_embeddings():
  with pytest.raises(ValueError, match="two \\(B, E\\) embeddings"):
    sigmoid_loss(jnp.zeros((3, 4)), jnp.zeros((2, 4)), jnp.zeros(1), jnp.zeros(1))


def test_parameter_layout_and_initial_temperature_and_bias():
  model = TwoTower(IMG, TXT, 8, rngs=nnx.Rngs(0))
  paths = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert {"t", "b", "img/head/kernel", "txt/head/kernel", "img/map_head/probe",
          "txt/embed/embedding", "txt/pos_embedding", "img/pos_embedding"} <= paths
  assert {path.split("/")[0] for path in paths} == {"img", "txt", "t", "b"}
  assert model.img.head.kernel[...].shape == (16, 8) and model.txt.head.kernel[...].shape == (16, 8)
  assert model.t[...].shape == (1,) and float(model.t[...][0]) == pytest.approx(math.log(10.0))
  assert float(model.b[...][0]) == -10.0


def test_embeddings_are_unit_norm_and_either_tower_may_be_skipped():
  model = TwoTower(IMG, TXT, 8, rngs=nnx.Rngs(0))
  images = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3), minval=-1, maxval=1)
  tokens = jax.random.randint(jax.random.key(2), (4, 5), 0, 30)
  zimg, ztxt = model(images, tokens)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(zimg), axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(ztxt), axis=-1), 1.0, rtol=1e-5)
  assert model(None, tokens)[0] is None and model(images, None)[1] is None


def test_head_sizes_per_tower_as_big_vision_out_dim():
  model = TwoTower(IMG, TXT, (None, 16), rngs=nnx.Rngs(0))
  assert not hasattr(model.img, "head") and model.txt.head.kernel[...].shape == (16, 16)
  images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1, maxval=1)
  zimg, ztxt = model(images, jnp.zeros((2, 5), jnp.int32))
  assert zimg.shape == ztxt.shape == (2, 16)
  with pytest.raises(ValueError, match="image 16, text 8"):
    TwoTower(IMG, TXT, (None, 8), rngs=nnx.Rngs(0))


def test_pool_none_image_tower_is_refused():
  with pytest.raises(ValueError, match="needs a pooled embedding"):
    TwoTower(ViTConfig(**{**IMG.__dict__, "pool_type": "none"}), TXT, 8, rngs=nnx.Rngs(0))


def test_a_tiny_two_tower_learns_random_pairs():
  model = TwoTower(IMG, TXT, 8, rngs=nnx.Rngs(0))
  batch = {"images": jax.random.uniform(jax.random.key(1), (8, 16, 16, 3), minval=-1, maxval=1),
           "text_tokens": jax.random.randint(jax.random.key(2), (8, 5), 0, 30)}
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, batch):
    def loss_fn(model):
      loss_sum, count = contrastive_loss(model, batch, jax.random.key(0))
      return loss_sum / count
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(train_step(model, optimizer, batch)) for _ in range(30)]
  assert losses[0] > 5.0  # exp(t) = 10, b = -10: positives start near -log sigmoid(0) = 0.69 .. 10.
  assert losses[-1] < 0.5 * losses[0], losses
  zimg, ztxt = model(batch["images"], batch["text_tokens"])
  matched = np.argmax(np.asarray(zimg @ ztxt.T), axis=1) == np.arange(8)
  assert matched.mean() >= 0.5


def test_sharded_contrastive_loss_on_8_devices_equals_single_device():
  model = TwoTower(IMG, TXT, 8, rngs=nnx.Rngs(0))
  batch = {"images": jax.random.uniform(jax.random.key(1), (8, 16, 16, 3), minval=-1, maxval=1),
           "text_tokens": jax.random.randint(jax.random.key(2), (8, 5), 0, 30)}
  graphdef, state = nnx.split(model)

  def loss(state, batch):
    return contrastive_loss(nnx.merge(graphdef, state), batch, jax.random.key(0))[0]

  expected = jax.jit(loss)(state, batch)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})

  @jax.jit
  def sharded_loss(state, batch):
    with sharding.activation_sharding(mesh):
      return loss(state, batch)

  state = jax.device_put(state, sharding.state_shardings(state, mesh))
  assert state["txt"]["embed"]["embedding"][...].sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
  batch = jax.device_put(batch, sharding.batch_sharding(mesh))
  np.testing.assert_allclose(float(sharded_loss(state, batch)), float(expected), rtol=1e-5)
