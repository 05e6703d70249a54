"""The one training loop every stage runs: resume, step, log, evaluate, checkpoint, stop on NaN or divergence.

A stage supplies a model factory, a loss function, a data factory and optional eval sets; which parameters
train, the optimizer, the mesh and the schedule come from the run config (`visual_priors.train.config`).

Host syncs happen only at log, eval and checkpoint steps (and once after the first step, to time the
compile): per-step metrics stay on the device until then, so the host keeps dispatching ahead.

The NaN guard keeps only good checkpoints: a non-finite loss or gradient norm stops the run before the state
is saved, and so does a diverged loss (`config.divergence_factor`: the mean train loss since the previous
checkpoint above that factor x the run's initial loss). Each checkpoint records that health (`loss`,
`initial_loss`), and a run refuses to resume from a checkpoint that is diverged by the same test.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from visual_priors import console
from visual_priors.train import checkpoint, config as config_lib, mfu, optimizer
from visual_priors.train import state as state_lib, step as step_lib
from visual_priors.train.metrics import MetricWriter

HostBatch = Mapping[str, np.ndarray]
EvalSets = Mapping[str, Callable[[], Iterable[HostBatch]]]


class DataIterator(Protocol):
  """A grain-style iterator of host batches whose position can be saved and restored."""

  def __next__(self) -> HostBatch: ...

  def get_state(self) -> Any: ...

  def set_state(self, state: Any) -> None: ...


class NonFiniteLossError(RuntimeError):
  """A train metric became NaN or inf; no checkpoint of that state was written."""


class DivergedLossError(NonFiniteLossError):
  """The train loss diverged (`config.divergence_factor`); no checkpoint of that state was written."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
  work_dir: pathlib.Path
  checkpoint_dir: pathlib.Path
  step: int
  tokens_seen: int
  trainable_params: int
  frozen_params: int
  final_metrics: dict[str, float | None]


class _Window:
  """Per-step device metrics since the last sync, and host-side sums since the last log."""

  def __init__(self, initial_loss: float | None):
    self.pending: list[tuple[int, dict[str, jax.Array]]] = []
    self.since_log: list[dict[str, float]] = []
    self.since_save: list[float] = []  # train losses of the steps since the last checkpoint
    self.initial_loss = initial_loss  # the loss of step 1 (restored from a checkpoint's health on resume)
    self.timed_steps = 0
    self.timed_seconds = 0.0

  def drain(self) -> None:
    """Fetches pending metrics (one host sync); raises on the first non-finite loss or gradient norm."""
    fetched = jax.device_get([metrics for _, metrics in self.pending])
    for (step, _), values in zip(self.pending, fetched):
      for name in ("loss", "grad_norm"):
        if not math.isfinite(float(values[name])):
          raise NonFiniteLossError(f"Training stopped: {name} is {float(values[name])} at step {step}.")
      self.since_log.append({name: float(value) for name, value in values.items()})
      self.since_save.append(float(values["loss"]))
      if self.initial_loss is None:  # step 1 (or the first step after resuming a checkpoint without health)
        self.initial_loss = float(values["loss"])
    self.pending = []

  def health(self) -> dict[str, float | None]:
    """The checkpoint's health record: the mean train loss since the last checkpoint and the initial loss."""
    loss = sum(self.since_save) / len(self.since_save) if self.since_save else None
    return {"loss": loss, "initial_loss": self.initial_loss}

  def summary(self) -> dict[str, float]:
    """Mean loss and gradient norm over the window; the learning rate of its last step."""
    rows = self.since_log
    result = {name: sum(row[name] for row in rows) / len(rows) for name in ("loss", "grad_norm")}
    result["learning_rate"] = rows[-1]["learning_rate"]
    self.since_log = []
    return result


def _in_lockstep(batches: Iterable[HostBatch], max_batches: int) -> Iterator[HostBatch]:
  """Batches while every host still has one, at most `max_batches` (0 = no limit).

  Hosts read different slices of an eval set, which can differ by a batch; every host must run the same
  number of (collective) eval steps, so each step first checks that all hosts have a batch.
  """
  iterator = iter(batches)
  served = 0
  while not max_batches or served < max_batches:
    batch = next(iterator, None)
    if jax.process_count() > 1:
      if not int(multihost_utils.process_allgather(np.int32(batch is not None)).min()):
        return
    elif batch is None:
      return
    yield batch
    served += 1


