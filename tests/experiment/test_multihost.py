"""Multi-host simulated on one machine: 2 processes x 4 emulated CPU devices, joined by `jax.distributed` on 127.0.0.1
(the package's own `maybe_initialize_distributed`, no mocks), run the tiny experiment through the runner (pretrain,
mmdata, vision from a .npz, align, sft, eval) on a data=2, fsdp=4 mesh over all 8 devices.

Checked against the same run in 1 process x 8 devices: every training loss (float32, within 1e-5); each global
batch is the reference's rows, split into two disjoint halves, one per process (the batches' row digests,
$VISUAL_PRIORS_TRACE_BATCHES). Process 0 alone writes run.json, the stage manifests, the locks and the results
rows; the orbax checkpoints hold one state and each process's data iterator state. Both processes SIGKILLed mid-sft
(while writing a checkpoint) and rerun: the sft losses after the restored step are the uninterrupted run's, and
each process reads the rows it read then. One process failing stops the other with an error instead of a hang.

Every worker (`multihost_worker.py`) is a real process; the multi-process runs share one JAX compilation cache.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from visual_priors.analysis.results import ResultsStore
from visual_priors.experiment import directories

WORKER = pathlib.Path(__file__).with_name("multihost_worker.py")
sys.path.insert(0, str(WORKER.parent))
import multihost_worker  # noqa: E402  pylint: disable=wrong-import-position

CHAIN = ("pretrain", "mmdata", "vision", "align", "sft", "eval")
TRAINED = ("pretrain", "align", "sft")
DEADLINE_S = 400  # a whole job; a hang fails the test instead of the CI job
STOP_S = 45  # after one process of a job ends, the others must have ended within this (heartbeats time out in 10 s)


@dataclasses.dataclass
class Ended:
  returncode: int
  output: str
  at: float  # time.monotonic() when it was seen ended


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def _job(root: pathlib.Path, base: pathlib.Path, *, processes: int = 2, trace: str | None = None,
         until: str = "eval", extra: dict[int, list[str]] | None = None, name: str = "") -> list[Ended]:
  """Runs the worker as `processes` processes x (8 / processes) devices on `root`; SIGKILLs the lot at DEADLINE_S."""
  env = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS")}
  env.update(PYTHONUNBUFFERED="1", VISUAL_PRIORS_COMPILE_CACHE=str(base / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
             VISUAL_PRIORS_DISTRIBUTED_HEARTBEAT_TIMEOUT_S="10", VISUAL_PRIORS_DISTRIBUTED_INIT_TIMEOUT_S="120")
  env.pop("VISUAL_PRIORS_TRACE_BATCHES", None)
  if trace:
    env["VISUAL_PRIORS_TRACE_BATCHES"] = str(base / trace)
  port = _free_port()
  logs, workers = [], []
  for process in range(processes):
    command = [sys.executable, str(WORKER), str(root), str(base / "store"), "--devices", str(8 // processes),
               "--processes", str(processes), "--process-id", str(process), "--port", str(port), "--until", until,
               "--vision-npz", str(base / "vit-nano.npz"), "--audit", str(root.parent / f"{root.name}.audit"),
               *(extra or {}).get(process, [])]
    logs.append(open(root.parent / f"{name or root.name}.process{process}.log", "w+", encoding="utf-8"))
    workers.append(subprocess.Popen(command, env=env, cwd=base, stdout=logs[-1], stderr=subprocess.STDOUT))
  started, ended = time.monotonic(), {}
  try:
    while len(ended) < processes:
      for index, worker in enumerate(workers):
        if index not in ended and worker.poll() is not None:
          ended[index] = time.monotonic()
      if time.monotonic() - started > DEADLINE_S:
        break
      time.sleep(0.2)
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.send_signal(signal.SIGKILL)  # SIGTERM is caught by jax's preemption notifier
      worker.wait()
  results = []
  for index, (worker, log) in enumerate(zip(workers, logs)):
    log.seek(0)
    results.append(Ended(worker.returncode, log.read(), ended.get(index, float("inf"))))
    log.close()
  hung = [index for index in range(processes) if index not in ended]
  assert not hung, f"processes {hung} hung (killed after {DEADLINE_S} s):\n" + _tails(results)
  return results


def _tails(results: list[Ended], chars: int = 3000) -> str:
  return "\n".join(f"--- process {i} (exit {r.returncode}):\n{r.output[-chars:]}" for i, r in enumerate(results))


def _stage_out(root: pathlib.Path, stage: str) -> pathlib.Path:
  [directory] = (root / "stages" / stage).iterdir()
  return directory / directories.OUTPUT


def _losses(root: pathlib.Path, stage: str) -> dict[int, float]:
  rows = [json.loads(line) for line in (_stage_out(root, stage) / "metrics.jsonl").read_text().splitlines()]
  return {row["step"]: row["loss"] for row in rows if "loss" in row}


def _trace(base: pathlib.Path, name: str, processes: int) -> list[list[dict]]:
  return [[json.loads(line) for line in (base / name / f"process_{p}-of-{processes}.jsonl").read_text().splitlines()]
          for p in range(processes)]


def _audit(root: pathlib.Path) -> dict[int, list[dict]]:
  directory = root.parent / f"{root.name}.audit"
  return {int(path.stem.split("_")[1]): [json.loads(line) for line in path.read_text().splitlines()]
          for path in sorted(directory.glob("process_*.jsonl"))}


def _predictions(root: pathlib.Path) -> dict[tuple, str]:
  rows = [json.loads(line) for line in (_stage_out(root, "eval") / "vqa" / "predictions.jsonl").read_text().splitlines()]
  return {(row["benchmark"], row["id"], row["blind"]): row["output"] for row in rows}


def _copy_before(source: pathlib.Path, root: pathlib.Path, stage: str) -> None:
  """`source`'s root with `stage` and the stages after it not run yet (and no run record or results)."""
  shutil.copytree(source, root)
  shutil.rmtree(root / "runs")
  shutil.rmtree(root / "results", ignore_errors=True)
  for later in CHAIN[CHAIN.index(stage):]:
    shutil.rmtree(root / "stages" / later)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_store):
  """The uninterrupted runs: 1 process x 8 devices (`one`) and 2 processes x 4 devices (`two`), side by side."""
  base = tmp_path_factory.mktemp("multihost")
  (base / "store").symlink_to(small_store.root)
  multihost_worker.write_vision_npz(base / "vit-nano.npz")
  one, two = base / "one", base / "two"
  started = time.monotonic()
  with ThreadPoolExecutor(2) as pool:
    single = pool.submit(_job, one, base, processes=1, trace="trace-one")
    double = pool.submit(_job, two, base, processes=2, trace="trace-two")
    single, double = single.result(), double.result()
  assert single[0].returncode == 0, _tails(single)
  assert [r.returncode for r in double] == [0, 0], _tails(double)
  print(f"uninterrupted runs: {time.monotonic() - started:.1f} s")
  return base


