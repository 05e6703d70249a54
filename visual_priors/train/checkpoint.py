"""orbax checkpoints of the train state plus the data iterator state: periodic, keep-last-K, atomic, each step
with its health (the train loss that led to it) so a diverged step is never resumed from."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from visual_priors.data import cache
from visual_priors.models import sharding
from visual_priors.train import partition

CHECKPOINTS = "checkpoints"  # the trainer's checkpoint folder inside its work_dir
DAMAGED = "checkpoints.damaged"  # beside it: damaged steps moved aside (never deleted), one folder per step
STATE_ITEM = "state"
DATA_ITEM = "data"


class DamagedCheckpointError(ValueError):
  """A checkpoint step that cannot be read back: unreadable metadata or array files."""


class DivergedCheckpointError(RuntimeError):
  """The checkpoint a run would resume from is diverged (`divergence`): the run refuses to resume from it."""


def divergence(health: dict[str, Any] | None, factor: float) -> str | None:
  """Why a checkpoint with this health record is not good, or None when it is (or its health is unknown: a
  checkpoint written before health was recorded). Health: `loss`, the mean train loss of the steps since the
  previous checkpoint, and `initial_loss`, the run's loss at step 1. Not good: a non-finite loss, or (`factor`
  > 0) a loss above `factor` x a positive initial loss."""
  if not health or health.get("loss") is None:
    return None
  loss, initial = float(health["loss"]), health.get("initial_loss")
  if not math.isfinite(loss):
    return f"the mean train loss since the previous checkpoint is {loss}"
  if factor and initial is not None and math.isfinite(initial) and initial > 0 and loss > factor * initial:
    return (f"the mean train loss since the previous checkpoint, {loss:.6g}, diverged: it is above divergence_factor "
            f"{factor:g} x the initial loss {initial:.6g}")
  return None


def first_line(error: BaseException, limit: int = 300) -> str:
  """`Type: the first line of the message`, at most `limit` characters of it (tensorstore messages run long)."""
  return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:limit]}"


def move_aside(step_dir: pathlib.Path) -> pathlib.Path:
  """Moves a damaged step directory `<work_dir>/checkpoints/<step>` to `<work_dir>/checkpoints.damaged/<step>`
  (`<step>.1`, ... when that exists), out of orbax's sight; returns where it went."""
  step_dir = pathlib.Path(step_dir)
  aside_root = step_dir.parent.parent / DAMAGED
  aside_root.mkdir(parents=True, exist_ok=True)
  aside, n = aside_root / step_dir.name, 0
  while aside.exists():
    n += 1
    aside = aside_root / f"{step_dir.name}.{n}"
  step_dir.rename(aside)
  return aside


def encode_data_state(state: Any) -> dict[str, Any]:
  """A grain-style iterator state (JSON-serialisable or bytes) as a JSON object."""
  if isinstance(state, (bytes, bytearray)):
    return {"bytes_base64": base64.b64encode(bytes(state)).decode("ascii")}
  return {"json": state}


def decode_data_state(encoded: dict[str, Any]) -> Any:
  if "bytes_base64" in encoded:
    return base64.b64decode(encoded["bytes_base64"])
  return encoded["json"]


def _process_file(directory: Any) -> pathlib.Path:
  return pathlib.Path(directory) / f"process_{jax.process_index()}-of-{jax.process_count()}.json"


def _agreed(failure: BaseException | None, step: int) -> BaseException | None:
  """In a multi-process job, a step that any process could not restore is damaged for every process (each reads
  its own data iterator state): they all move on to the same step."""
  if jax.process_count() == 1:
    return failure
  failed = np.asarray(multihost_utils.process_allgather(np.int32(failure is not None)))
  if failure is None and failed.any():
    failure = DamagedCheckpointError(f"processes {np.flatnonzero(failed).tolist()} could not restore step {step}")
  return failure


