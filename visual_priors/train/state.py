"""The train state as one pytree, its shardings on a mesh from logical axes, and its sharded creation.

Parameters live as plain nested dicts (`nnx.to_pure_dict` of the model state), split by the trainable
regex into `params` (trained, with optimizer state) and `frozen` (everything else: frozen parameters and
any non-parameter variables, with no optimizer state). `nnx.merge(graphdef, params | frozen)` rebuilds the
module inside the jitted step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from visual_priors.models import sharding
from visual_priors.train import partition

ModelFactory = Callable[[nnx.Rngs], nnx.Module]


class TrainState(NamedTuple):
  step: jax.Array  # int32 scalar: optimizer steps taken
  params: partition.Tree  # trainable parameters
  frozen: partition.Tree  # frozen parameters and non-parameter variables
  opt_state: optax.OptState  # covers `params` only
  rng: jax.Array  # uint32 key data; step s uses fold_in(rng, s)


@dataclasses.dataclass(frozen=True)
class StateSpec:
  """What the trainer needs to create, shard, jit and restore a TrainState."""

  graphdef: nnx.GraphDef
  abstract: TrainState  # ShapeDtypeStructs carrying their shardings
  shardings: TrainState  # a NamedSharding per leaf
  create: Callable[[], TrainState]  # builds the state directly into its shardings (compiled on each call)


def _initial_state(model_factory: ModelFactory, tx: optax.GradientTransformation, trainable: str,
                   frozen: str, seed: int) -> TrainState:
  model = model_factory(nnx.Rngs(seed))
  _, params, others = nnx.split(model, nnx.Param, ...)
  train_params, frozen_params = partition.split_trainable(nnx.to_pure_dict(params), trainable, frozen)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=train_params,
      frozen=partition.merge_trees(frozen_params, nnx.to_pure_dict(others)),
      opt_state=tx.init(train_params),
      rng=jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1)),
  )


def _optimizer_state_shardings(opt_state: Any, param_shardings: partition.Tree, params: partition.Tree,
                               replicated: NamedSharding) -> Any:
  """Each optimizer leaf whose path ends in a parameter's path (and has its shape) shares its sharding."""
  by_path = partition.flatten_paths(param_shardings)
  shapes = {path: leaf.shape for path, leaf in partition.flatten_paths(params).items()}

  def sharding_of(key_path: tuple[Any, ...], leaf: jax.ShapeDtypeStruct) -> NamedSharding:
    parts = partition.path_string(key_path).split("/")
    for start in range(len(parts)):
      suffix = "/".join(parts[start:])
      if suffix in by_path and shapes[suffix] == leaf.shape:
        return by_path[suffix]
    return replicated

  return jax.tree_util.tree_map_with_path(sharding_of, opt_state)


def build_state_spec(model_factory: ModelFactory, tx: optax.GradientTransformation, mesh: Mesh,
                     rules: sharding.LogicalRules, *, trainable: str = ".*", frozen: str = "",
                     seed: int = 42) -> StateSpec:
  """Traces the model abstractly (no memory), derives every leaf's sharding and a jitted creator."""
  abstract_model = nnx.eval_shape(lambda: model_factory(nnx.Rngs(seed)))
  graphdef, abstract_vars = nnx.split(abstract_model)
  variable_shardings = nnx.to_pure_dict(sharding.state_shardings(abstract_vars, mesh, rules))

  def initial() -> TrainState:
    return _initial_state(model_factory, tx, trainable, frozen, seed)

  abstract = jax.eval_shape(initial)
  replicated = NamedSharding(mesh, PartitionSpec())
  leaf_shardings = partition.flatten_paths(variable_shardings)

  def param_sharding(key_path: tuple[Any, ...], _: Any) -> NamedSharding:
    return leaf_shardings[partition.path_string(key_path)]

  params = jax.tree_util.tree_map_with_path(param_sharding, abstract.params)
  shardings = TrainState(
      step=replicated,
      params=params,
      frozen=jax.tree_util.tree_map_with_path(param_sharding, abstract.frozen),
      opt_state=_optimizer_state_shardings(abstract.opt_state, params, abstract.params, replicated),
      rng=replicated,
  )
  abstract = jax.tree.map(
      lambda leaf, leaf_sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf_sharding),
      abstract, shardings)
  return StateSpec(graphdef=graphdef, abstract=abstract, shardings=shardings,
                   create=_compiled_once(jax.jit(initial, out_shardings=shardings), mesh))


def _compiled_once(create: Callable[[], TrainState], mesh: Mesh) -> Callable[[], TrainState]:
  """The initialiser, compiled when called.

  It runs once per run, so on CPU it is built without backend optimisation: XLA:CPU otherwise spends
  seconds optimising threefry RNG code (a 2-layer model's init compiles in ~4 s instead of ~1 s).
  """
  platform = mesh.devices.flat[0].platform
  options = {"xla_backend_optimization_level": 0} if platform == "cpu" else {}

  def compile_and_run() -> TrainState:
    return create.lower().compile(compiler_options=options)()

  return compile_and_run


def parameter_count(state: TrainState) -> tuple[int, int]:
  """(trainable, frozen) element counts; `frozen` includes non-parameter variables."""
  def count(tree: partition.Tree) -> int:
    return sum(int(leaf.size) for leaf in jax.tree.leaves(tree))

  return count(state.params), count(state.frozen)
