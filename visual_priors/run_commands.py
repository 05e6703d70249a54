"""`python -m visual_priors {run, grid, demo, runs}`: run one experiment, a filtered grid of them, or the demo;
list the runs of a root with their status.

    python -m visual_priors run mix/mix6 --root runs --set pretrain.token_budget=5e9 --until sft
    python -m visual_priors grid --filter '^demo/' --root runs
    python -m visual_priors demo [--root runs/demo] [--reduced]
    python -m visual_priors runs --root runs
"""

from __future__ import annotations

import json
import pathlib


def add_parser(subparsers) -> None:
  run = subparsers.add_parser("run", help="Run one named experiment (finished stages are reused).")
  run.add_argument("name", help="A registered experiment (e.g. mix/mix6) or FILE:ARG (e.g. mixes:mix=mix3,local).")
  _add_common(run)
  run.add_argument("--force-from", default=None, metavar="STAGE",
                   help="Redo this run's stages from STAGE onwards (implies --force; default: all of them).")
  run.set_defaults(func=_run)

  grid = subparsers.add_parser("grid", help="Run every registered experiment matching --filter, one after another.")
  grid.add_argument("--filter", default=None, help="A regex searched in experiment names (default: all).")
  grid.add_argument("--stop-on-error", action="store_true", help="Stop at the first failed run.")
  _add_common(grid)
  grid.set_defaults(func=_grid)

  demo = subparsers.add_parser("demo", help="Build demo-sized data, run the nano mixture ablation, write a report.")
  demo.add_argument("--root", default="runs/demo", help="Where stages, runs, results, data and the report go.")
  demo.add_argument("--reduced", action="store_true", help="The CI-sized variant (about a minute).")
  demo.set_defaults(func=_demo)

  runs = subparsers.add_parser("runs", help="List the runs of a root: status (a killed run shows as interrupted), "
                                            "times, the stage at fault.")
  runs.add_argument("--root", default="runs", help="Runs root (default: runs).")
  runs.add_argument("--json", action="store_true", help="Print each run's record (run.json as it stands) as JSON.")
  runs.set_defaults(func=_runs)


def _add_common(parser) -> None:
  parser.add_argument("--root", default="runs", help="Runs root: stages/, runs/, results/ (default: runs).")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="Experiment config override, repeatable: pretrain.token_budget=5e9, seed=1, ...")
  parser.add_argument("--force", action="store_true", help="Redo this run's stages even if done.")
  parser.add_argument("--until", default=None, metavar="STAGE", help="Stop after this stage (e.g. sft).")


def _run(args) -> int:
  from visual_priors import registry, runner  # pylint: disable=import-outside-toplevel
  from visual_priors.models import sharding  # pylint: disable=import-outside-toplevel

  sharding.maybe_initialize_distributed()  # multi-host (TPU slice, SLURM...): before the first mesh

  config = registry.get_experiment(args.name, args.set)
  with sharding.stop_job_on_error():  # a failing process of a multi-host job stops the others, not hangs them
    record = runner.run_experiment(config, root=pathlib.Path(args.root), force=args.force or bool(args.force_from),
                                   force_from=args.force_from, until=args.until)
  print(json.dumps({"run_id": record.run_id, "status": record.status, "run_dir": str(record.run_dir),
                    "seconds": round(record.seconds, 1),
                    "stages": {name: stage["status"] for name, stage in record.stages.items()}}, indent=2))
  return 0


def _grid(args) -> int:
  from visual_priors import registry  # pylint: disable=import-outside-toplevel
  from visual_priors.models import sharding  # pylint: disable=import-outside-toplevel
  from visual_priors.run import grid  # pylint: disable=import-outside-toplevel

  sharding.maybe_initialize_distributed()

  with sharding.stop_job_on_error():
    rows = grid.grid(registry.experiment_names(args.filter), root=pathlib.Path(args.root),
                     continue_on_error=not args.stop_on_error, overrides=args.set, until=args.until,
                     force=args.force)
  return 1 if any(row.status in ("failed", "interrupted") for row in rows) else 0


def _demo(args) -> int:
  from visual_priors import demo  # pylint: disable=import-outside-toplevel

  result = demo.run_demo(pathlib.Path(args.root), reduced=args.reduced)
  print(f"report: {result.report}")
  return 1 if result.failed else 0


def _runs(args) -> int:
  from visual_priors.run import directories  # pylint: disable=import-outside-toplevel

  runs_dir = pathlib.Path(args.root) / "runs"
  if not runs_dir.is_dir():
    raise FileNotFoundError(f"No runs under {pathlib.Path(args.root).absolute()} (no runs/ folder); pass --root.")
  records = {}
  for directory in sorted(runs_dir.iterdir()):
    if (directory / directories.RUN_FILE).is_file():
      try:
        records[directory.name] = directories.read_run(directory)
      except ValueError as error:
        records[directory.name] = {"status": "unreadable", "error": str(error)}
  if args.json:
    print(json.dumps(records, indent=2))
    return 0
  print("| run | status | started | finished | stage | error |")
  print("|---|---|---|---|---|---|")
  for run_id, record in records.items():
    stages = record.get("stages") or {}
    at = next((name for name, stage in stages.items() if stage.get("status") in ("running", "interrupted", "failed")),
              "")
    error = (record.get("error") or "").splitlines()[0][:120] if record.get("error") else ""
    print(f"| {run_id} | {record.get('status')} | {record.get('started') or ''} | {record.get('finished') or ''} "
          f"| {at} | {error} |")
  return 0
