"""Executors put in place of the experiment stages' own (runner, grid and fault tests): `replace_runs`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from visual_priors.data import cache
from visual_priors.experiment import graph, pretrain


def replace_runs(runs: Mapping[str, Callable], monkeypatch=None) -> None:
  """Each named stage of `graph.STAGES` runs `runs[name]` instead; through `monkeypatch` (undone after the test)
  when given, else for the rest of the process (a child process of a fault test)."""
  for name, run in runs.items():
    stage = dataclasses.replace(graph.STAGES[name], run=run)
    if monkeypatch is None:
      graph.STAGES[name] = stage
    else:
      monkeypatch.setitem(graph.STAGES, name, stage)


def current_runs() -> dict[str, Callable]:
  """Every stage's executor as it stands (to wrap them)."""
  return {name: stage.run for name, stage in graph.STAGES.items()}


def replace_every_run(make: Callable[[str], Callable], monkeypatch) -> None:
  """Every stage runs `make(its name)`, and no segment store is needed before the run starts (for this test)."""
  replace_runs({stage: make(stage) for stage in graph.STAGES}, monkeypatch)
  monkeypatch.setattr(pretrain, "preflight", lambda config: None)


def write_results(out_dir, rows: Mapping[str, list]) -> dict:
  """An eval stage's outputs for result `rows` (by evaluated stage), written as the real stage writes them."""
  cache.write_json_atomic(out_dir / "results.json", rows)
  return {"results": str(out_dir / "results.json")}
