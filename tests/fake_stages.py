"""Executors put in place of the experiment stages' own (runner, grid and fault tests): `replace_runs`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from visual_priors.experiment import graph


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
