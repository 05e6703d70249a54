"""Runs one experiment config stage by stage into a shared, keyed stage cache; records the run; stores results.

    record = run_experiment(get_experiment("demo/mix6"), root="runs")

On disk under `root` (see `directories`):
  stages/<stage>/<key>/      one per stage identity (`graph.stage_identities`): `out/` holds what the stage
                             wrote, `manifest.json` (key, hashed fields, upstream keys, outputs) is written last
  runs/<run_id>/run.json     the resolved config, each stage's key, directory, status, timings and error,
                             rewritten atomically at every transition
  results/                   `ResultsStore`: the eval stage's rows under the run id, and the run's meta
  .jax_cache/                JAX's persistent compilation cache (`visual_priors.train.compile_cache`)

A stage is done iff its manifest exists with the same key: a rerun skips it, and experiments that agree
on a stage (same key) share it. A stage interrupted midway resumes from its trainer's latest checkpoint
in `out/` when rerun. `force=True` redoes this run's stages from `force_from` (default: the first) onwards,
including stages other experiments share (they are recomputed under the same key, with the same
settings); earlier stages are reused. A fcntl lock per stage directory keeps two processes from running
the same stage at once: the second waits and then finds it done. While a stage runs, its process also holds
the locks of the run's earlier stages shared (taken in stage order, so no two processes wait on each other),
so a `force` from another process waits for the readers of a stage before clearing it and readers wait for
its rebuild. Each process's record in run.json is its own (`attempts`); see `directories`.

A multi-process job (`jax.distributed`, every process calling `run_experiment` alike on a root they share) is one
writer: process 0 alone takes the locks, clears forced stages, writes run.json, the stage manifests and the
results, and decides whether a stage is done (the others follow its decision, and read its manifests after a
barrier). Every process runs the stages that compute on the mesh; process 0 alone runs the others
(the stages marked `chief_only`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from visual_priors.data import cache
from visual_priors.models import sharding
from visual_priors.names import lookup
from visual_priors.data.segments import open_store
from visual_priors.experiment import directories, graph, pretrain, schema
from visual_priors.experiment.stage import StageContext
from visual_priors.train import checkpoint as checkpoint_lib, compile_cache


@dataclasses.dataclass(frozen=True)
class RunRecord:
  """What `run_experiment` returns: run.json's content, with the results rows when the eval stage ran."""

  run_id: str
  run_dir: pathlib.Path
  status: str  # "done" (every stage), "partial" (stopped by `until`)
  stages: dict[str, dict[str, Any]]  # stage -> {key, dir, status ("done", "cached"), seconds, ...}
  config: ml_collections.ConfigDict
  results: dict[str, list[dict[str, Any]]] | None  # evaluated stage -> result rows

  @property
  def seconds(self) -> float:
    return sum(stage.get("seconds") or 0.0 for stage in self.stages.values())


def _results_rows(outputs: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
  return cache.read_json(pathlib.Path(outputs["results"]))


def store_results(root: pathlib.Path, run_id: str, meta: dict[str, Any], rows: dict[str, list[dict]],
                  item_scores: Mapping[str, str] | None = None) -> None:
  """Puts every evaluated stage's rows, its per-question VQA scores (`{"stage", "path"}` of a scores.jsonl) and
  the run's meta into `ResultsStore(<root>/results)` (idempotent)."""
  from visual_priors.analysis.results import ResultsStore  # pylint: disable=import-outside-toplevel
  from visual_priors.eval import vqa  # pylint: disable=import-outside-toplevel

  store = ResultsStore(pathlib.Path(root) / "results")
  for stage, stage_rows in rows.items():
    store.put(run_id, stage, stage_rows)
  if item_scores:
    store.put_items(run_id, item_scores["stage"], vqa.read_scores(item_scores["path"]))
  store.put_run(run_id, meta)


def _pin_latest_store(config: ml_collections.ConfigDict, log: Callable[[str], None]) -> ml_collections.ConfigDict:
  """`data.store` "latest" names whatever `data build` wrote last; a run pins the store it resolves to (a
  directory keyed by its corpora, vocabulary and settings), so a rebuilt store gives new stage keys instead of
  reusing stages trained on other data. Without any store the name stays, and preflight says what to build."""
  if config.data.store != "latest":
    return config
  try:
    store = open_store("latest")
  except (FileNotFoundError, ValueError):
    return config
  config = config.copy_and_resolve_references()
  config.data.store = str(store.root)
  log(f"data.store latest = {store.root}")
  return config


class _Unwritten(directories.RunFile):
  """The run record of a process other than 0 in a multi-process job: kept in memory, never written."""

  def __init__(self, record: dict[str, Any]):  # pylint: disable=super-init-not-called
    self.record = record

  def write(self) -> None:
    pass


def _from_chief(flag: bool, name: str) -> bool:
  """Process 0's `flag` in every process of a multi-process job (a barrier, named `name` in errors); `flag`
  itself in a single process."""
  if jax.process_count() == 1:
    return flag
  try:
    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))
  except jax.errors.JaxRuntimeError as error:
    raise RuntimeError(f"Process {jax.process_index()} of {jax.process_count()}: another process of this job "
                       f"failed or died before {name} ({checkpoint_lib.first_line(error)})") from error