def _evaluate(eval_step: Callable, state: state_lib.TrainState, eval_sets: EvalSets, mesh: jax.sharding.Mesh,
              features: Sequence[str], max_batches: int) -> dict[str, float | None]:
  """Token-weighted mean loss per eval set, as `eval/<name>/loss` (None if not finite)."""
  results: dict[str, float | None] = {}
  for name, make_batches in eval_sets.items():
    totals = [eval_step(state.params, state.frozen, step_lib.global_batch(host_batch, mesh, features))
              for host_batch in _in_lockstep(make_batches(), max_batches)]
    fetched = jax.device_get(totals)
    loss_sum = sum(float(batch_loss) for batch_loss, _ in fetched)
    tokens = sum(float(batch_tokens) for _, batch_tokens in fetched)
    if tokens <= 0:
      raise ValueError(f"Eval set {name!r} yielded no loss-weighted tokens; check its data factory.")
    loss = loss_sum / tokens
    results[f"eval/{name}/loss"] = loss if math.isfinite(loss) else None
  return results


def _next_batch(iterator: Iterator[HostBatch], step: int, total: int) -> HostBatch:
  try:
    return next(iterator)
  except StopIteration:
    raise ValueError(
        f"The training data ran out before step {step} of {total}; use a repeating pipeline "
        "(num_epochs=None) or a smaller num_steps/token_budget."
    ) from None