@pytest.mark.slow
def test_two_processes_train_as_one_and_each_reads_its_own_half_of_every_batch(runs):
  for stage in TRAINED:
    one, two = _losses(runs / "one", stage), _losses(runs / "two", stage)
    assert list(two) == list(one) and one, stage
    for step, loss in one.items():
      assert two[step] == pytest.approx(loss, abs=1e-5, rel=0), f"{stage} step {step}: {two[step]} != {loss}"
  [reference] = _trace(runs, "trace-one", 1)
  first, second = _trace(runs, "trace-two", 2)
  assert len(reference) == len(first) == len(second) == sum(len(_losses(runs / "one", s)) for s in TRAINED)
  for step, (rows, mine, theirs) in enumerate(zip(reference, first, second)):
    assert len(mine["rows"]) == len(theirs["rows"]) == len(rows["rows"]) // 2, step
    assert sorted(mine["rows"] + theirs["rows"]) == sorted(rows["rows"]), f"global batch {step}: not the reference's"
    unique = {row for row, n in collections.Counter(rows["rows"]).items() if n == 1}
    assert not set(mine["rows"]) & set(theirs["rows"]) & unique, f"global batch {step}: a row read by both"
  assert [line["rows"] for line in first] != [line["rows"] for line in second]


@pytest.mark.slow
def test_process_zero_alone_writes_run_json_manifests_locks_and_results(runs):
  root = runs / "two"
  audit = _audit(root)
  assert set(audit) == {0, 1}
  assert [entry["call"] for entry in audit[1]] == ["start"], audit[1]  # process 1 writes none of them
  writes = collections.Counter((entry["call"], entry.get("stage")) for entry in audit[0])
  assert {stage for (call, stage) in writes if call == "manifest"} == set(CHAIN)
  assert all(n == 1 for (call, _), n in writes.items() if call in ("manifest", "results"))
  assert writes[("results", None)] == 1 and writes[("run.json", None)] >= len(CHAIN)
  assert writes[("lock", None)] >= len(CHAIN)  # every stage's lock, by process 0 only
  assert not any(call == "clear" for call, _ in writes)
  record = directories.read_run(next((root / "runs").iterdir()))
  assert record["status"] == "done" and len(record["attempts"]) == 1
  assert record["process"]["pid"] == audit[0][0]["pid"]
  store = ResultsStore(root / "results")
  one = ResultsStore(runs / "one" / "results")
  rows, expected = store.frame(), one.frame()
  assert len(rows) == len(expected) > 0 and not rows.drop(columns="run").duplicated().any()
  key = ["stage", "benchmark", "group", "metric"]
  rows, expected = rows.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True)
  assert rows[key + ["count"]].equals(expected[key + ["count"]])
  assert rows["value"].to_numpy() == pytest.approx(expected["value"].to_numpy(), abs=1e-5, nan_ok=True)
  # Every greedy reply (with the image and blind) is the reference's, appended once.
  assert _predictions(root) == _predictions(runs / "one") and len(_predictions(root)) == len(
      (_stage_out(root, "eval") / "vqa" / "predictions.jsonl").read_text().splitlines())
  for stage in TRAINED:  # one state per step; each process's data iterator state beside it
    checkpoints = _stage_out(root, stage) / "checkpoints"
    for step in checkpoints.iterdir():
      assert sorted(p.name for p in (step / "data").glob("process_*")) == ["process_0-of-2.json",
                                                                            "process_1-of-2.json"]
      assert (step / "state").is_dir() and not list(step.parent.glob("*.orbax-checkpoint-tmp*"))


