"""A process of the concurrent-runs faults: runs a fake-executor experiment on a root (see test_concurrent_runs)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import ml_collections

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: fake_stages

from fake_stages import replace_runs  # noqa: E402
from visual_priors import experiment  # noqa: E402
from visual_priors.experiment import pretrain, runner  # noqa: E402
from visual_priors.experiment.stage import StageContext  # noqa: E402

DELAYS = {"align": 0.5, "sft": 1.5}  # seconds a stage takes, reading its upstream stages all along


def _config() -> ml_collections.ConfigDict:
  config = experiment.apply_local(experiment.base_config(), {})
  config.name = "faults/concurrent"
  config.data.mixture = "mix6"
  return config


def _no_store(spec):
  raise FileNotFoundError(f"no segment store {spec!r} here")


def _wait_for(path: pathlib.Path, seconds: float = 60) -> None:
  deadline = time.monotonic() + seconds
  while not path.exists():
    if time.monotonic() > deadline:
      raise TimeoutError(f"{path} never appeared")
    time.sleep(0.02)


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("root", type=pathlib.Path)
  parser.add_argument("name")
  parser.add_argument("--force-from")
  parser.add_argument("--fail", help="a stage this process's executor fails")
  parser.add_argument("--after", type=pathlib.Path, help="a file to wait for before running")
  parser.add_argument("--sft-seconds", type=float, default=DELAYS["sft"], help="how long the sft stage takes")
  args = parser.parse_args()
  DELAYS["sft"] = args.sft_seconds
  events = args.root.parent / "events.jsonl"

  def event(stage: str, what: str) -> None:
    with open(events, "a", encoding="utf-8") as handle:
      handle.write(json.dumps({"process": args.name, "pid": os.getpid(), "stage": stage, "event": what}) + "\n")
    (args.root.parent / f"{args.name}.{stage}.{what}").touch()

  def make(stage: str):
    def execute(ctx: StageContext):
      event(stage, "started")
      deadline = time.monotonic() + DELAYS.get(stage, 0.05)
      while True:  # what a trainer does: read its upstream runs while it runs (manifests, then checkpoints)
        for upstream, outputs in ctx.outputs.items():
          done = pathlib.Path(outputs["run"]) / "done.txt"
          if not done.is_file():
            raise FileNotFoundError(f"{stage} read {upstream}: {done} is gone")
        if time.monotonic() > deadline:
          break
        time.sleep(0.02)
      if stage == args.fail:
        raise RuntimeError(f"{args.name} failed {stage} on purpose")
      ctx.out_dir.mkdir(parents=True, exist_ok=True)
      (ctx.out_dir / "done.txt").write_text(f"{stage} by {args.name}")
      event(stage, "done")
      return {"run": str(ctx.out_dir)}
    return execute

  replace_runs({stage: make(stage) for stage in experiment.STAGES})
  pretrain.preflight = lambda config: None
  runner.open_store = _no_store  # hermetic: whatever `data build` left aside
  if args.after:
    _wait_for(args.after)
  try:
    runner.run_experiment(_config(), root=args.root, force_from=args.force_from, until="sft", log=print)
  except Exception as error:  # pylint: disable=broad-except
    print(f"FAILED {type(error).__name__}: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
