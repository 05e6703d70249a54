"""The pure train and eval steps: loss functions, gradient accumulation by `lax.scan`, jit with shardings.

A loss function maps `(model, batch, rng)` to `(loss_sum, tokens)`, float32 scalars summed (not averaged)
over the batch, so micro-batch sums add up to exactly the full batch's mean loss and gradient. `assemble` is
the one place a model, loss and optimizer become a sharded state spec with its jitted steps (trainer, benches,
compile checks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from visual_priors.models import sharding
from visual_priors.train import losses, optimizer, partition
from visual_priors.train import state as state_lib
from visual_priors.train.state import TrainState

Batch = Mapping[str, jax.Array]
LossFn = Callable[[nnx.Module, Batch, jax.Array], tuple[jax.Array, jax.Array]]
Metrics = dict[str, jax.Array]

# A directory: each process appends, per global batch it feeds, a digest of each of its rows to
# `<dir>/process_<i>-of-<n>.jsonl` (tests/experiment/test_multihost.py checks that hosts read disjoint slices).
TRACE_BATCHES_ENV = "VISUAL_PRIORS_TRACE_BATCHES"

# seqio's decoder feature names (the data contract); packed batches carry all five.
LM_FEATURES = ("decoder_input_tokens", "decoder_target_tokens", "decoder_segment_ids",
               "decoder_positions", "decoder_loss_weights")
# Unpacked full-length rows (one causal sequence per row) need only these.
LM_UNPACKED_FEATURES = ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")


def lm_loss(model: nnx.Module, batch: Batch, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Next-token cross-entropy summed over weighted target tokens, and the weight sum."""
  del rng  # the decoder is deterministic
  logits_btv = model(batch["decoder_input_tokens"], positions_bt=batch.get("decoder_positions"),
                     segment_ids_bt=batch.get("decoder_segment_ids"))
  _, aux = losses.next_token_loss(logits_btv, batch["decoder_target_tokens"], batch["decoder_loss_weights"])
  return aux["loss_sum"], aux["tokens"]


def _merged_loss(graphdef: nnx.GraphDef, loss_fn: LossFn, mesh: Mesh, rules: sharding.LogicalRules):
  def loss_sum_and_tokens(params, frozen, batch, rng):
    model = nnx.merge(graphdef, partition.merge_trees(params, frozen))
    with sharding.activation_sharding(mesh, rules):
      return loss_fn(model, batch, rng)

  return loss_sum_and_tokens