class DataStateHandler(ocp.CheckpointHandler):
  """Each host's data iterator state as `process_<i>-of-<n>.json` (grain's file convention)."""

  def save(self, directory: Any, args: DataStateSave) -> None:
    record = encode_data_state(args.state)
    if args.health is not None:
      record["health"] = args.health
    _process_file(directory).write_text(json.dumps(record))

  def restore(self, directory: Any, args: DataStateRestore | None = None) -> Any:
    path = _process_file(directory)
    if not path.exists():
      found = sorted(p.name for p in pathlib.Path(directory).glob("process_*.json"))
      raise FileNotFoundError(
          f"Data iterator state {path} is missing (found {found}); resume with the number of hosts that "
          "wrote the checkpoint.")
    fix = f"delete the step directory {pathlib.Path(directory).parent} to resume from the step before it"
    return decode_data_state(cache.read_json(path, fix))

  def metadata(self, directory: Any) -> None:
    del directory

  def finalize(self, directory: Any) -> None:
    del directory

  def close(self) -> None:
    pass


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: Any
  health: dict[str, Any] | None = None  # the trainer's record of the loss that led to this step (`divergence`)


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  pass


def _shape_mismatches(stored: Any, expected: Any) -> list[str]:
  stored_leaves = partition.flatten_paths(stored)
  expected_leaves = partition.flatten_paths(expected)
  problems = [f"missing {path}" for path in expected_leaves if path not in stored_leaves]
  problems += [f"unexpected {path}" for path in stored_leaves if path not in expected_leaves]
  for path, leaf in expected_leaves.items():
    if path in stored_leaves:
      have = stored_leaves[path]
      if tuple(have.shape) != tuple(leaf.shape) or have.dtype != leaf.dtype:
        problems.append(
            f"{path}: stored {tuple(have.shape)} {have.dtype}, expected {tuple(leaf.shape)} {leaf.dtype}"
        )
  return problems


def step_reader() -> ocp.Checkpointer:
  """Reads one step directory as the trainer wrote it (the composite of STATE_ITEM and DATA_ITEM, whose step
  metadata lies beside the items): `metadata(step_dir).item_metadata[STATE_ITEM]` and partial restores of
  the state with `ocp.args.Composite(state=ocp.args.PyTreeRestore(...))`."""
  return ocp.Checkpointer(ocp.CompositeCheckpointHandler(**{STATE_ITEM: ocp.PyTreeCheckpointHandler(),
                                                            DATA_ITEM: DataStateHandler()}))


