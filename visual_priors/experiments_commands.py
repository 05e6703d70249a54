"""The `list` and `show` commands: the named experiments as a table, and one experiment resolved in full.

  python -m visual_priors list [--filter REGEX] [--experiments DIR]
  python -m visual_priors show NAME [--set KEY=VALUE ...] [--chip "TPU v5p"] [--mfu 0.4] [--experiments DIR]

`list` prints name, family, scale, tokens, mixture and the mixture's reasoning and visual shares (the
paper's published per-source rates for source mixtures; the pinned proportions of category mixtures;
"-" where unknown). `show` prints the resolved config as plain YAML, the run id, each stage's key and
upstream, the shares, and the estimated compute (visual_priors.cost) with its assumptions.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import yaml

from visual_priors import config as config_lib
from visual_priors import registry

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
  from visual_priors import cost  # pylint: disable=import-outside-toplevel
  identities = config_lib.stage_identities(config)
  meta = config.meta
  lines = [f"# {config.name}", config.description, "", "## Config", config_yaml(config).rstrip(), "",
           f"## Run id  {config_lib.run_id(config)}", "", "## Stages (key <- upstream)"]
  for stage, identity in identities.items():
    upstream = ", ".join(f"{u} {identities[u].key}" for u in identity.upstream) or "-"
    lines.append(f"{stage:<9} {identity.key}  <- {upstream}")
  lines += ["", "## Mixture", f"{meta.mixture}: reasoning {_percent(meta.reasoning_share)}%, visual "
            f"{_percent(meta.visual_share)}% (source mixtures: published per-source rates; category "
            "mixtures: the proportions the spec pins; '-' = not known before labelling)"]
  lines += ["", "## Estimated cost", cost.format_estimate(cost.estimate(config, chip=chip, mfu=mfu))]
  problems = config_lib.missing_files(config)
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


def add_parser(subparsers) -> None:
  from visual_priors.cost import DEFAULT_CHIP, DEFAULT_MFU  # pylint: disable=import-outside-toplevel
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
