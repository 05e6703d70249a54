"""Command-line interface: `python -m visual_priors <command>`; each command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from visual_priors import console

# Modules that each expose `add_parser(subparsers)`; the parser they add sets `func(args) -> int`.
# Imported lazily per invocation so `--help` stays fast and no command pays for another's imports.
COMMAND_MODULES = (
    "visual_priors.data.commands",
    "visual_priors.train.commands",
    "visual_priors.analysis.commands",
    "visual_priors.experiment.commands",
    "visual_priors.interop.commands",
)

DEBUG_ENV = "VP_DEBUG"  # =1: a failure shows its full traceback, as --debug does
# Failures a user can act on (bad input, a missing or damaged file, a bad config value, a missing dependency):
# one `error:` line, exit code 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError)
EXIT_USER_ERROR = 2
# A multi-line message is joined into one line up to this length; a longer one keeps its first lines.
ONE_LINE_CHARS = 400
MAX_LINES = 12


def _add_global_flags(parser: argparse.ArgumentParser, default) -> None:
  parser.add_argument("--debug", action="store_true", default=default,
                      help=f"Show the full traceback of a failure (or set {DEBUG_ENV}=1).")
  parser.add_argument("--verbose", action="store_true", default=default,
                      help="Let libraries (TensorFlow, JAX, absl) log as they normally do.")


def _subparsers(parser: argparse.ArgumentParser):
  for action in parser._actions:  # pylint: disable=protected-access
    if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
      yield from action.choices.values()


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m visual_priors",
      description="Data-mixture ablations of language pre-training, measured through visual priors.",
  )
  _add_global_flags(parser, default=False)
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for module_name in COMMAND_MODULES:
    importlib.import_module(module_name).add_parser(subparsers)
  # Also accepted after the command (`run NAME --debug`); SUPPRESS keeps a subcommand from resetting the flag.
  seen, pending = set(), list(_subparsers(parser))
  while pending:
    sub = pending.pop()
    if id(sub) not in seen:
      seen.add(id(sub))
      _add_global_flags(sub, default=argparse.SUPPRESS)
      pending += _subparsers(sub)
  return parser


def _join(lines: list[str]) -> str:
  text = lines[0]
  for line in lines[1:]:
    text += (" " if text[-1] in ":;,.-([" or line.startswith(("-", "...")) else "; ") + line
  return text


def error_message(error: BaseException) -> str:
  """What `error:` says for a failure: its message on one line where that stays readable."""
  if isinstance(error, KeyError) and len(error.args) == 1:
    text = str(error.args[0])  # str(KeyError) quotes its argument
  elif isinstance(error, OSError) and error.filename is not None and error.strerror:
    text = f"{error.filename}: {error.strerror}" + (f" ({error.filename2})" if error.filename2 else "")
  else:
    text = str(error)
  if isinstance(error, ModuleNotFoundError):
    text += "; install the missing package (pip install -e . in the checkout installs every dependency)"
  lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(error).__name__]
  joined = _join(lines)
  if len(joined) <= ONE_LINE_CHARS:
    return joined
  shown = lines[:MAX_LINES]
  if len(lines) > MAX_LINES:
    shown.append(f"... {len(lines) - MAX_LINES} more line(s); --debug shows all")
  return "\n  ".join(shown)


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  if args.verbose:
    os.environ[console.VERBOSE_ENV] = "1"
  console.quiet_libraries()
  console.leave_out_absent_tpus()
  debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
  try:
    return int(args.func(args) or 0)
  except USER_ERRORS as error:
    # Bad input is reported as one clear line, not a traceback; --debug (or VP_DEBUG=1) shows the traceback.
    if debug:
      raise
    hint = " (rerun with --debug for the traceback)" if isinstance(error, (TypeError, RuntimeError)) else ""
    print(f"error: {error_message(error)}{hint}", file=sys.stderr)
    return EXIT_USER_ERROR
  except KeyboardInterrupt:
    if debug:
      raise
    print("interrupted", file=sys.stderr)
    return 130
