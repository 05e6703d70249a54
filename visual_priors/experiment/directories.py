"""Runs on disk: `<root>/stages/<stage>/<key>/` (one per stage identity) and `<root>/runs/<run_id>/run.json`.

A stage directory holds `out/` (what the stage function writes: a trainer work_dir with its own
manifest.json, or the generated data) and, written last by the runner, `manifest.json` recording the
stage's key, the fields the key hashes, its upstream keys, its outputs and the directory it was written
in (outputs under a root since moved or copied are read from their new place, never the original's). A stage
is done iff that manifest exists and records the same key. `.lock` (fcntl) keeps two processes from running
one stage at once (exclusive: the second waits, then finds the stage done) and a forced rebuild from clearing
a stage that a later stage is reading (readers hold it shared while they run).

run.json is one file per run id that several processes may write: each process (attempt) keeps its own
record under `attempts/<attempt id>`, read-modify-written under `runs/<run_id>/.lock`, so no process
overwrites another's; the top-level fields are the record of the attempt that wrote last. Each record names
its process (`process`: pid, host, start time), so a reader (`read_run`) shows a record still "running" whose
process is gone from this host (killed, the machine rebooted) as "interrupted".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from visual_priors import moved_paths
from visual_priors.data import cache

MANIFEST = "manifest.json"
OUTPUT = "out"
LOCK = ".lock"
RUN_FILE = "run.json"


def stage_dir(root: pathlib.Path, stage: str, key: str) -> pathlib.Path:
  return pathlib.Path(root).absolute() / "stages" / stage / key


def run_dir(root: pathlib.Path, run_id: str) -> pathlib.Path:
  return pathlib.Path(root).absolute() / "runs" / run_id


def read_done(directory: pathlib.Path, key: str) -> dict[str, Any] | None:
  """The runner manifest of a finished stage with this key, else None."""
  path = pathlib.Path(directory) / MANIFEST
  if not path.is_file():
    return None
  manifest = cache.read_json(path)
  if manifest.get("key") != key:
    raise ValueError(f"Stage directory {directory} holds a manifest for key {manifest.get('key')!r}, not {key!r}; "
                     "it was written by something else. Move it away and rerun.")
  if manifest.get("dir"):  # A root moved elsewhere: its outputs are found where they now are.
    manifest["outputs"] = moved_paths.rebased(manifest["outputs"], manifest["dir"], pathlib.Path(directory).absolute())
  return manifest


def write_done(directory: pathlib.Path, manifest: Mapping[str, Any]) -> None:
  """Marks the stage done, recording where it was written (so a moved root can re-anchor its outputs)."""
  directory = pathlib.Path(directory).absolute()
  cache.write_json_atomic(directory / MANIFEST, {**manifest, "dir": str(directory)})


def clear_stage(directory: pathlib.Path) -> None:
  """Forgets a stage's result (manifest first, so a crash midway never leaves a 'done' stage without output)."""
  directory = pathlib.Path(directory)
  (directory / MANIFEST).unlink(missing_ok=True)
  shutil.rmtree(directory / OUTPUT, ignore_errors=True)


@contextlib.contextmanager
def stage_lock(directory: pathlib.Path, log: Callable[[str], None] = print, *, shared: bool = False) -> Iterator[None]:
  """An fcntl lock on `<directory>/.lock`, exclusive (running or clearing the stage) or `shared` (reading its
  outputs); waits (saying so) while another process holds it in a conflicting mode."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
  with open(directory / LOCK, "a+", encoding="utf-8") as handle:
    try:
      fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
      log(f"  waiting: another process is {'rebuilding' if shared else 'running'} {directory}")
      fcntl.flock(handle, mode)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


class RunFile:
  """`<root>/runs/<run_id>/run.json`, rewritten atomically at every transition of the run or a stage; this
  process's record also lands in `attempts[attempt]`, which no other process writes."""

  def __init__(self, directory: pathlib.Path, record: dict[str, Any]):
    self.path = pathlib.Path(directory) / RUN_FILE
    self.attempt = f"{record.get('started') or now()}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    record["process"] = process_record()
    self.record = record
    self.write()

  def write(self) -> None:
    """Read-modify-write under the run directory's lock: the others' attempts are kept as they wrote them."""
    self.path.parent.mkdir(parents=True, exist_ok=True)
    with open(self.path.parent / LOCK, "a+", encoding="utf-8") as handle:
      fcntl.flock(handle, fcntl.LOCK_EX)
      try:
        attempts = {}
        if self.path.is_file():
          try:
            attempts = dict(cache.read_json(self.path).get("attempts") or {})
          except ValueError:  # a damaged run.json: this process's record replaces it
            attempts = {}
        attempts[self.attempt] = {key: value for key, value in self.record.items() if key != "config"}
        cache.write_json_atomic(self.path, {**self.record, "attempt": self.attempt, "attempts": attempts})
      finally:
        fcntl.flock(handle, fcntl.LOCK_UN)

  def stage(self, stage: str, **fields: Any) -> None:
    self.record["stages"][stage].update(fields)
    self.write()

  def run(self, **fields: Any) -> None:
    self.record.update(fields)
    self.write()


def now() -> str:
  return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _proc_stat(pid: int) -> list[str] | None:
  """The fields of /proc/<pid>/stat after the command name (state first), or None where there is none."""
  try:
    text = pathlib.Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
  except OSError:
    return None
  return text.rsplit(")", 1)[1].split()


def process_record() -> dict[str, Any]:
  """This process as a run record names it: pid, host and (Linux) its start time in clock ticks since boot, which
  tells it from a later process given the same pid."""
  stat = _proc_stat(os.getpid())
  return {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": int(stat[19]) if stat else None}


def process_gone(process: Mapping[str, Any] | None) -> bool:
  """Whether the process a record names has ended: True only where that can be told, on its own host."""
  if not process or process.get("host") != socket.gethostname() or not process.get("pid"):
    return False
  pid = int(process["pid"])
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except PermissionError:  # another user's process with that pid: compare start times below
    pass
  stat = _proc_stat(pid)
  if stat is None:
    return False  # no /proc: the pid exists, so the process may well be running
  return stat[0] in ("Z", "X") or (process.get("start_ticks") is not None and int(stat[19]) != process["start_ticks"])


def _resolved(record: dict[str, Any]) -> dict[str, Any]:
  if record.get("status") != "running" or not process_gone(record.get("process")):
    return record
  process = record["process"]
  stages = {name: ({**stage, "status": "interrupted"} if stage.get("status") == "running" else stage)
            for name, stage in (record.get("stages") or {}).items()}
  return {**record, "status": "interrupted", "stages": stages,
          "error": record.get("error") or f"process {process['pid']} on {process['host']} ended while running"}


def read_run(directory: pathlib.Path) -> dict[str, Any]:
  """run.json of a run directory as it stands: a record (the top level or an attempt) that says "running" but
  whose process is gone from this host says "interrupted", and so do its running stages."""
  record = cache.read_json(pathlib.Path(directory) / RUN_FILE)
  record["attempts"] = {name: _resolved(attempt) for name, attempt in (record.get("attempts") or {}).items()}
  return _resolved(record)
