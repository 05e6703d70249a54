"""Tests for visual_priors.train.state: sharded creation (with given variables), shardings from the rules, no
moments for frozen."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from visual_priors.models import scales, sharding
from visual_priors.models.decoder import Decoder
from visual_priors.train import optimizer, partition, state as state_lib

CONFIG = scales.get_scale("nano", dtype="float32", vocab_size=64)
FROZEN = r"embedder/.*|layers/0/.*"


def _spec(mesh_shape, frozen=""):
  tx, _ = optimizer.make_optimizer(optimizer.AdamWSettings(warmup_steps=1), 10)
  mesh = sharding.make_mesh(mesh_shape)
  return state_lib.build_state_spec(lambda rngs: Decoder(CONFIG, rngs=rngs), tx, mesh,
                                    sharding.DEFAULT_LOGICAL_AXIS_RULES, frozen=frozen, seed=42)


def test_parameters_and_moments_are_sharded_as_the_rules_say():
  spec = _spec({"data": 2, "fsdp": 2, "tensor": 2})
  state = spec.create()
  gate = state.params["layers"][1]["mlp"]["gate"]["kernel"]
  assert gate.sharding.spec == P("fsdp", "tensor")
  assert gate.addressable_shards[0].data.shape == (CONFIG.d_model // 2, CONFIG.d_ff // 2)
  assert state.params["embedder"]["embedding"].sharding.spec == P("tensor", "fsdp")
  moments = partition.flatten_paths(state.opt_state)
  mu_gate = next(v for k, v in moments.items() if k.endswith("mu/layers/1/mlp/gate/kernel"))
  assert mu_gate.sharding.spec == P("fsdp", "tensor")
  assert state.step.sharding.spec == P() and int(state.step) == 0


def test_creation_matches_an_unsharded_model_with_the_same_seed():
  state = _spec({"fsdp": 8}).create()
  reference = nnx.to_pure_dict(nnx.state(Decoder(CONFIG, rngs=nnx.Rngs(42)), nnx.Param))
  created = partition.merge_trees(state.params, state.frozen)
  for path, value in partition.flatten_paths(reference).items():
    np.testing.assert_allclose(np.asarray(partition.flatten_paths(created)[path]), np.asarray(value),
                               rtol=1e-6, err_msg=path)


def test_frozen_parameters_get_no_optimizer_state():
  spec = _spec({"fsdp": 8}, frozen=FROZEN)
  frozen_paths = set(partition.flatten_paths(spec.abstract.frozen))
  assert "embedder/embedding" in frozen_paths and "layers/0/mlp/up/kernel" in frozen_paths
  opt_paths = list(partition.flatten_paths(spec.abstract.opt_state))
  assert not [p for p in opt_paths if "embedder" in p or "/layers/0/" in p]
  trainable, frozen = state_lib.parameter_count(spec.abstract)
  assert trainable + frozen == scales.count_params(CONFIG) and frozen > 0
  # Adam keeps two float moments per trainable parameter (plus integer step counts), none for frozen ones.
  moment_sizes = sum(leaf.size for leaf in jax.tree.leaves(spec.abstract.opt_state) if leaf.dtype == "float32")
  assert moment_sizes == 2 * trainable


def test_creation_takes_given_variables_in_place_of_their_initialisation():
  spec = _spec({"fsdp": 8}, frozen=FROZEN)
  random = jax.device_get(_spec({"fsdp": 8}, frozen=FROZEN).create())
  up = np.full((CONFIG.d_model, CONFIG.d_ff), 0.5, np.float32)  # a host array, placed into its sharding
  embedding = jax.numpy.ones((CONFIG.vocab_size, CONFIG.d_model), jax.numpy.bfloat16)  # cast to the model's dtype
  state = spec.create({"layers/1/mlp/up/kernel": up, "embedder/embedding": embedding})
  np.testing.assert_array_equal(np.asarray(state.params["layers"][1]["mlp"]["up"]["kernel"]), up)
  assert state.params["layers"][1]["mlp"]["up"]["kernel"].sharding.spec == P("fsdp", "tensor")
  given_embedding = state.frozen["embedder"]["embedding"]
  assert given_embedding.dtype == np.float32 and np.all(np.asarray(given_embedding) == 1)
  # Variables not given keep the seed's initialisation; the optimizer starts from zero moments.
  np.testing.assert_array_equal(np.asarray(state.params["layers"][1]["mlp"]["gate"]["kernel"]),
                                random.params["layers"][1]["mlp"]["gate"]["kernel"])
  assert all(not np.asarray(leaf).any() for leaf in jax.tree.leaves(state.opt_state))


def test_creation_refuses_given_variables_the_model_does_not_have():
  spec = _spec({"fsdp": 8})
  with pytest.raises(ValueError, match="No such variable.*layers/9/mlp/up/kernel"):
    spec.create({"layers/9/mlp/up/kernel": np.zeros((4, 4), np.float32)})
  with pytest.raises(ValueError, match=r"layers/1/mlp/up/kernel: got shape \(4, 4\), the model has"):
    spec.create({"layers/1/mlp/up/kernel": np.zeros((4, 4), np.float32)})


def test_the_initialiser_draws_only_each_devices_shards():
  """No device materialises a full replica: each computes its own shards of the weights and moments."""
  wide = scales.get_scale("nano", dtype="float32", vocab_size=4096, d_model=256, d_ff=2048)
  tx, _ = optimizer.make_optimizer(optimizer.AdamWSettings(warmup_steps=1), 10)
  spec = state_lib.build_state_spec(lambda rngs: Decoder(wide, rngs=rngs), tx, sharding.make_mesh({"fsdp": 8}),
                                    sharding.DEFAULT_LOGICAL_AXIS_RULES)
  leaves = jax.tree.leaves(spec.abstract)
  full = sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)
  shards = sum(int(np.prod(leaf.sharding.shard_shape(leaf.shape))) * leaf.dtype.itemsize for leaf in leaves)
  memory = spec.create.compiled().memory_analysis()
  assert memory.output_size_in_bytes == pytest.approx(shards, rel=0.01) and shards < full / 7
  assert memory.temp_size_in_bytes < shards  # scratch for its own shards' random bits, far from a replica (8x)


def test_cpu_initialisers_skip_optimisation_only_while_small():
  assert state_lib.init_compiler_options("cpu", 1_000_000) == {"xla_backend_optimization_level": 0}
  assert state_lib.init_compiler_options("cpu", 400_000_000) == {}
  assert state_lib.init_compiler_options("gpu", 1_000) == {}
