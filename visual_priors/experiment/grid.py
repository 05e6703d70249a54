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
         overrides: Sequence[str] = (), seeds: Sequence[int] = (), until: str | None = None, force: bool = False,
         devices: Sequence[jax.Device] | None = None, log: Callable[[str], None] = print) -> list[GridRow]:
  """Runs each named experiment (registry names, `overrides` as --set strings) and returns one row per run.

  `seeds` is the grid's seed axis: every experiment runs once per seed (its `seed` set, which enters every stage
  key that draws random numbers), all experiments of the first seed before the second, so a grid stopped early
  still holds complete comparisons; empty runs each experiment with its own seed.

  A failed run is recorded and the grid goes on (unless `continue_on_error` is False, then it re-raises);
  Ctrl-C stops the grid. The table is printed through `log` at the end. A multi-process job always stops at a
  failed run: its processes would go on out of step (one in the next run, another still in a collective of this).
  """
  if not names:
    raise ValueError("The grid is empty: no experiment names (check --filter against `python -m visual_priors "
                     "list`).")
  if len(set(seeds)) != len(seeds) or any(int(seed) != seed or seed < 0 for seed in seeds):
    raise ValueError(f"Grid seeds must be distinct non-negative integers, got {list(seeds)}.")
  cells = [(name, (*overrides, f"seed={seed}"), f"{name} seed={seed}") for seed in seeds for name in names
           ] if seeds else [(name, tuple(overrides), name) for name in names]
  for name, cell_overrides, _ in cells:  # every config resolves before the first run starts
    registry.get_experiment(name, cell_overrides)
  rows: list[GridRow] = []
  grid_started = time.perf_counter()
  for index, (name, cell_overrides, label) in enumerate(cells):
    elapsed = time.perf_counter() - grid_started
    pace = (f" ({index} done in {console.format_seconds(elapsed)}, ETA "
            f"{console.format_seconds(elapsed / index * (len(cells) - index))})" if index else "")
    log(f"=== [{index + 1}/{len(cells)}] {label}{pace}")
    started = time.perf_counter()
    try:
      config = registry.get_experiment(name, cell_overrides)
      record = runner.run_experiment(config, root=root, force=force, until=until, devices=devices, log=log)
      rows.append(GridRow(label, record.status, time.perf_counter() - started, record.run_id, None))
    except KeyboardInterrupt:
      rows.append(GridRow(label, "interrupted", time.perf_counter() - started, None, "KeyboardInterrupt"))
      log(format_table(rows))
      raise
    except Exception as error:  # pylint: disable=broad-exception-caught
      rows.append(GridRow(label, "failed", time.perf_counter() - started, None, f"{type(error).__name__}: {error}"))
      if not continue_on_error or jax.process_count() > 1:
        log(format_table(rows))
        raise
      log(f"=== {label} failed: {rows[-1].error}")
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
