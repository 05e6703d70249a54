"""`python -m visual_priors {list, show, run, grid, demo, runs}`: the named experiments as a table and one resolved
in full; run one experiment, a filtered grid of them, or the demo; list the runs of a root with their status.

    python -m visual_priors list [--filter REGEX] [--experiments DIR]
    python -m visual_priors show NAME [--set KEY=VALUE ...] [--chip "TPU v5p"] [--mfu 0.4] [--experiments DIR]
    python -m visual_priors run mix/mix6 --root runs --set pretrain.token_budget=5e9 --until sft
    python -m visual_priors grid --filter '^demo/' --root runs
    python -m visual_priors demo [--root runs/demo] [--reduced]
    python -m visual_priors runs --root runs

`list` prints name, family, scale, tokens, mixture and the mixture's reasoning and visual shares (the
paper's published per-source rates for source mixtures; the pinned proportions of category mixtures;
"-" where unknown). `show` prints the resolved config as plain YAML, the run id, each stage's key and
upstream, the shares, and the estimated compute (`cost`) with its assumptions.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import yaml

from visual_priors.experiment import graph, registry, schema
from visual_priors.experiment.cost import DEFAULT_CHIP, DEFAULT_MFU, estimate, format_estimate


def add_parser(subparsers) -> None:
  _add_catalog(subparsers)
  run = subparsers.add_parser("run", help="Run one named experiment (finished stages are reused).")
  run.add_argument("name", help="A registered experiment (e.g. mix/mix6) or FILE:ARG (e.g. mixes:mix=mix3,local).")
  _add_common(run)
  run.add_argument("--force-from", default=None, metavar="STAGE",
                   help="Redo this run's stages from STAGE onwards (implies --force; default: all of them).")
  run.set_defaults(func=_run)

  grid = subparsers.add_parser("grid", help="Run every registered experiment matching --filter, one after another.")
  grid.add_argument("--filter", default=None, help="A regex searched in experiment names (default: all).")
  grid.add_argument("--stop-on-error", action="store_true", help="Stop at the first failed run.")
  grid.add_argument("--seeds", type=_seeds, default=(), metavar="S,S,...",
                    help="The seed axis: run every experiment once per seed (e.g. 0,1,2), seed by seed.")
  _add_common(grid)
  grid.set_defaults(func=_grid)

  demo = subparsers.add_parser("demo", help="Build demo-sized data, run the nano mixture ablation, write a report.")
  demo.add_argument("--root", default="runs/demo", help="Where stages, runs, results, data and the report go.")
  demo.add_argument("--reduced", action="store_true", help="The CI-sized variant (about a minute).")
  demo.add_argument("--seeds", type=_seeds, default=None, metavar="S,S,...",
                    help="Run every demo experiment once per seed (default: 0,1; reduced: 0).")
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


def _seeds(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(part) for part in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers (e.g. 0,1), got {text!r}") from None


def _run(args) -> int:
  from visual_priors.experiment import runner  # pylint: disable=import-outside-toplevel
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
  from visual_priors.models import sharding  # pylint: disable=import-outside-toplevel
  from visual_priors.experiment import grid  # pylint: disable=import-outside-toplevel

  sharding.maybe_initialize_distributed()

  with sharding.stop_job_on_error():
    rows = grid.grid(registry.experiment_names(args.filter), root=pathlib.Path(args.root),
                     continue_on_error=not args.stop_on_error, overrides=args.set, seeds=args.seeds,
                     until=args.until, force=args.force)
  return 1 if any(row.status in ("failed", "interrupted") for row in rows) else 0


def _demo(args) -> int:
  from visual_priors import demo  # pylint: disable=import-outside-toplevel

  result = demo.run_demo(pathlib.Path(args.root), reduced=args.reduced, seeds=args.seeds)
  print(f"report: {result.report}")
  return 1 if result.failed else 0


def _runs(args) -> int:
  from visual_priors.experiment import directories  # pylint: disable=import-outside-toplevel

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


# --- list, show ----------------------------------------------------------------------------------------------

COLUMNS = ("name", "family", "scale", "tokens", "mixture", "reasoning %", "visual %")


def _tokens(value: int) -> str:
  if value == 0:
    return "0"
  for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
    if value >= factor:
      return f"{value / factor:.4g}{suffix}"
  return str(value)


def _percent(value: float | None) -> str:
  return "-" if value is None else f"{value * 100:.1f}"


def list_rows(filter_: str | None = None, directory: str | None = None) -> list[tuple[str, ...]]:
  """One row of COLUMNS per matching experiment."""
  rows = []
  for name in registry.experiment_names(filter_, directory=directory):
    meta = registry.get_experiment(name, directory=directory).meta
    rows.append((name, meta.family, meta.scale, _tokens(meta.tokens), meta.mixture,
                 _percent(meta.reasoning_share), _percent(meta.visual_share)))
  return rows


def format_table(rows: Sequence[Sequence[str]], columns: Sequence[str] = COLUMNS) -> str:
  """Left-aligned text columns with a header line."""
  widths = [max(len(str(c)) for c in column) for column in zip(columns, *rows)]
  lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in (columns, *rows)]
  return "\n".join(lines)


def plain(value: Any) -> Any:
  """`value` as plain YAML/JSON data: mappings -> dicts, tuples and lists -> lists, other objects -> str."""
  if isinstance(value, (Mapping, ml_collections.ConfigDict)):
    return {str(key): plain(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [plain(item) for item in value]
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return str(value)


def config_yaml(config: ml_collections.ConfigDict) -> str:
  """The config's values as plain YAML, in schema order (no Python tags or ConfigDict internals)."""
  return yaml.safe_dump(plain(config.to_dict()), sort_keys=False, default_flow_style=False, width=1000)


