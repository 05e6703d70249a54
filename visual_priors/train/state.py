"""The train state as one pytree, its shardings on a mesh from logical axes, and its sharded creation.

Parameters live as plain nested dicts (`nnx.to_pure_dict` of the model state), split by the trainable
regex into `params` (trained, with optimizer state) and `frozen` (everything else: frozen parameters and
any non-parameter variables, with no optimizer state). `nnx.merge(graphdef, params | frozen)` rebuilds the
module inside the jitted step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
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
  # create(variables=None): builds the state directly into its shardings, taking the model variables given
  # by '/'-path (e.g. upstream weights, consumed) instead of initialising them; compiled on each call
  # (`create.compiled(variables=None)`: the compiled initialiser, not run).
  create: Callable[..., TrainState]


def _initial_state(model_factory: ModelFactory, tx: optax.GradientTransformation, trainable: str,
                   frozen: str, seed: int, given: Mapping[str, jax.Array]) -> TrainState:
  """The state of a freshly built model whose variables at `given`'s paths are replaced by those values.

  Under jit the initialisers of replaced variables are dead code, so XLA drops them; the optimizer state
  is initialised from the parameters as replaced.
  """
  model = model_factory(nnx.Rngs(seed))
  _, params, others = nnx.split(model, nnx.Param, ...)

  def pick(key_path: tuple[Any, ...], leaf: jax.Array) -> jax.Array:
    return given.get(partition.path_string(key_path), leaf)

  params, others = (jax.tree_util.tree_map_with_path(pick, nnx.to_pure_dict(tree)) for tree in (params, others))
  train_params, frozen_params = partition.split_trainable(params, trainable, frozen)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=train_params,
      frozen=partition.merge_trees(frozen_params, others),
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

  def initial(given: Mapping[str, jax.Array]) -> TrainState:
    return _initial_state(model_factory, tx, trainable, frozen, seed, given)

  abstract = jax.eval_shape(initial, {})
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
                   create=_compiled_once(jax.jit(initial, out_shardings=shardings, donate_argnums=0), abstract,
                                         mesh))


def variables(state: TrainState) -> dict[str, Any]:
  """Every model variable of a (possibly abstract) train state by '/'-joined path, trainable and frozen."""
  return {**partition.flatten_paths(state.params), **partition.flatten_paths(state.frozen)}


def _placed(given: Mapping[str, Any], abstract: TrainState) -> dict[str, jax.Array]:
  """`given` checked against the state's variables and put in their dtypes and shardings."""
  targets = variables(abstract)
  unknown = sorted(set(given) - set(targets))
  if unknown:
    raise ValueError(f"No such variable(s) in the train state: {unknown[:5]}.")
  placed = {}
  for path, value in given.items():
    target = targets[path]
    if tuple(value.shape) != tuple(target.shape):
      raise ValueError(f"{path}: got shape {tuple(value.shape)}, the model has {tuple(target.shape)}.")
    if not isinstance(value, jax.Array):
      value = np.asarray(value, target.dtype)
    elif value.dtype != target.dtype:
      value = value.astype(target.dtype)
    placed[path] = sharding.place(value, target.sharding)  # the run's mesh may span several processes
  return placed


# Random values the initialiser may draw and still be built unoptimised on CPU (see `_compiled_once`).
FAST_COMPILE_MAX_RANDOM = 16_000_000


def init_compiler_options(platform: str, random_elements: int) -> dict[str, Any]:
  """XLA options for the one-off state initialiser: on CPU, no backend optimisation while the model is small.

  XLA:CPU spends seconds optimising threefry RNG code (a 2-layer model's init compiles in ~4 s instead of
  ~1 s), but unoptimised threefry runs ~8x slower, which dominates beyond a few tens of millions of values:
  the 340m LM's init on 8 emulated devices of a 2-core CPU took 16 s to compile and 41 s to run unoptimised,
  21 s and 5 s optimised. Accelerators always get the default options.
  """
  if platform == "cpu" and random_elements <= FAST_COMPILE_MAX_RANDOM:
    return {"xla_backend_optimization_level": 0}
  return {}


def _compiled_once(create: Callable[[Mapping[str, jax.Array]], TrainState], abstract: TrainState,
                   mesh: Mesh) -> Callable[..., TrainState]:
  """The initialiser, compiled when called (for the paths it is given; `init_compiler_options`).

  Its outputs are the state's shardings, so each device computes only its own shards of the random weights
  and of the optimizer state: no device or host ever holds a full replica.
  """
  platform = mesh.devices.flat[0].platform
  variable_sizes = {path: int(np.prod(leaf.shape)) for path, leaf in variables(abstract).items()}

  def compile_for(placed: Mapping[str, jax.Array]) -> Any:
    random = sum(size for path, size in variable_sizes.items() if path not in placed)
    return create.lower(placed).compile(compiler_options=init_compiler_options(platform, random))

  def compile_and_run(given: Mapping[str, Any] | None = None) -> TrainState:
    placed = _placed(given or {}, abstract)
    return compile_for(placed)(placed)

  # The compiled initialiser without running it (its memory analysis, for checks and tests).
  compile_and_run.compiled = lambda given=None: compile_for(_placed(given or {}, abstract))
  return compile_and_run


def parameter_count(state: TrainState) -> tuple[int, int]:
  """(trainable, frozen) element counts; `frozen` includes non-parameter variables."""
  def count(tree: partition.Tree) -> int:
    return sum(int(leaf.size) for leaf in jax.tree.leaves(tree))

  return count(state.params), count(state.frozen)