def _read_chief_done(directory: pathlib.Path, key: str, stage: str) -> dict[str, Any]:
  """The manifest process 0 wrote for a stage, as a later process of the job reads it."""
  done = directories.read_done(directory, key)
  if done is None:
    raise RuntimeError(f"Process {jax.process_index()}: process 0 has finished stage {stage}, but its manifest "
                       f"{directory / directories.MANIFEST} is not to be seen here; every process of a multi-process "
                       "job needs the run root on a filesystem they share.")
  return done


def _still_done(directory: pathlib.Path, key: str, stage: str) -> dict[str, Any]:
  """The outputs of an earlier stage of this run, read again under its shared lock: another process may have
  forced it since (and rebuilt it, or failed to)."""
  done = directories.read_done(directory, key)
  if done is None:
    raise RuntimeError(f"Stage {stage} in {directory} was cleared by another process (--force) whose rebuild did "
                       "not finish; rerun this experiment to rebuild it.")
  return done["outputs"]


def run_experiment(config: ml_collections.ConfigDict, *, root: str | pathlib.Path, force: bool = False,
                   force_from: str | None = None, until: str | None = None,
                   devices: Sequence[jax.Device] | None = None, log: Callable[[str], None] = print) -> RunRecord:
  """Finalizes `config`, then runs (or finds done) each of its stages in order, up to `until` (inclusive).

  Raises what a failing stage raised, after marking it failed (with the exception text) in run.json.
  The run's mesh, runtime.mesh over `devices` (default: all), is built once, before the first stage that
  computes, and every stage trains or evaluates on it. Compiles go through JAX's persistent cache in
  `<root>/.jax_cache` (`visual_priors.train.compile_cache`: runtime.compile_cache or
  $VISUAL_PRIORS_COMPILE_CACHE choose another directory, or "off").
  """
  root = pathlib.Path(root).absolute()
  config = _pin_latest_store(schema.finalize(config, strict=True), log)
  identities = graph.stage_identities(config)
  selected = list(identities)
  if until is not None:
    lookup(identities, until, "stage of this experiment")
    selected = selected[:selected.index(until) + 1]
  forced: set[str] = set()
  if force or force_from is not None:
    start = selected[0] if force_from is None else force_from
    lookup(identities, start, "stage of this experiment")
    forced = set(list(identities)[list(identities).index(start):])
  chief = jax.process_index() == 0  # the job's one writer (always, in a single process)
  run_id = graph.run_id(config)
  run_dir = directories.run_dir(root, run_id)
  dirs = {stage: directories.stage_dir(root, stage, identities[stage].key) for stage in identities}
  if "pretrain" in selected and ("pretrain" in forced
                                 or directories.read_done(dirs["pretrain"], identities["pretrain"].key) is None):
    pretrain.preflight(config)
  record = {
      "run_id": run_id, "name": config.name, "description": config.description, "status": "running",
      "root": str(root), "started": directories.now(), "finished": None, "until": until,
      "forced": [stage for stage in selected if stage in forced], "error": None,
      "config": config.to_dict(),
      "stages": {stage: {"key": identities[stage].key, "dir": str(dirs[stage]), "status": "pending",
                         "upstream": {u: identities[u].key for u in identities[stage].upstream},
                         "seconds": None, "started": None, "finished": None, "error": None}
                 for stage in selected},
  }
  if (run_dir / directories.RUN_FILE).is_file():
    try:
      previous = directories.read_run(run_dir)
    except ValueError:
      previous = {}
    if previous.get("status") == "interrupted":
      log(f"run {run_id}: its last attempt was interrupted ({previous.get('error')}); done stages are reused and an "
          "interrupted one resumes from its checkpoint")
  # Every process in step before process 0 may wait for a lock: a job's first collective must come within seconds.
  _from_chief(True, "the start of the run")
  run_file = directories.RunFile(run_dir, record) if chief else _Unwritten(record)
  outputs: dict[str, dict[str, Any]] = {}
  log(f"run {run_id} ({config.name or 'unnamed'}): stages {', '.join(selected)} under {root}")
  cache_dir = compile_cache.resolve(root, config.runtime.get("compile_cache", ""))
  mesh = None  # the run's mesh, built before its first stage that computes and handed to every stage
  with compile_cache.use(cache_dir):
    for index, stage in enumerate(selected):
      identity = identities[stage]
      directory = dirs[stage]
      prefix = f"[{index + 1}/{len(selected)}] {stage} {identity.key}"
      with contextlib.ExitStack() as locks:
        for earlier in selected[:index] if chief else ():  # readers: a forced rebuild elsewhere waits for it
          locks.enter_context(directories.stage_lock(dirs[earlier], log, shared=True))
          try:
            outputs[earlier] = _still_done(dirs[earlier], identities[earlier].key, earlier)
          except RuntimeError as error:
            run_file.stage(stage, status="failed", finished=directories.now(), error=str(error))
            run_file.run(status="failed", error=f"{stage}: {error}", finished=directories.now())
            raise
        done = None
        if chief:
          locks.enter_context(directories.stage_lock(directory, log))
          if stage in forced:
            directories.clear_stage(directory)
          done = directories.read_done(directory, identity.key)
        if _from_chief(done is not None, f"stage {stage}") and not chief:
          done = _read_chief_done(directory, identity.key, stage)
        if done is not None:
          outputs[stage] = done["outputs"]
          run_file.stage(stage, status="cached", seconds=0.0, finished=directories.now())
          log(f"{prefix}: done before ({done.get('seconds', 0):.1f} s then), reused")
          continue
        run_file.stage(stage, status="running", started=directories.now())
        log(f"{prefix}: running")
        started = time.perf_counter()
        if mesh is None:
          mesh = sharding.make_mesh(config.runtime.mesh, devices)
          log(f"mesh: {', '.join(f'{axis}={size}' for axis, size in mesh.shape.items())} over {mesh.devices.size} "
              f"{mesh.devices.flat[0].platform} devices; compile cache: {cache_dir or 'off'}")
        context = StageContext(
            config=config, stage=stage, key=identity.key, out_dir=directory / directories.OUTPUT,
            outputs=dict(outputs), devices=devices, log=log, mesh=mesh)
        try:
          stage_outputs = None
          if chief or not graph.STAGES[stage].chief_only:
            stage_outputs = graph.STAGES[stage].run(context)
        except BaseException as error:
          seconds = time.perf_counter() - started
          status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
          text = f"{type(error).__name__}: {error}"
          if jax.process_count() > 1:
            text += f" (in process {jax.process_index()} of {jax.process_count()}" + (
                "; a collective failed: another process of the job may have failed or died first, see its log)"
                if isinstance(error, (jax.errors.JaxRuntimeError, TimeoutError)) else ")")
          run_file.stage(stage, status=status, seconds=seconds, finished=directories.now(), error=text)
          run_file.run(status=status, error=f"{stage}: {text}", finished=directories.now())
          log(f"{prefix}: {status} after {seconds:.1f} s: {text}")
          raise
        seconds = time.perf_counter() - started
        if chief:
          directories.write_done(directory, {
              "stage": stage, "key": identity.key, "fields": identity.fields,
              "upstream": {u: identities[u].key for u in identity.upstream}, "outputs": stage_outputs,
              "seconds": seconds, "finished": directories.now(), "first_run": run_id})
        if _from_chief(True, f"the end of stage {stage}") and stage_outputs is None:
          stage_outputs = _read_chief_done(directory, identity.key, stage)["outputs"]
        outputs[stage] = stage_outputs
        run_file.stage(stage, status="done", seconds=seconds, finished=directories.now())
        log(f"{prefix}: done in {seconds:.1f} s")
  results = None
  if "eval" in outputs and not chief:
    results = _results_rows(outputs["eval"])
  elif "eval" in outputs:
    with directories.stage_lock(dirs["eval"], log, shared=True):
      results = _results_rows(_still_done(dirs["eval"], identities["eval"].key, "eval"))
    store_results(root, run_id, config.meta.to_dict(), results, outputs["eval"].get("item_scores"))
    log(f"results: {sum(len(rows) for rows in results.values())} rows in {root / 'results'} as run {run_id}")
  status = "done" if selected == list(identities) else "partial"
  run_file.run(status=status, finished=directories.now())
  _from_chief(True, "the end of the run")  # no process returns before process 0 has recorded the run
  return RunRecord(run_id=run_id, run_dir=run_dir, status=status, stages=run_file.record["stages"], config=config,
                   results=results)