def describe(config: ml_collections.ConfigDict, *, chip: str, mfu: float) -> str:
  """The text `show` prints for a finalized config."""
  identities = graph.stage_identities(config)
  meta = config.meta
  lines = [f"# {config.name}", config.description, "", "## Config", config_yaml(config).rstrip(), "",
           f"## Run id  {graph.run_id(config)}", "", "## Stages (key <- upstream)"]
  for stage, identity in identities.items():
    upstream = ", ".join(f"{u} {identities[u].key}" for u in identity.upstream) or "-"
    lines.append(f"{stage:<9} {identity.key}  <- {upstream}")
  lines += ["", "## Mixture", f"{meta.mixture}: reasoning {_percent(meta.reasoning_share)}%, visual "
            f"{_percent(meta.visual_share)}% (source mixtures: published per-source rates; category "
            "mixtures: the proportions the spec pins; '-' = not known before labelling)"]
  lines += ["", "## Estimated cost", format_estimate(estimate(config, chip=chip, mfu=mfu))]
  problems = schema.missing_files(config)
  if problems:
    lines += ["", "## Before it can run"] + [f"- {p}" for p in problems]
  return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
  rows = list_rows(args.filter, args.experiments)
  if not rows:
    raise ValueError(f"No experiment matches --filter {args.filter!r}; `python -m visual_priors list` shows all.")
  print(format_table(rows))
  print(f"{len(rows)} experiment(s)")
  return 0


def _show(args: argparse.Namespace) -> int:
  config = registry.get_experiment(args.name, args.set, directory=args.experiments)
  print(describe(config, chip=args.chip, mfu=args.mfu))
  return 0


def _add_catalog(subparsers) -> None:
  listing = subparsers.add_parser("list", help="List the named experiments.")
  listing.add_argument("--filter", default=None, help="A regex searched in experiment names (e.g. '^mix/').")
  listing.set_defaults(func=_list)
  show = subparsers.add_parser("show", help="Show one experiment: config, run id, stage keys, shares, cost.")
  show.add_argument("name", help="A registered experiment (e.g. mix/mix6) or FILE:ARG (e.g. mixes:mix=mix3,local).")
  show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="Override a config field (repeatable), e.g. --set pretrain.peak_lr=1e-4.")
  show.add_argument("--chip", default=DEFAULT_CHIP, help=f"Accelerator for the cost estimate (default {DEFAULT_CHIP}).")
  show.add_argument("--mfu", type=float, default=DEFAULT_MFU, help=f"Assumed MFU (default {DEFAULT_MFU}).")
  show.set_defaults(func=_show)
  for parser in (listing, show):
    parser.add_argument("--experiments", default=None, metavar="DIR",
                        help=f"The experiments folder (default: ${registry.ENV_VAR}, else the checkout's).")
