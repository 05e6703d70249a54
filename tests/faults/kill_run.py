"""A process of the SIGKILL faults: runs a tiny experiment on a root and kills itself with SIGKILL at a chosen point.

    python kill_run.py ROOT STORE --until sft --kill checkpoint:align:2

Kill points (KIND:STAGE[:ARG]): `step:S:N` once step N of stage S is logged (before its checkpoint), `checkpoint:S:N`
while step N's checkpoint is being written (before orbax commits it), `done:S` when stage S has finished its work but
before the runner marks it done, `time:S:SECONDS` that long after stage S started. SIGKILL from inside is what a
kill -9 from outside is: no handler, no cleanup. `config(store)` is the experiment, for the uninterrupted run.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sys
import threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: tiny_run

from tiny_run import TINY_RUN  # noqa: E402
import ml_collections  # noqa: E402

from visual_priors import experiment  # noqa: E402

TINY = {
    **TINY_RUN, "adapt.align.steps": 4, "adapt.align.seq_len": 192, "adapt.sft.steps": 4, "adapt.sft.seq_len": 192,
    "eval.benchmarks": ["gen_general", "gen_knowledge"], "eval.mle_bench": False, "eval.likelihood": False,
    "eval.language": False,
    "eval.alignment.enabled": False, "eval.probe.enabled": False, "eval.max_new_tokens": 4, "eval.limit": 2,
}
STEPS = {"pretrain": 6, "vision": 3, "align": 4, "sft": 4}  # each training stage's steps (a checkpoint every 2)


def config(store: pathlib.Path) -> ml_collections.ConfigDict:
  """The tiny experiment every SIGKILL case runs, on a segment store."""
  tiny = experiment.apply_local(experiment.base_config(), dict(TINY))
  tiny.name = "faults/sigkill"
  tiny.data.mixture = "code=0.5,web-crawl=0.5"
  tiny.data.store = str(store)
  tiny.pretrain.overrides = {"eval_max_batches": 1, "model": {"attention_impl": "xla"}}
  return tiny


def _die() -> None:
  sys.stdout.flush()
  os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str) -> None:
  """Patches the hooks the kill point needs (imports here: jax only in the process that runs)."""
  from fake_stages import current_runs, replace_runs  # pylint: disable=import-outside-toplevel
  from visual_priors.experiment import directories  # pylint: disable=import-outside-toplevel
  from visual_priors.train import checkpoint, metrics  # pylint: disable=import-outside-toplevel

  kind, stage, *rest = point.split(":")
  number = float(rest[0]) if rest else None
  current = {"stage": None}

  def wrap(name, execute):
    def run(ctx):
      current["stage"] = name
      if kind == "time" and name == stage:
        threading.Timer(number, _die).start()
      return execute(ctx)
    return run

  replace_runs({name: wrap(name, execute) for name, execute in current_runs().items()})
  if kind == "step":
    write_scalars = metrics.MetricWriter.write_scalars

    def logged(self, step, scalars):
      write_scalars(self, step, scalars)
      if current["stage"] == stage and step == number and "loss" in scalars:
        _die()

    metrics.MetricWriter.write_scalars = logged
  elif kind == "checkpoint":
    save = checkpoint.DataStateHandler.save

    def saving(self, directory, args):
      save(self, directory, args)
      if current["stage"] == stage and pathlib.Path(directory).parent.name.split(".")[0] == str(int(number)):
        _die()  # the data item is written, the step not committed

    checkpoint.DataStateHandler.save = saving
  elif kind == "done":
    write_done = directories.write_done

    def done(directory, manifest):
      if manifest["stage"] == stage:
        _die()
      write_done(directory, manifest)

    directories.write_done = done
  elif kind != "time":
    raise ValueError(f"unknown kill point {point!r}")


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("root", type=pathlib.Path)
  parser.add_argument("store", type=pathlib.Path)
  parser.add_argument("--until", default="eval")
  parser.add_argument("--kill", default=None, metavar="KIND:STAGE[:ARG]")
  args = parser.parse_args()
  import jax  # pylint: disable=import-outside-toplevel

  from visual_priors.experiment import runner  # pylint: disable=import-outside-toplevel

  if args.kill:
    _arm(args.kill)
  runner.run_experiment(config(args.store), root=args.root, until=args.until, devices=jax.devices()[:1], log=print)
  return 0


if __name__ == "__main__":
  sys.exit(main())