def split_micro_batches(batch: Batch, accum_steps: int, mesh: Mesh) -> Batch:
  """(B, ...) -> (accum_steps, B / accum_steps, ...), micro-batch j holding rows j, j + A, j + 2A, ...

  Strided rows keep every micro-batch spread evenly over the data-parallel devices (each device's
  contiguous block of rows contributes to every micro-batch), so no rows move between devices.
  """
  micro_sharding = NamedSharding(mesh, PartitionSpec(None, ("data", "fsdp")))

  def split(x: jax.Array) -> jax.Array:
    rows = x.shape[0]
    x = x.reshape((rows // accum_steps, accum_steps) + x.shape[1:]).swapaxes(0, 1)
    return jax.lax.with_sharding_constraint(x, micro_sharding)

  return jax.tree.map(split, batch)


def make_train_step(graphdef: nnx.GraphDef, loss_fn: LossFn, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, *, grad_accum_steps: int, mesh: Mesh,
                    rules: sharding.LogicalRules) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """`(state, batch) -> (state, metrics)`: accumulate gradients over micro-batches, then one AdamW update.

  Metrics (device scalars): loss (token-weighted mean), grad_norm (before clipping), learning_rate
  (the one this update used) and tokens (loss-weighted tokens in the batch).
  """
  grad_fn = jax.value_and_grad(_merged_loss(graphdef, loss_fn, mesh, rules), has_aux=True)

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    step_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def accumulate(carry, inputs):
      grads_sum, loss_sum, tokens = carry
      index, micro_batch = inputs
      (micro_loss, micro_tokens), grads = grad_fn(
          state.params, state.frozen, micro_batch, jax.random.fold_in(step_rng, index))
      return (jax.tree.map(jnp.add, grads_sum, grads), loss_sum + micro_loss, tokens + micro_tokens), None

    initial = (jax.tree.map(jnp.zeros_like, state.params), jnp.float32(0), jnp.float32(0))
    micro_batches = split_micro_batches(batch, grad_accum_steps, mesh)
    (grads, loss_sum, tokens), _ = jax.lax.scan(
        accumulate, initial, (jnp.arange(grad_accum_steps), micro_batches))
    denominator = jnp.maximum(tokens, 1.0)
    grads = jax.tree.map(lambda g: g / denominator, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state._replace(
        step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state)
    metrics = {
        "loss": loss_sum / denominator,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
        "tokens": tokens,
    }
    return new_state, metrics

  return train_step


def make_eval_step(graphdef: nnx.GraphDef, loss_fn: LossFn, *, mesh: Mesh, rules: sharding.LogicalRules
                   ) -> Callable[[partition.Tree, partition.Tree, Batch], tuple[jax.Array, jax.Array]]:
  """`(params, frozen, batch) -> (loss_sum, tokens)`, with a fixed RNG."""
  loss_sum_and_tokens = _merged_loss(graphdef, loss_fn, mesh, rules)

  def eval_step(params, frozen, batch):
    return loss_sum_and_tokens(params, frozen, batch, jax.random.key(0))

  return eval_step


def batch_shardings(mesh: Mesh, features: Sequence[str]) -> dict[str, NamedSharding]:
  return {name: sharding.batch_sharding(mesh) for name in features}


def jit_train_step(train_step: Callable, state_shardings: TrainState, mesh: Mesh, features: Sequence[str]):
  """The train step under jit: explicit in/out shardings, the incoming state donated."""
  replicated = NamedSharding(mesh, PartitionSpec())
  return jax.jit(
      train_step,
      in_shardings=(state_shardings, batch_shardings(mesh, features)),
      out_shardings=(state_shardings, replicated),
      donate_argnums=0,
  )


def jit_eval_step(eval_step: Callable, state_shardings: TrainState, mesh: Mesh, features: Sequence[str]):
  replicated = NamedSharding(mesh, PartitionSpec())
  return jax.jit(
      eval_step,
      in_shardings=(state_shardings.params, state_shardings.frozen, batch_shardings(mesh, features)),
      out_shardings=(replicated, replicated),
  )


def global_batch(host_batch: Mapping[str, np.ndarray], mesh: Mesh, features: Sequence[str]) -> dict[str, jax.Array]:
  """This host's rows of `features` as global arrays sharded over the data-parallel axes."""
  missing = [name for name in features if name not in host_batch]
  if missing:
    raise KeyError(f"Batch lacks feature(s) {missing}; it has {sorted(host_batch)}.")
  rows = np.shape(host_batch[features[0]])[0] * jax.process_count()
  parallel = mesh.shape["data"] * mesh.shape["fsdp"]
  if rows % parallel:
    raise ValueError(
        f"A batch of {rows} rows cannot be split over data-parallel size {parallel}; use a batch size "
        f"(training or eval) that is a multiple of {parallel}.")
  if os.environ.get(TRACE_BATCHES_ENV):
    _trace_rows(host_batch, features, pathlib.Path(os.environ[TRACE_BATCHES_ENV]))
  batch_sharding = sharding.batch_sharding(mesh)
  return {
      name: jax.make_array_from_process_local_data(batch_sharding, np.asarray(host_batch[name]))
      for name in features
  }


@dataclasses.dataclass(frozen=True)
class TrainProgram:
  """A model's sharded train-state spec, its jitted train and eval steps, and what they were built with."""

  spec: state_lib.StateSpec
  train_step: Callable
  eval_step: Callable
  schedule: optax.Schedule
  features: tuple[str, ...]
  mesh: Mesh


def assemble(model_factory: state_lib.ModelFactory, loss_fn: LossFn, features: Sequence[str], mesh: Mesh,
             rules: sharding.LogicalRules, *, settings: optimizer.AdamWSettings, total_steps: int,
             trainable: str = ".*", frozen: str = "", seed: int = 42, grad_accum_steps: int = 1) -> TrainProgram:
  """optimizer -> state spec (abstract, sharded by `rules` on `mesh`) -> train and eval steps under jit."""
  tx, schedule = optimizer.make_optimizer(settings, total_steps)
  spec = state_lib.build_state_spec(model_factory, tx, mesh, rules, trainable=trainable, frozen=frozen, seed=seed)
  features = tuple(features)
  train_step = jit_train_step(make_train_step(spec.graphdef, loss_fn, tx, schedule, grad_accum_steps=grad_accum_steps,
                                              mesh=mesh, rules=rules), spec.shardings, mesh, features)
  eval_step = jit_eval_step(make_eval_step(spec.graphdef, loss_fn, mesh=mesh, rules=rules), spec.shardings, mesh,
                            features)
  return TrainProgram(spec, train_step, eval_step, schedule, features, mesh)


def _trace_rows(host_batch: Mapping[str, np.ndarray], features: Sequence[str], directory: pathlib.Path) -> None:
  """Appends a digest of each of this host's rows (over `features`) as one line (see TRACE_BATCHES_ENV)."""
  arrays = [np.ascontiguousarray(np.asarray(host_batch[name])) for name in features]
  digests = [hashlib.sha256(b"".join(array[row].tobytes() for array in arrays)).hexdigest()[:16]
             for row in range(arrays[0].shape[0])]
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / f"process_{jax.process_index()}-of-{jax.process_count()}.jsonl"
  with open(path, "a", encoding="utf-8") as handle:
    handle.write(json.dumps({"features": list(features), "rows": digests}) + "\n")