@pytest.mark.slow
def test_both_processes_killed_mid_sft_resume_from_the_checkpoint_they_wrote(runs):
  clean = runs / "two"
  root = runs / "killed"
  _copy_before(clean, root, "sft")
  killed = _job(root, runs, until="sft", extra={0: ["--kill", "checkpoint:sft:4"], 1: ["--kill", "checkpoint:sft:4"]})
  assert all(r.returncode != 0 for r in killed), _tails(killed)
  assert -signal.SIGKILL in [r.returncode for r in killed], _tails(killed)
  [run_dir] = (root / "runs").iterdir()
  assert directories.read_run(run_dir)["status"] == "interrupted"
  checkpoints = _stage_out(root, "sft") / "checkpoints"
  assert 2 in {int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()}
  resumed = _job(root, runs, until="sft", trace="trace-resumed", name="resumed")
  assert [r.returncode for r in resumed] == [0, 0], _tails(resumed)
  assert _losses(root, "sft") == _losses(clean, "sft")
  assert {entry["call"] for entry in _audit(root)[1]} == {"start"}  # process 1 wrote no shared file
  # Each process restored its own data iterator state: it reads again the rows it read after step 2.
  after = _trace(runs, "trace-resumed", 2)
  before = _trace(runs, "trace-two", 2)
  for process in (0, 1):
    assert [line["rows"] for line in after[process]] == [line["rows"] for line in before[process][-2:]], process


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["raises", "killed"])
def test_a_failure_in_one_process_stops_the_other_with_an_error(runs, failure):
  """Process 1 raises as sft starts, or is SIGKILLed while writing sft's first checkpoint; process 0 must end soon
  after with an error (a collective with the gone process fails), and record the stage failed in run.json."""
  root = runs / f"failing-{failure}"
  _copy_before(runs / "two", root, "sft")
  started = time.monotonic()
  fault = ["--fail", "sft"] if failure == "raises" else ["--kill", "checkpoint:sft:2"]
  ended = _job(root, runs, until="sft", extra={1: fault})
  assert ended[1].returncode == (1 if failure == "raises" else -signal.SIGKILL), _tails(ended)
  assert ended[0].returncode != 0, _tails(ended)
  if failure == "raises":
    assert "InjectedFailure: injected failure in sft (process 1)" in ended[1].output
    assert "process 1 of 2 failed (InjectedFailure" in ended[1].output
  assert ended[0].at - ended[1].at < STOP_S, f"process 0 ended {ended[0].at - ended[1].at:.0f} s after process 1"
  # It ends itself (stop_job_on_error), or jax ends it when the coordination service reports process 1 gone.
  assert ("process 0 of 2 failed" in ended[0].output or "JAX distributed service detected fatal errors" in
          ended[0].output), ended[0].output[-3000:]
  record = directories.read_run(next((root / "runs").iterdir()))
  if failure == "raises":  # process 0's collective failed: it records that, pointing at the others' logs
    assert record["status"] == "failed" and record["stages"]["sft"]["status"] == "failed", record
    assert "another process of the job may have failed or died first" in record["error"], record["error"]
  else:  # the same, or jax ended process 0 first (then its record reads as interrupted)
    assert record["status"] in ("failed", "interrupted") and record["stages"]["sft"]["status"] == record["status"]
  print(f"{failure}: the job stopped {time.monotonic() - started:.1f} s after it started")