class Checkpointer:
  """Saves `(train_state, data_iterator_state)` every call to `save`, keeping the newest `keep`.

  Every host saves its own data iterator state (hosts read different slices of the data); the train
  state's arrays are written shard by shard by the hosts that hold them.

  orbax writes each step into a temporary directory and renames it on commit, so a crash mid-save never
  leaves a half-written step that `latest_step` would pick up. With `async_save`, array writes continue in
  the background after the device-to-host copy; `wait` blocks until they are on disk.
  """

  def __init__(self, directory: str | os.PathLike[str], *, keep: int, async_save: bool):
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True,
        ),
        item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(), DATA_ITEM: DataStateHandler()},
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: Any, health: dict[str, Any] | None = None) -> None:
    """Saves the step; `health` (JSON: the train loss that led to it, see `divergence`) is kept beside the data
    iterator state and read back by `health`."""
    self._manager.save(
        step,
        args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.StandardSave(state),
            DATA_ITEM: DataStateSave(data_state, health),
        }),
        force=True,
    )

  def health(self, step: int) -> dict[str, Any] | None:
    """The health record saved with a step; None when it has none or its data item is unreadable (the restore
    then says what is wrong)."""
    try:
      record = json.loads(_process_file(self.directory / str(step) / DATA_ITEM).read_text(encoding="utf-8"))
    except (OSError, ValueError):
      return None
    return record.get("health") if isinstance(record, dict) else None

  def last_good_step(self, factor: float, below: int | None = None) -> int | None:
    """The newest step (below `below`, if given) whose health is good by `divergence`."""
    steps = sorted((s for s in self.all_steps() if below is None or s < below), reverse=True)
    return next((s for s in steps if divergence(self.health(s), factor) is None), None)

  def _readable_here(self, step: int) -> None:
    """Raises FileNotFoundError for a missing item, DamagedCheckpointError for an unreadable data iterator state of
    this process: what one process alone may find wrong with a step, checked before orbax reads anything (every
    process of a job then agrees on the step first, see `_agreed`)."""
    step_dir = self.directory / str(step)
    for item in (STATE_ITEM, DATA_ITEM):
      if not (step_dir / item).is_dir():
        raise FileNotFoundError(
            f"Checkpoint {step_dir} has no {item!r} item; it is incomplete or was not written by this "
            "trainer. Delete that step directory to resume from an earlier one."
        )
    try:
      DataStateHandler().restore(step_dir / DATA_ITEM)
    except ValueError as error:
      raise DamagedCheckpointError(
          f"Checkpoint {step_dir} could not be restored ({type(error).__name__}: {error}). It may be damaged; "
          "delete that step directory to resume from an earlier one.") from error

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
    """Restores into the shapes, dtypes and shardings of `abstract_state` (a tree of ShapeDtypeStructs).

    Raises FileNotFoundError for a missing step or item, ValueError naming every mismatched array.
    """
    step_dir = self.directory / str(step)
    self._readable_here(step)
    try:
      stored = self._manager.item_metadata(step)[STATE_ITEM]
    except Exception as error:  # orbax raises several types for unreadable metadata.
      raise DamagedCheckpointError(f"Checkpoint {step_dir} is unreadable: {error}") from error
    problems = _shape_mismatches(getattr(stored, "tree", stored), abstract_state)
    if problems:
      shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
      raise ValueError(
          f"Checkpoint {step_dir / STATE_ITEM} does not match this run's train state ({shown}). "
          "Was it written with another model scale, trainable regex or optimizer? Use a new work_dir."
      )
    try:
      restored = self._manager.restore(
          step,
          args=ocp.args.Composite(**{
              STATE_ITEM: ocp.args.StandardRestore(abstract_state),
              DATA_ITEM: DataStateRestore(),
          }),
      )
    except FileNotFoundError:
      raise
    except Exception as error:  # tensorstore and orbax raise many types for damaged files.
      raise DamagedCheckpointError(
          f"Checkpoint {step_dir} could not be restored ({type(error).__name__}: {error}). It may be damaged; "
          "delete that step directory to resume from an earlier one."
      ) from error
    return restored[STATE_ITEM], restored[DATA_ITEM]

  def restore_latest(self, abstract_state: Any, *, min_step: int = 0, log: Callable[[str], None] = print,
                     refuse: Callable[[int], str | None] | None = None) -> tuple[int, Any, Any] | None:
    """(step, state, data state) of the newest intact step from `min_step` on, or None when there is none.

    A damaged or incomplete step is moved aside (`move_aside`, by process 0) with a one-line notice and the
    step before it is tried. A step that is intact but does not fit `abstract_state` raises (ValueError).
    Raises DamagedCheckpointError when every step is damaged (they are kept aside; the next run starts afresh),
    and DivergedCheckpointError with the message `refuse(step)` when that says why the step to resume from is
    not good (checked before its arrays are read).
    """
    damaged = []
    steps = sorted((s for s in self.all_steps() if s >= min_step), reverse=True)
    for i, step in enumerate(steps):
      reason = refuse(step) if refuse else None
      if reason:
        raise DivergedCheckpointError(reason)
      failure = None
      try:
        self._readable_here(step)
      except (DamagedCheckpointError, FileNotFoundError) as error:
        failure = error
      failure = _agreed(failure, step)  # every process of a job reads the step, or none does
      if failure is None:
        try:
          state, data_state = self.restore(step, abstract_state)
        except (DamagedCheckpointError, FileNotFoundError) as error:
          failure = error
        failure = _agreed(failure, step)
      if failure is not None:
        cause = failure.__cause__ or failure
        aside = move_aside(self.directory / str(step)) if jax.process_index() == 0 else None
        sharding.sync_processes(f"checkpoint step {step} moved aside")  # before any process lists the steps again
        self._manager.reload()
        damaged.append(step)
        then = f"resuming from step {steps[i + 1]}" if i + 1 < len(steps) else "no earlier step is left"
        log(f"checkpoint step {step} of {self.directory.parent} is damaged ({first_line(cause, 200)}); "
            f"moved to {aside or 'the side by process 0'}; {then}")
        continue
      return step, state, data_state
    if damaged:
      raise DamagedCheckpointError(
          f"Every checkpoint step of {self.directory.parent} is damaged (steps {', '.join(map(str, damaged))}, "
          f"moved to {self.directory.parent / DAMAGED}); rerun to start afresh.")
    return None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