def train(config: ml_collections.ConfigDict, *, model_factory: state_lib.ModelFactory,
          loss_fn: step_lib.LossFn, train_data: Callable[[], DataIterator], features: Sequence[str],
          eval_sets: EvalSets | None = None, flops_per_token: float | None = None,
          on_step: Callable[[int], None] | None = None,
          devices: Sequence[jax.Device] | None = None,
          mesh: jax.sharding.Mesh | None = None,
          initialize: Callable[[state_lib.TrainState], Mapping[str, Any]] | None = None,
          stage: str = "train") -> TrainResult:
  """Trains to `total_steps(config)`, resuming from the newest checkpoint in `<work_dir>/checkpoints`.

  `train_data()` returns this host's iterator of batches holding `features` ((B / hosts, T) int arrays);
  `eval_sets` maps a name to a factory of finite batch iterables; `flops_per_token` (train FLOPs per
  token) enables MFU. `on_step(step)` runs after each step's logging and checkpointing. On a fresh start
  (no checkpoint to resume) `initialize(abstract_state)` returns model variables by '/'-path (e.g. upstream
  weights) that the state is created with instead of their random initialisation; a resumed run restores
  its own checkpoint instead. `stage` names the run in its errors (e.g. "pretrain"). The mesh is `mesh` when
  given (the run's, which must have config.mesh's shape), else config.mesh over `devices` (default: all).

  Raises NonFiniteLossError (a NaN) or DivergedLossError before saving a bad state, and
  checkpoint.DivergedCheckpointError (one line naming the stage and step) instead of resuming from a
  diverged checkpoint.
  """
  config_lib.validate(config, devices, mesh)
  eval_sets = dict(eval_sets or {})
  total = config_lib.total_steps(config)
  tokens_per_step = config.batch_size * config.seq_len
  mesh = config_lib.run_mesh(config.mesh, devices, mesh)
  rules = tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in config.logical_axis_rules)
  program = step_lib.assemble(model_factory, loss_fn, features, mesh, rules,
                              settings=optimizer.AdamWSettings(**config.optimizer), total_steps=total,
                              trainable=config.trainable, frozen=config.frozen, seed=config.seed,
                              grad_accum_steps=config.grad_accum_steps)
  spec, train_step, eval_step = program.spec, program.train_step, program.eval_step
  device_kinds = [device.device_kind for device in mesh.devices.flat]

  work_dir = pathlib.Path(config.work_dir)
  checkpointer = checkpoint.Checkpointer(work_dir / checkpoint.CHECKPOINTS, keep=config.checkpoint.keep,
                                         async_save=config.checkpoint.async_save)
  chief = jax.process_index() == 0
  writer = MetricWriter(work_dir) if chief else None
  progress = console.Progress(total, "  step", enabled=chief)
  final_metrics: dict[str, float | None] = {}
  factor = float(config.divergence_factor)

  def refuse(step: int) -> str | None:
    problem = checkpoint.divergence(checkpointer.health(step), factor)
    if problem is None:
      return None
    good = checkpointer.last_good_step(factor, below=step)
    then = (f"the last good step is {good}: move {checkpointer.directory / str(step)} aside to resume from it"
            if good else "no earlier good step is kept: start afresh in a new work_dir")
    return (f"{stage}: refusing to resume from checkpoint step {step} of {work_dir}: {problem}; {then}, lower "
            "optimizer.peak_lr, or set divergence_factor=0 to resume from it anyway.")

  try:
    iterator = train_data()
    restored = checkpointer.restore_latest(spec.abstract, min_step=1, log=print if chief else lambda _: None,
                                           refuse=refuse)
    start = restored[0] if restored else 0
    initial_loss = (checkpointer.health(start) or {}).get("initial_loss") if restored else None
    if restored:
      state = restored[1]
      iterator.set_state(restored[2])
      if writer:
        writer.resume_from(start)  # steps after the checkpoint are logged again: each step once in the files
        final_metrics.update(writer.jsonl.last_values())  # what the steps up to the checkpoint logged last
    else:
      state = spec.create(initialize(spec.abstract) if initialize else None)
      if writer and writer.logged_before():  # an earlier attempt logged steps but committed no checkpoint (or
        writer.resume_from(-1)               # only damaged ones): this fresh start logs every step again, once
    trainable_count, frozen_count = state_lib.parameter_count(state)

    def write(step: int, scalars: Mapping[str, float | None]) -> None:
      final_metrics.update(scalars)
      if writer:
        writer.write_scalars(step, scalars)

    if eval_sets and (start == 0 or start >= total):
      write(start, _evaluate(eval_step, state, eval_sets, mesh, features, config.eval_max_batches))
    window = _Window(initial_loss)
    last_sync = time.perf_counter()
    for step in range(start + 1, total + 1):
      state, metrics = train_step(state, step_lib.global_batch(_next_batch(iterator, step, total), mesh, features))
      window.pending.append((step, metrics))
      first = step == start + 1
      do_log = step % config.log_every_steps == 0 or step == total
      do_eval = bool(eval_sets) and (step % config.eval_every_steps == 0 or step == total)
      do_save = step % config.checkpoint.every_steps == 0 or step == total
      if first or do_log or do_eval or do_save:
        drained = len(window.pending)
        window.drain()
        seconds = time.perf_counter() - last_sync
        if first:
          write(step, {"compile_and_first_step_seconds": seconds})
        else:
          window.timed_steps += drained
          window.timed_seconds += seconds
        if do_log:
          scalars: dict[str, float | None] = window.summary()
          scalars["tokens_seen"] = step * tokens_per_step
          if window.timed_steps:
            step_time = window.timed_seconds / window.timed_steps
            scalars["step_time_seconds"] = step_time
            scalars["tokens_per_second"] = tokens_per_step / step_time
            scalars["mfu"] = (mfu.model_flops_utilization(tokens_per_step / step_time, flops_per_token,
                                                          device_kinds) if flops_per_token else None)
            window.timed_steps, window.timed_seconds = 0, 0.0
          write(step, scalars)
          speed = (f" {scalars['tokens_per_second'] / 1e3:.1f}k tok/s" if scalars.get("tokens_per_second")
                   else "")
          progress.update(step, f"loss {scalars['loss']:.4f}{speed}")
        if do_eval:
          write(step, _evaluate(eval_step, state, eval_sets, mesh, features, config.eval_max_batches))
        if do_save:
          health = window.health()
          problem = checkpoint.divergence(health, factor)
          if problem:
            raise DivergedLossError(f"Training stopped at step {step}: {problem}.")
          checkpointer.save(step, state, iterator.get_state(), health)
          window.since_save = []
        last_sync = time.perf_counter()
      if on_step:
        on_step(step)
    return TrainResult(
        work_dir=work_dir, checkpoint_dir=checkpointer.directory, step=max(start, total),
        tokens_seen=max(start, total) * tokens_per_step, trainable_params=trainable_count,
        frozen_params=frozen_count, final_metrics=final_metrics,
    )
  except NonFiniteLossError as error:
    checkpointer.wait()
    last_good = checkpointer.last_good_step(factor)
    kept = (f"the last good checkpoint is step {last_good} in {checkpointer.directory}" if last_good
            else "no checkpoint was written yet")
    raise type(error)(
        f"{stage}: {error} No checkpoint of that state was written; {kept}. Lower optimizer.peak_lr or check the "
        "data, then rerun to resume from the last good checkpoint."
    ) from None
  finally:
    checkpointer.wait()
    checkpointer.close()
    progress.close()
    if writer:
      writer.close()
