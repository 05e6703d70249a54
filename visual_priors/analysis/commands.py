"""`python -m visual_priors report`: the HTML report over the runs of one or more results directories."""

from __future__ import annotations

import fnmatch
import pathlib


def add_parser(subparsers) -> None:
  report = subparsers.add_parser(
      "report", help="Write a self-contained HTML report (tables, plots, notes) over stored results.",
      description="Reads one or more results directories (ResultsStore roots, e.g. <root>/results) and writes "
                  "one HTML file with the per-run tables, the perception-vs-reasoning analysis and the plots.")
  report.add_argument("--results", nargs="+", required=True, metavar="DIR", help="Results directories to merge.")
  report.add_argument("--out", required=True, help="Output HTML file (written atomically).")
  report.add_argument("--runs", action="append", default=[], metavar="GLOB",
                      help="Keep only runs whose id or name matches this glob (repeatable), e.g. 'mix/*'.")
  report.add_argument("--title", default="visual_priors report")
  report.add_argument("--notes-file", default=None, help="A text file whose content becomes the Notes section.")
  report.add_argument("--lm-eval-json", default=None, metavar="DIR",
                      help="Also write each run's accuracies as lm-evaluation-harness-style JSON (acc, acc_stderr "
                           "per task) into DIR/<run>.json.")
  report.set_defaults(func=_report)


def select_runs(results, patterns: list[str]):
  """The runs whose id or metadata name matches any glob; an error if a pattern matches nothing."""
  if not patterns:
    return results
  names = dict(zip(results.runs["run"], results.runs["name"]))
  runs = sorted(set(results.frame["run"]) | set(results.runs["run"]))
  keep = set()
  for pattern in patterns:
    matched = {r for r in runs if fnmatch.fnmatchcase(r, pattern) or fnmatch.fnmatchcase(str(names.get(r)), pattern)}
    if not matched:
      sample = ", ".join(runs[:8]) + (" ..." if len(runs) > 8 else "")
      raise ValueError(f"--runs {pattern!r} matches no run id or name; runs: {sample or 'none'}.")
    keep |= matched
  return results.select(keep)


def _report(args) -> int:
  from visual_priors.analysis import report  # noqa: PLC0415 (matplotlib only when this command runs)
  from visual_priors.analysis.results import load_results  # noqa: PLC0415

  notes = pathlib.Path(args.notes_file).read_text(encoding="utf-8") if args.notes_file else None
  results = select_runs(load_results(args.results), args.runs)
  path = report.write_report(results, args.out, title=args.title, notes=notes)
  n_runs = len(set(results.frame["run"]) | set(results.runs["run"]))
  print(f"Wrote {path} ({n_runs} runs, {path.stat().st_size / 1e6:.1f} MB).")
  if args.lm_eval_json:
    written = report.write_lm_eval_json(results, args.lm_eval_json)
    print(f"Wrote {len(written)} lm-eval-style JSON file(s) into {args.lm_eval_json}.")
  return 0
