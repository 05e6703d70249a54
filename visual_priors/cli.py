"""Command-line interface: `python -m visual_priors <command>`; each command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that each expose `add_parser(subparsers)`; the parser they add sets `func(args) -> int`.
# Imported lazily per invocation so `--help` stays fast and no command pays for another's imports.
COMMAND_MODULES = (
    "visual_priors.data.commands",
    "visual_priors.train.commands",
    "visual_priors.train.stage_commands",
    "visual_priors.analysis.commands",
    "visual_priors.run_commands",
    "visual_priors.experiments_commands",
)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m visual_priors",
      description="Data-mixture ablations of language pre-training, measured through visual priors.",
  )
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for module_name in COMMAND_MODULES:
    importlib.import_module(module_name).add_parser(subparsers)
  return parser


def main(argv: list[str] | None = None) -> int:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  args = build_parser().parse_args(argv)
  try:
    return int(args.func(args) or 0)
  except (ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
    # Bad input is reported as one clear line, not a traceback; rerun with VP_DEBUG=1 for one.
    if os.environ.get("VP_DEBUG"):
      raise
    print(f"error: {error}", file=sys.stderr)
    return 2
