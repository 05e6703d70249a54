"""One process of the simulated multi-host job of tests/run/test_multihost.py: the tiny SIGKILL experiment
(tests/faults/kill_run.py) through the runner, on a mesh over every process's emulated CPU devices.

    python multihost_worker.py ROOT STORE --devices 4 --processes 2 --process-id 0 --port 12345 [--kill POINT]
    python multihost_worker.py ROOT STORE --devices 8                                 # the 1-process reference

With --processes > 1 the process joins the job the way users' processes do: the JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID variables read by `sharding.maybe_initialize_distributed` (127.0.0.1:PORT).
`--kill KIND:STAGE[:ARG]` is a kill_run.py kill point (SIGKILL from inside); `--fail STAGE` makes this process
raise when STAGE starts, as a bug or a full disk in one host would.
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
    raise InjectedFailure(f"injected failure in {stage} (process {os.environ.get('JAX_PROCESS_ID')})")

  replace_runs({stage: failing})


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
  args = parser.parse_args()
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
  os.environ["JAX_PLATFORMS"] = "cpu"
  if args.processes > 1:
    os.environ.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{args.port}", JAX_NUM_PROCESSES=str(args.processes),
                      JAX_PROCESS_ID=str(args.process_id))
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
  if args.kill:
    kill_run._arm(args.kill)  # pylint: disable=protected-access
  if args.fail:
    _fail_at(args.fail)
  with sharding.stop_job_on_error():
    record = runner.run_experiment(config, root=args.root, until=args.until, log=print)
  print(f"status {record.status}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
