"""Scalar metrics to TensorBoard event files and a JSONL file (no TensorFlow import needed)."""

from __future__ import annotations

import json
import math
import os
import pathlib
import socket
import time
from collections.abc import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

Scalar = float | int | None


class TensorBoardWriter:
  """Writes scalar summaries to one `events.out.tfevents.*` file that TensorBoard reads."""

  def __init__(self, log_dir: str | os.PathLike[str]):
    log_dir = pathlib.Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.visual_priors"
    self.path = log_dir / name
    self._records = RecordWriter(open(self.path, "wb"))
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())

  def write_scalars(self, step: int, scalars: Mapping[str, Scalar]) -> None:
    """One event holding every scalar that has a value (None values are skipped)."""
    values = [
        summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in scalars.items() if value is not None
    ]
    if values:
      self._write(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)))
      self._records.flush()

  def resume_from(self, step: int) -> None:
    """Marks a restart after `step`: TensorBoard then drops what earlier files logged after it (a SessionLog START at
    step + 1: it keeps the events of smaller steps)."""
    self._write(event_pb2.Event(wall_time=time.time(), step=step + 1,
                                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
    self._records.flush()

  def close(self) -> None:
    self._records.close()


class JsonlWriter:
  """Appends one JSON object per log step: `{"step": n, "loss": ..., "mfu": null, ...}`."""

  def __init__(self, path: str | os.PathLike[str]):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._file = open(self.path, "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, Scalar]) -> None:
    row = {"step": step}
    for tag, value in scalars.items():
      # JSON has no NaN/inf; they become null like an unknown value.
      row[tag] = None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()

  def resume_from(self, step: int) -> None:
    """Drops the rows of steps after `step` (a resumed run logs them again), so every step appears once."""
    self._file.close()
    kept = []
    with open(self.path, encoding="utf-8") as f:
      for line in f:
        try:
          if json.loads(line)["step"] <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
        except (ValueError, KeyError, TypeError):
          continue  # a line torn by a crash mid-write
    tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, self.path)
    self._file = open(self.path, "a", encoding="utf-8")

  def last_values(self) -> dict[str, Scalar]:
    """Each tag's last logged value (rows in file order): what a run that logged these rows would report last."""
    values: dict[str, Scalar] = {}
    with open(self.path, encoding="utf-8") as f:
      for line in f:
        try:
          row = json.loads(line)
        except ValueError:
          continue
        values.update({tag: value for tag, value in row.items() if tag != "step"})
    return values

  def close(self) -> None:
    self._file.close()


class MetricWriter:
  """TensorBoard events under `<work_dir>/tensorboard` and `<work_dir>/metrics.jsonl`."""

  def __init__(self, work_dir: str | os.PathLike[str]):
    work_dir = pathlib.Path(work_dir)
    self.tensorboard = TensorBoardWriter(work_dir / "tensorboard")
    self.jsonl = JsonlWriter(work_dir / "metrics.jsonl")

  def write_scalars(self, step: int, scalars: Mapping[str, Scalar]) -> None:
    self.tensorboard.write_scalars(step, scalars)
    self.jsonl.write_scalars(step, scalars)

  def resume_from(self, step: int) -> None:
    """Drops what an earlier attempt logged after `step` (-1: everything), which this one logs again."""
    self.tensorboard.resume_from(step)
    self.jsonl.resume_from(step)

  def logged_before(self) -> bool:
    """Whether metrics.jsonl holds rows from an earlier attempt (or this one)."""
    return self.jsonl.path.stat().st_size > 0

  def close(self) -> None:
    self.tensorboard.close()
    self.jsonl.close()
