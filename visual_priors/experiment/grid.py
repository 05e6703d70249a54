"""Runs several named experiments one after another (sharing stages through their keys) and tabulates them."""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable, Sequence

import jax

from visual_priors import console
from visual_priors.experiment import registry, runner


@dataclasses.dataclass(frozen=True)
class GridRow:
  name: str
  status: str  # "done", "partial", "failed", "interrupted"
  seconds: float
  run_id: str | None
  error: str | None


def grid(names: Sequence[str], *, root: str | pathlib.Path, continue_on_error: bool = True,
         overrides: Sequence[str] = (), until: str | None = None, force: bool = False,
         devices: Sequence[jax.Device] | None = None, log: Callable[[str], None] = print) -> list[GridRow]:
  """Runs each named experiment (registry names, `overrides` as --set strings) and returns one row per run.

  A failed run is recorded and the grid goes on (unless `continue_on_error` is False, then it re-raises);
  Ctrl-C stops the grid. The table is printed through `log` at the end. A multi-process job always stops at a
  failed run: its processes would go on out of step (one in the next run, another still in a collective of this).
  """
  if not names:
    raise ValueError("The grid is empty: no experiment names (check --filter against `python -m visual_priors "
                     "list`).")
  rows: list[GridRow] = []
  grid_started = time.perf_counter()
  for index, name in enumerate(names):
    elapsed = time.perf_counter() - grid_started
    pace = (f" ({index} done in {console.format_seconds(elapsed)}, ETA "
            f"{console.format_seconds(elapsed / index * (len(names) - index))})" if index else "")
    log(f"=== [{index + 1}/{len(names)}] {name}{pace}")
    started = time.perf_counter()
    try:
      config = registry.get_experiment(name, overrides)
      record = runner.run_experiment(config, root=root, force=force, until=until, devices=devices, log=log)
      rows.append(GridRow(name, record.status, time.perf_counter() - started, record.run_id, None))
    except KeyboardInterrupt:
      rows.append(GridRow(name, "interrupted", time.perf_counter() - started, None, "KeyboardInterrupt"))
      log(format_table(rows))
      raise
    except Exception as error:  # pylint: disable=broad-exception-caught
      rows.append(GridRow(name, "failed", time.perf_counter() - started, None, f"{type(error).__name__}: {error}"))
      if not continue_on_error or jax.process_count() > 1:
        log(format_table(rows))
        raise
      log(f"=== {name} failed: {rows[-1].error}")
  log(format_table(rows))
  return rows


def format_table(rows: Sequence[GridRow]) -> str:
  """A markdown table: name, status, time, run id, error (first line, shortened)."""
  lines = ["| experiment | status | time | run | error |", "|---|---|---|---|---|"]
  for row in rows:
    error = (row.error or "").splitlines()[0][:120] if row.error else ""
    lines.append(f"| {row.name} | {row.status} | {row.seconds:.1f} s | {row.run_id or ''} | {error} |")
  failed = sum(row.status in ("failed", "interrupted") for row in rows)
  lines.append(f"{len(rows) - failed} of {len(rows)} runs finished, {failed} failed, "
               f"{sum(row.seconds for row in rows):.1f} s in all.")
  return "\n".join(lines)
