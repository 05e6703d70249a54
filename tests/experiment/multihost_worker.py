"""One process of the simulated multi-host job of tests/experiment/test_multihost.py: the tiny SIGKILL experiment
(tests/faults/kill_run.py) through the runner, on a mesh over every process's emulated CPU devices.

    python multihost_worker.py ROOT STORE --devices 4 --processes 2 --process-id 0 --port 12345 [--kill POINT]
    python multihost_worker.py ROOT STORE --devices 8                                 # the 1-process reference

With --processes > 1 the process joins the job the way users' processes do: the JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID variables read by `sharding.maybe_initialize_distributed` (127.0.0.1:PORT).
`--kill KIND:STAGE[:ARG]` is a kill_run.py kill point (SIGKILL from inside); `--fail STAGE` makes this process
raise when STAGE starts, as a bug or a full disk in one host would. `--audit DIR` records in
`DIR/process_<i>.jsonl` this process's pid and each write of the runner's shared files (run.json, stage manifests,
cleared stages, locks, results), calling the real functions.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

TESTS = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS), str(TESTS / "faults")]  # tiny_run, kill_run

MESH = {"data": 2, "fsdp": 4, "tensor": 1}


class InjectedFailure(RuntimeError):
  """What --fail raises in one process."""


def _fail_at(stage: str) -> None:
  from fake_stages import replace_runs  # pylint: disable=import-outside-toplevel

  def failing(ctx):
    raise InjectedFailure(f"injected failure in {ctx.stage} (process {os.environ.get('JAX_PROCESS_ID', 0)})")

  replace_runs({stage: failing})


def _audit(directory: pathlib.Path, process: int) -> None:
  """Records the runner's writes of shared files (see the module docstring) around the real functions."""
  import contextlib  # pylint: disable=import-outside-toplevel
  import json  # pylint: disable=import-outside-toplevel

  from visual_priors.experiment import runner  # pylint: disable=import-outside-toplevel
  from visual_priors.experiment import directories  # pylint: disable=import-outside-toplevel

  directory.mkdir(parents=True, exist_ok=True)
  path = directory / f"process_{process}.jsonl"

  def record(**fields) -> None:
    with open(path, "a", encoding="utf-8") as handle:
      handle.write(json.dumps(fields) + "\n")

  record(call="start", pid=os.getpid())
  write_done, clear_stage, stage_lock = directories.write_done, directories.clear_stage, directories.stage_lock
  run_file_write, store_results = directories.RunFile.write, runner.store_results

  def done(target, manifest):
    record(call="manifest", stage=manifest["stage"], path=str(target))
    write_done(target, manifest)

  def clear(target):
    record(call="clear", path=str(target))
    clear_stage(target)

  @contextlib.contextmanager
  def lock(target, *args, **kwargs):
    record(call="lock", path=str(target), shared=bool(kwargs.get("shared")))
    with stage_lock(target, *args, **kwargs):
      yield

  def write(self):
    record(call="run.json", status=self.record["status"])
    run_file_write(self)

  def results(root, run_id, meta, rows, item_scores=None):
    record(call="results", rows=sum(len(stage_rows) for stage_rows in rows.values()))
    store_results(root, run_id, meta, rows, item_scores)

  directories.write_done, directories.clear_stage, directories.stage_lock = done, clear, lock
  directories.RunFile.write, runner.store_results = write, results


def write_vision_npz(path: pathlib.Path) -> pathlib.Path:
  """A randomly initialised vit-nano image tower as a big_vision .npz (the vision stage then trains nothing)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  from visual_priors.models.vision import ViT, get_encoder  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision.checkpoint import big_vision_key  # pylint: disable=import-outside-toplevel

  tower = ViT(get_encoder("vit-nano"), rngs=nnx.Rngs(0))
  np.savez(path, **{big_vision_key(key): np.asarray(variable[...])
                    for key, variable in nnx.to_flat_state(nnx.state(tower, nnx.Param))})
  return path


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("root", type=pathlib.Path)
  parser.add_argument("store", type=pathlib.Path)
  parser.add_argument("--devices", type=int, default=4, help="Emulated CPU devices of this process.")
  parser.add_argument("--processes", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--until", default="eval")
  parser.add_argument("--kill", default=None, metavar="KIND:STAGE[:ARG]")
  parser.add_argument("--fail", default=None, metavar="STAGE")
  parser.add_argument("--audit", type=pathlib.Path, default=None, metavar="DIR")
  parser.add_argument("--vision-npz", type=pathlib.Path, default=None,
                      help="A vit-nano .npz (`write_vision_npz`) for vision.kind checkpoint: no contrastive stage.")
  args = parser.parse_args()
  # Unoptimised XLA:CPU code compiles in about 2/3 of the time; every run compared here is built the same way.
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices} --xla_backend_optimization_level=0"
  os.environ["JAX_PLATFORMS"] = "cpu"
  if args.processes > 1:
    os.environ.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{args.port}", JAX_NUM_PROCESSES=str(args.processes),
                      JAX_PROCESS_ID=str(args.process_id),
                      JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{args.port}")  # jax's default [::] needs IPv6
  from absl import flags  # pylint: disable=import-outside-toplevel

  flags.FLAGS.mark_as_parsed()  # grain reads absl flags
  import kill_run  # pylint: disable=import-outside-toplevel
  from visual_priors.experiment import runner  # pylint: disable=import-outside-toplevel
  from visual_priors.models import sharding  # pylint: disable=import-outside-toplevel

  sharding.maybe_initialize_distributed()
  import jax  # pylint: disable=import-outside-toplevel

  assert jax.process_count() == args.processes and jax.device_count() == args.devices * args.processes
  config = kill_run.config(args.store)
  config.name = "faults/multihost"
  config.runtime.mesh = dict(MESH)
  if args.vision_npz:
    config.vision.kind, config.vision.encoder, config.vision.checkpoint = "checkpoint", "vit-nano", str(args.vision_npz)
  if args.audit:
    _audit(args.audit, args.process_id)
  if args.kill:
    kill_run._arm(args.kill)  # pylint: disable=protected-access
  if args.fail:
    _fail_at(args.fail)
  with sharding.stop_job_on_error():
    record = runner.run_experiment(config, root=args.root, until=args.until, log=print)
  print(f"process {args.process_id}: run {record.status}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
