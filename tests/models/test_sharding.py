"""Sharding on the 8 emulated CPU devices: meshes, rules, and loss/gradient equivalence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from visual_priors.models import sharding
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.train.losses import next_token_loss

CONFIG = DecoderConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                       dtype="float32", attention_impl="xla")
MESHES = {"data8": {"data": 8}, "fsdp8": {"fsdp": 8}, "d2f2t2": {"data": 2, "fsdp": 2, "tensor": 2}}


def test_make_mesh_fills_the_rest_and_rejects_bad_shapes():
  mesh = sharding.make_mesh({"fsdp": -1, "tensor": 2})
  assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "tensor": 2}
  subset = sharding.make_mesh({"data": 2}, devices=jax.devices()[:2])
  assert dict(subset.shape) == {"data": 2, "fsdp": 1, "tensor": 1} and subset.devices.size == 2
  with pytest.raises(ValueError, match="needs 6 devices"):
    sharding.make_mesh({"data": 3, "tensor": 2})
  with pytest.raises(ValueError, match="At most one"):
    sharding.make_mesh({"data": -1, "fsdp": -1})
  with pytest.raises(ValueError, match="pipeline"):
    sharding.make_mesh({"pipeline": 2})
  with pytest.raises(ValueError, match="not divisible"):
    sharding.make_mesh({"data": 3, "fsdp": -1})


def test_logical_rules_use_each_mesh_axis_once_per_array():
  rules = sharding.DEFAULT_LOGICAL_AXIS_RULES
  assert sharding.logical_to_spec(("embed", "mlp"), rules) == P("fsdp", "tensor")
  assert sharding.logical_to_spec(("batch", "length", "embed"), rules) == P(("data", "fsdp"))
  assert sharding.logical_to_spec(("vocab", "embed"), rules) == P("tensor", "fsdp")
  with pytest.raises(ValueError, match="'experts' has no rule"):
    sharding.logical_to_spec(("experts",), rules)
  mesh = sharding.make_mesh({"fsdp": 8})
  assert sharding.logical_to_spec(("embed", "mlp"), sharding.DEFAULT_LOGICAL_AXIS_RULES) == P("fsdp", "tensor")
  assert sharding.logical_to_spec((None, "vocab"), sharding.DEFAULT_LOGICAL_AXIS_RULES) == P(None, "tensor")
  assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"))


def test_constrain_is_a_no_op_without_an_active_mesh():
  x = jnp.ones((8, 4, 64))
  assert "sharding_constraint" not in jax.jit(
      lambda x: sharding.constrain(x, ("batch", "length", "embed"))).lower(x).as_text()
  with sharding.activation_sharding(sharding.make_mesh({"data": 8})):
    text = jax.jit(lambda x: sharding.constrain(x, ("batch", "length", "embed"))).lower(x).as_text()
  assert "sharding_constraint" in text


def _batch() -> dict[str, jax.Array]:
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, CONFIG.vocab_size, size=(8, 32)).astype(np.int32)
  segments = np.ones((8, 32), np.int32)
  segments[:, 20:] = 2  # Two packed examples per row, positions restarting at the second.
  segments[::2, 28:] = 0  # Padding at the end of every other row.
  positions = np.where(segments == 2, np.arange(32) - 20, np.arange(32)).astype(np.int32)
  return {"tokens": tokens, "targets": np.roll(tokens, -1, axis=1), "segments": segments,
          "positions": positions, "weights": (segments > 0).astype(np.int32)}


def _loss_fn(model: Decoder, batch: dict[str, jax.Array]) -> jax.Array:
  logits = model(batch["tokens"], batch["positions"], batch["segments"])
  return next_token_loss(logits, batch["targets"], batch["weights"])[0]


def _loss_and_grads(mesh_shape: dict[str, int] | None):
  batch = _batch()
  if mesh_shape is None:
    model = Decoder(CONFIG, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    step = jax.jit(lambda state, batch: jax.value_and_grad(
        lambda s: _loss_fn(nnx.merge(graphdef, s), batch))(state))
    return step(state, batch), state
  mesh = sharding.make_mesh(mesh_shape)
  graphdef, state = nnx.split(Decoder(CONFIG, rngs=nnx.Rngs(0)))
  state_sharding = sharding.state_shardings(state, mesh)
  state = jax.device_put(state, state_sharding)
  batch_sharding = {key: sharding.batch_sharding(mesh) for key in batch}
  step = jax.jit(
      lambda state, batch: jax.value_and_grad(lambda s: _loss_fn(nnx.merge(graphdef, s), batch))(state),
      in_shardings=(state_sharding, batch_sharding),
      out_shardings=(None, state_sharding))
  with sharding.activation_sharding(mesh):
    return step(state, jax.device_put(batch, batch_sharding)), state


def test_meshes_agree_on_loss_and_gradients_and_shard_parameters_by_the_rules():
  (reference_loss, reference_grads), reference_state = _loss_and_grads(None)
  for name, mesh_shape in MESHES.items():
    (loss, grads), state = _loss_and_grads(mesh_shape)
    # Same parameters: initialisation under jit into shards reproduces the unsharded model.
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), state, reference_state)
    np.testing.assert_allclose(loss, reference_loss, rtol=1e-5, atol=1e-5, err_msg=name)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name),
                 grads, reference_grads)
    specs = {"/".join(map(str, path)): variable[...].sharding.spec
             for path, variable in nnx.to_flat_state(state)}
    fsdp = "fsdp" if mesh_shape.get("fsdp", 1) > 1 else None
    tensor = "tensor" if mesh_shape.get("tensor", 1) > 1 else None

    def expect(*axes):  # Mesh axes of size 1 still appear in the spec; compare the effective ones.
      return tuple(a if a in (fsdp, tensor) else None for a in axes)

    def effective(spec):
      dims = tuple(spec) + (None,) * 3
      return tuple(d if d in (fsdp, tensor) else None for d in dims[:3])

    assert effective(specs["embedder/embedding"]) == expect("tensor", "fsdp", None), name
    assert effective(specs["layers/1/attn/q_proj/kernel"]) == expect("fsdp", "tensor", None), name
    assert effective(specs["layers/1/attn/k_proj/kernel"]) == expect("fsdp", "tensor", None), name
    assert effective(specs["layers/0/attn/o_proj/kernel"]) == expect("tensor", None, "fsdp"), name
    assert effective(specs["layers/0/mlp/down/kernel"]) == expect("tensor", "fsdp", None), name
    assert effective(specs["lm_head/kernel"]) == expect("fsdp", "tensor", None), name
    shard_shape = state["layers"][0]["mlp"]["gate"]["kernel"][...].addressable_shards[0].data.shape
    assert shard_shape == (64 // mesh_shape.get("fsdp", 1), 128 // mesh_shape.get("tensor", 1)), name


@pytest.mark.parametrize("environ, launcher", [
    ({}, None),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2"}, "explicit"),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, "slurm"),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None),
    ({"TPU_WORKER_HOSTNAMES": "host-a,host-b"}, "cloud_tpu"),
    ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),
])
def test_distributed_environment_detection(environ, launcher):
  assert sharding.distributed_environment(environ) == launcher


def test_single_process_is_not_initialized():
  assert sharding.maybe_initialize_distributed({}) is False


def test_an_explicit_job_is_initialized_with_the_timeouts_of_the_environment(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  environ = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1",
             sharding.HEARTBEAT_TIMEOUT_ENV: "10", sharding.INIT_TIMEOUT_ENV: "60"}
  assert sharding.maybe_initialize_distributed(environ) is True
  assert calls == [{"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 1,
                    "heartbeat_timeout_seconds": 10, "initialization_timeout": 60}]
  assert jax.config.values["jax_cpu_collectives_implementation"] == "gloo"


def test_place_and_a_single_process_job_raise_as_usual():
  mesh = sharding.make_mesh({"fsdp": -1})
  host = np.arange(16.0).reshape(8, 2)
  placed = sharding.place(host, NamedSharding(mesh, P("fsdp")))
  assert placed.sharding.spec == P("fsdp") and np.array_equal(np.asarray(placed), host)
  with pytest.raises(ValueError, match="raised"), sharding.stop_job_on_error():  # not a multi-process job
    raise ValueError("raised")
