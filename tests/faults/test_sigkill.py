"""SIGKILL at chosen and random points of a tiny run, then a resume: results identical to an uninterrupted run's.

The chain is pretrain / mmdata / vision / align / sft / eval; kill points include checkpoint writes. Every stage's
losses, the realised mixture shares and the results must equal the uninterrupted run's.

Every process here is a real one (`kill_run.py`) sharing one JAX compilation cache, so only the uninterrupted run
compiles cold. CI runs the chosen points and one random one; VP_FAULT_SEEDS=N runs N random ones (e.g. 20 for a
longer hunt; each case takes 10-30 s on 2 CPU cores), VP_FAULT_POINTS=KIND:STAGE[:ARG],... replaces the chosen ones.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys

import pytest

from visual_priors.data import cache
from visual_priors.experiment import directories

SCRIPT = pathlib.Path(__file__).with_name("kill_run.py")
sys.path.insert(0, str(SCRIPT.parent))
import kill_run  # noqa: E402  pylint: disable=wrong-import-position

CHAIN = ("pretrain", "mmdata", "vision", "align", "sft", "eval")
TIMING = ("compile_and_first_step_seconds", "step_time_seconds", "tokens_per_second", "mfu")
# A checkpoint write, between checkpoints (the one before may not be committed yet), the work done but not recorded.
CHOSEN = [p for p in os.environ.get("VP_FAULT_POINTS", "checkpoint:pretrain:4,step:align:3,done:sft").split(",") if p]
SEEDS = range(1, 1 + int(os.environ.get("VP_FAULT_SEEDS", "1")))  # CI: seed 1, a kill 1.02 s into the vision stage


def _random_point(seed: int) -> str:
  rng = random.Random(seed)
  stage = rng.choice([stage for stage in CHAIN if stage != "mmdata"])
  kinds = ["time", "done"] + (["step", "checkpoint"] if stage in kill_run.STEPS else [])
  kind = rng.choice(kinds)
  if kind == "time":
    return f"time:{stage}:{rng.uniform(0.0, 4.0):.2f}"
  if kind == "done":
    return f"done:{stage}"
  steps = kill_run.STEPS[stage]
  return f"{kind}:{stage}:{rng.choice(range(2, steps + 1, 2) if kind == 'checkpoint' else range(1, steps + 1))}"


def _run(root: pathlib.Path, store: pathlib.Path, jax_cache: pathlib.Path, kill: str | None = None):
  env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(jax_cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
  command = [sys.executable, str(SCRIPT), str(root), str(store), *(["--kill", kill] if kill else [])]
  return subprocess.run(command, env=env, cwd=root.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        timeout=600, check=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_store):
  base = tmp_path_factory.mktemp("sigkill")
  jax_cache = base / "jax_cache"
  done = _run(base / "clean", small_store.root, jax_cache)
  assert done.returncode == 0, done.stdout[-3000:]
  return base / "clean", jax_cache


def _stage_out(root: pathlib.Path, stage: str) -> pathlib.Path:
  [directory] = (root / "stages" / stage).iterdir()
  return directory / "out"


def _trained(out: pathlib.Path) -> dict:
  """What a training stage's result is: its metrics rows without timings, and its manifest's data report."""
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  rows = [{k: v for k, v in row.items() if k not in TIMING} for row in rows]
  manifest = cache.read_json(out / "manifest.json")
  final = {k: v for k, v in manifest["final_metrics"].items() if k not in TIMING}
  return {"metrics": [row for row in rows if len(row) > 1], "final": final, "step": manifest["step"],
          "data_report": manifest.get("data_report")}


def _evaluated(out: pathlib.Path) -> dict:
  scores = out / "vqa" / "scores.jsonl"
  return {"results": cache.read_json(out / "results.json"), "scores": scores.read_text() if scores.is_file() else None}


def _result(root: pathlib.Path, stage: str) -> dict:
  out = _stage_out(root, stage)
  if stage == "eval":
    return _evaluated(out)
  if stage == "mmdata":
    return {"files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())}
  return _trained(out)


def _kill_and_resume(point: str, clean: pathlib.Path, jax_cache: pathlib.Path, store: pathlib.Path,
                     root: pathlib.Path) -> None:
  stage = point.split(":")[1]
  shutil.copytree(clean, root)  # the stages before the killed one are done (a copied root reads its own files)
  shutil.rmtree(root / "runs")
  shutil.rmtree(root / "results")
  for later in CHAIN[CHAIN.index(stage):]:
    shutil.rmtree(root / "stages" / later)
  killed = _run(root, store, jax_cache, kill=point)
  assert killed.returncode == -signal.SIGKILL, f"{point}: exit {killed.returncode}\n{killed.stdout[-3000:]}"
  [run_dir] = (root / "runs").iterdir()
  before = cache.read_json(run_dir / "run.json")["status"]
  assert directories.read_run(run_dir)["status"] == ("interrupted" if before == "running" else before), point
  resumed = _run(root, store, jax_cache)
  assert resumed.returncode == 0, f"{point}: resume failed\n{resumed.stdout[-3000:]}"
  assert cache.read_json(run_dir / "run.json")["status"] == "done"
  for later in CHAIN[CHAIN.index(stage):]:
    assert _result(root, later) == _result(clean, later), f"{point}: {later} differs from the uninterrupted run"


@pytest.mark.slow
def test_sigkill_at_chosen_and_random_points_then_a_resume_matches_an_uninterrupted_run(uninterrupted, small_store,
                                                                                       tmp_path):
  clean, jax_cache = uninterrupted
  points = list(CHOSEN) + [_random_point(seed) for seed in SEEDS]
  for index, point in enumerate(points):
    _kill_and_resume(point, clean, jax_cache, small_store.root, tmp_path / f"case{index}")
