"""The results store: evaluation rows and run metadata per run, on disk as small JSON files.

Layout under the store's root (one directory per run, so runs written by different processes never touch
the same file):

    <root>/<run>/meta.json          the run's metadata (`META_KEYS`, missing keys are None)
    <root>/<run>/<stage>.jsonl      that stage's result rows, one JSON object a line, sorted by key
    <root>/<run>/items/<stage>.jsonl  per-question VQA scores of that stage (for intervals and paired tests)

A row is {"benchmark", "group", "metric", "value", "count"}; its key is (run, stage, benchmark, metric).
`put` replaces the rows whose key it writes and keeps the others, so re-running an evaluator is idempotent.
Every file is replaced atomically (write to a temporary sibling, then rename), under a per-run lock file so
two writers of one run do not lose each other's rows.

Several stores can be read together (`load_results([store_a, store_b])`): a report over runs kept in
several roots. The same key with different values in two roots is an error, not a silent choice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import numbers
import os
import pathlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from visual_priors.data.cache import read_json, read_jsonl, write_json_atomic, write_text_atomic
from visual_priors.names import closest

ROW_COLUMNS = ("run", "stage", "benchmark", "group", "metric", "value", "count")
KEY_COLUMNS = ("run", "stage", "benchmark", "metric")
ROW_FIELDS = ("benchmark", "group", "metric", "value", "count")
META_KEYS = ("name", "family", "scale", "params", "tokens", "mixture", "source", "category", "proportion",
             "reasoning_share", "visual_share", "encoder", "sft_variant", "blind", "seed")
FAMILIES = ("scale", "source", "category", "grid", "mix", "encoder", "sft_data", "blind", "scaleup", "demo",
            "custom")
META_FILE = "meta.json"
ITEMS_DIR = "items"  # <run>/items/<stage>.jsonl: per-question scores
ITEM_COLUMNS = ("run", "stage", "benchmark", "id", "group", "blind", "score")
ROWS_SUFFIX = ".jsonl"
# What an error about a damaged file of the store tells the user to do.
_REWRITE = "delete it; running the experiment again (finished stages are reused) writes it again"
LOCK_FILE = ".lock"
# Run and stage names become file names: letters, digits and ._- (no separators, no leading dot).
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+-]*$")


def _check_name(value: Any, what: str) -> str:
  if not isinstance(value, str) or not _NAME_RE.match(value):
    raise ValueError(f"Bad {what} name {value!r}: it names a file in the results store, so it must be a "
                     "non-empty string of letters, digits and '._=+-' not starting with '.'.")
  return value


def _finite_number(value: Any, where: str) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f"{where}: value {value!r} is not a number.")
  number = float(value)
  if not math.isfinite(number):
    raise ValueError(f"{where}: value is {number!r}; result values must be finite numbers.")
  return number


def validate_row(row: Mapping[str, Any], *, run: str, stage: str) -> dict[str, Any]:
  """A clean copy of one result row, or a ValueError naming the row and what is wrong with it."""
  if not isinstance(row, Mapping):
    raise ValueError(f"Result row for run {run!r} stage {stage!r} is a {type(row).__name__}, not a mapping: "
                     f"{row!r}.")
  where = f"Result row {dict(row)!r} (run {run!r}, stage {stage!r})"
  for field, expected in (("run", run), ("stage", stage)):
    if field in row and row[field] != expected:
      raise ValueError(f"{where}: its {field} {row[field]!r} differs from the {field} it is put under "
                       f"({expected!r}).")
  unknown = sorted(set(row) - set(ROW_FIELDS) - {"run", "stage"})
  if unknown:
    hints = {k: closest(k, ROW_FIELDS, n=1) for k in unknown}
    raise ValueError(f"{where}: unknown field(s) {unknown} (closest: {hints}); rows have {list(ROW_FIELDS)}.")
  for field in ("benchmark", "metric"):
    if field not in row:
      raise ValueError(f"{where}: missing {field!r}.")
    if not isinstance(row[field], str) or not row[field].strip():
      raise ValueError(f"{where}: {field} must be a non-empty string, got {row[field]!r}.")
  if "value" not in row:
    raise ValueError(f"{where}: missing 'value'.")
  group = row.get("group")
  if group is not None and (not isinstance(group, str) or not group.strip()):
    raise ValueError(f"{where}: group must be None or a non-empty string, got {group!r}.")
  count = row.get("count")
  if count is not None:
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or int(count) < 0:
      raise ValueError(f"{where}: count must be None or an integer >= 0, got {count!r}.")
    count = int(count)
  return {"benchmark": row["benchmark"], "group": group, "metric": row["metric"],
          "value": _finite_number(row["value"], where), "count": count}


def _json_scalar(value: Any, where: str) -> Any:
  """Meta values are JSON scalars; numpy scalars become Python ones, non-finite floats are refused."""
  if value is None or isinstance(value, (str, bool)):
    return value
  if isinstance(value, np.bool_):
    return bool(value)
  if isinstance(value, numbers.Integral):
    return int(value)
  if isinstance(value, numbers.Real):
    return _finite_number(value, where)
  raise ValueError(f"{where}: {value!r} ({type(value).__name__}) is not a string, number, bool or None.")


def validate_meta(meta: Mapping[str, Any], *, run: str) -> dict[str, Any]:
  """All `META_KEYS` (absent ones None); unknown keys and bad families are errors naming the run."""
  unknown = sorted(set(meta) - set(META_KEYS))
  if unknown:
    hints = {k: closest(k, META_KEYS, n=1) for k in unknown}
    raise ValueError(f"Run {run!r} metadata has unknown key(s) {unknown} (closest: {hints}); "
                     f"valid keys: {list(META_KEYS)}.")
  clean = {k: _json_scalar(meta.get(k), f"Run {run!r} metadata {k!r}") for k in META_KEYS}
  family = clean["family"]
  if family is not None and family not in FAMILIES:
    near = closest(str(family), FAMILIES)
    raise ValueError(f"Run {run!r} metadata family {family!r} is unknown (closest: {near}); "
                     f"families: {list(FAMILIES)}.")
  return clean


class ResultsStore:
  """Result rows and run metadata under one root directory (see the module docstring for the layout)."""

  def __init__(self, root: str | os.PathLike[str]):
    self.root = pathlib.Path(root).expanduser()

  def __repr__(self) -> str:
    return f"ResultsStore({str(self.root)!r})"

  def _run_dir(self, run: str) -> pathlib.Path:
    return self.root / _check_name(run, "run")

  @contextlib.contextmanager
  def _locked(self, run: str) -> Iterator[pathlib.Path]:
    run_dir = self._run_dir(run)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      try:
        yield run_dir
      finally:
        fcntl.flock(lock, fcntl.LOCK_UN)

  def put(self, run: str, stage: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Stores rows of one run and stage, replacing stored rows with the same (benchmark, metric)."""
    _check_name(run, "run")
    _check_name(stage, "stage")
    new = {}
    for row in rows:
      clean = validate_row(row, run=run, stage=stage)
      key = (clean["benchmark"], clean["metric"])
      if key in new and new[key] != clean:
        raise ValueError(f"Run {run!r} stage {stage!r}: two different rows for benchmark {key[0]!r} metric "
                         f"{key[1]!r} in one put: {new[key]} and {clean}.")
      new[key] = clean
    with self._locked(run) as run_dir:
      path = run_dir / f"{stage}{ROWS_SUFFIX}"
      merged = {(r["benchmark"], r["metric"]): r for r in _read_rows(path)} if path.exists() else {}
      merged.update(new)
      lines = [json.dumps(merged[key], sort_keys=True) for key in sorted(merged)]
      write_text_atomic(path, "".join(line + "\n" for line in lines))

  def put_items(self, run: str, stage: str, scores: Iterable[Mapping[str, Any]]) -> None:
    """Stores (replaces) the per-question scores of one run and stage: records with "benchmark", "id", "group",
    "blind" and "score" (0..1), as `eval.vqa` writes them; what paired comparisons and intervals resample."""
    _check_name(stage, "stage")
    records = {}
    for record in scores:
      where = f"run {run!r} stage {stage!r} item {record.get('benchmark')!r}/{record.get('id')!r}"
      score = _finite_number(record.get("score"), where)
      if not 0 <= score <= 1:
        raise ValueError(f"{where}: score {score} is outside [0, 1].")
      key = (str(record["benchmark"]), str(record["id"]), bool(record.get("blind", False)))
      records[key] = {"benchmark": key[0], "id": key[1], "blind": key[2], "group": record.get("group"),
                      "score": score}
    with self._locked(run) as run_dir:
      lines = [json.dumps(records[key], sort_keys=True) for key in sorted(records)]
      write_text_atomic(run_dir / ITEMS_DIR / f"{stage}{ROWS_SUFFIX}", "".join(line + "\n" for line in lines))

  def items(self) -> pd.DataFrame:
    """Every stored per-question score: columns run, stage, benchmark, id, group, blind, score."""
    records = []
    for run in self.run_names():
      for path in sorted((self.root / run / ITEMS_DIR).glob(f"*{ROWS_SUFFIX}")):
        stage = path.name[:-len(ROWS_SUFFIX)]
        records.extend({"run": run, "stage": stage, **record} for record in read_jsonl(path, _REWRITE))
    return pd.DataFrame.from_records(records, columns=list(ITEM_COLUMNS))

  def put_run(self, run: str, meta: Mapping[str, Any]) -> None:
    """Stores (replaces) the metadata of a run."""
    clean = validate_meta(meta, run=_check_name(run, "run"))
    with self._locked(run) as run_dir:
      write_json_atomic(run_dir / META_FILE, clean)

  def run_names(self) -> list[str]:
    """Runs with a metadata file or at least one stage file, sorted."""
    if not self.root.is_dir():
      return []
    return sorted(p.name for p in self.root.iterdir()
                  if p.is_dir() and not p.name.startswith(".")
                  and ((p / META_FILE).exists() or any(p.glob(f"*{ROWS_SUFFIX}"))))

  def frame(self) -> pd.DataFrame:
    """Every stored row: columns run, stage, benchmark, group, metric, value, count."""
    records = []
    for run in self.run_names():
      for path in sorted((self.root / run).glob(f"*{ROWS_SUFFIX}")):
        stage = path.name[:-len(ROWS_SUFFIX)]
        records.extend({"run": run, "stage": stage, **row} for row in _read_rows(path))
    return rows_frame(records)

  def runs(self) -> pd.DataFrame:
    """One row per run (runs with rows but no metadata get None meta): columns run + `META_KEYS`."""
    records = []
    for run in self.run_names():
      path = self.root / run / META_FILE
      meta = read_json(path, _REWRITE) if path.exists() else {}
      records.append({"run": run, **validate_meta(meta, run=run)})
    return runs_frame(records)


def _read_rows(path: pathlib.Path) -> list[dict[str, Any]]:
  """The rows of `<run>/<stage>.jsonl`, each validated as `put` validates it: a hand-edited or damaged row is
  an error naming the file and line, never a silently wrong number in a report."""
  run, stage = path.parent.name, path.name[:-len(ROWS_SUFFIX)]
  rows = []
  for number, row in enumerate(read_jsonl(path, _REWRITE), 1):
    try:
      rows.append(validate_row(row, run=run, stage=stage))
    except ValueError as error:
      raise ValueError(f"{path} row {number}: {error} ({_REWRITE}).") from None
  return rows


def rows_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
  """Result rows as a DataFrame with the store's columns and dtypes (value float, count nullable int)."""
  frame = pd.DataFrame.from_records(list(records), columns=list(ROW_COLUMNS))
  frame["value"] = frame["value"].astype(float)
  frame["count"] = frame["count"].astype("Int64")
  frame["group"] = frame["group"].astype(object).where(frame["group"].notna(), None)
  return frame


def runs_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
  """Run metadata as a DataFrame: columns run + `META_KEYS`, None where a key is missing."""
  frame = pd.DataFrame.from_records(list(records), columns=["run", *META_KEYS])
  return frame.astype(object).where(frame.notna(), None)


@dataclasses.dataclass(frozen=True)
class Results:
  """Rows and run metadata read from one or more stores (what the analysis, plots and report consume)."""

  frame: pd.DataFrame
  runs: pd.DataFrame
  items: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=list(ITEM_COLUMNS)))

  def select(self, runs: Iterable[str]) -> Results:
    """Only the named runs."""
    keep = set(runs)
    return Results(self.frame[self.frame["run"].isin(keep)].reset_index(drop=True),
                   self.runs[self.runs["run"].isin(keep)].reset_index(drop=True),
                   self.items[self.items["run"].isin(keep)].reset_index(drop=True))

  def item_scores(self, run: str, stage: str | None = None, *, blind: bool = False
                  ) -> dict[str, dict[str, float]]:
    """benchmark -> question id -> score (0..1) of one run (its VQA stage, or `stage`)."""
    items = self.items[(self.items["run"] == run) & (self.items["blind"] == blind)]
    if stage is not None:
      items = items[items["stage"] == stage]
    scores: dict[str, dict[str, float]] = {}
    for benchmark, item_id, score in zip(items["benchmark"], items["id"], items["score"]):
      scores.setdefault(benchmark, {})[item_id] = float(score)
    return scores


def _natural(text: str) -> tuple:
  """Sort key that orders digit runs by value: "code-25" before "code-100", "mix2" before "mix10"."""
  return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def run_order(results: Results) -> list[str]:
  """Runs with rows or metadata, ordered by family (in `FAMILIES` order), parameters, then name and run id
  in natural order (so a sweep reads in sweep order)."""
  runs = set(results.frame["run"]) | set(results.runs["run"])
  meta = results.runs.set_index("run")
  rank = {f: i for i, f in enumerate(FAMILIES)}

  def key(run):
    row = meta.loc[run] if run in meta.index else pd.Series({"family": None, "params": None, "name": None})
    params = float(row["params"]) if pd.notna(row["params"]) else float("inf")
    return (rank.get(row["family"], len(rank)), params, _natural(str(row["name"] or "")), _natural(run))

  return sorted(runs, key=key)


def load_results(stores: ResultsStore | str | os.PathLike[str] | Sequence[ResultsStore | str | os.PathLike[str]]
                 ) -> Results:
  """Reads and merges stores (or root paths). Identical duplicates collapse; conflicting ones are errors."""
  if isinstance(stores, (ResultsStore, str, os.PathLike)):
    stores = [stores]
  stores = [s if isinstance(s, ResultsStore) else ResultsStore(s) for s in stores]
  if not stores:
    raise ValueError("No results stores given.")
  for store in stores:
    if not store.root.is_dir():
      raise FileNotFoundError(f"Results directory {store.root} does not exist.")
  frames = [(store, store.frame()) for store in stores]
  runs = [(store, store.runs()) for store in stores]
  frame = _merge([f for _, f in frames], [s for s, _ in frames], list(KEY_COLUMNS), "result row")
  run_table = _merge([_drop_empty_meta(r, runs) for _, r in runs], [s for s, _ in runs], ["run"], "run metadata")
  items = [(store, store.items()) for store in stores]
  item_table = _merge([i for _, i in items], [s for s, _ in items], ["run", "stage", "benchmark", "id", "blind"],
                      "per-question score")
  return Results(rows_frame(frame.to_dict("records")), runs_frame(run_table.to_dict("records")), item_table)


def _drop_empty_meta(table: pd.DataFrame, every: list[tuple[ResultsStore, pd.DataFrame]]) -> pd.DataFrame:
  """Drops metadata-less entries of runs that another store describes (rows in one root, meta in another)."""
  described = set()
  for _, other in every:
    described |= set(other.loc[other[list(META_KEYS)].notna().any(axis=1), "run"])
  empty = table[list(META_KEYS)].isna().all(axis=1)
  return table[~(empty & table["run"].isin(described))]


def _merge(parts: list[pd.DataFrame], stores: list[ResultsStore], key: list[str], what: str) -> pd.DataFrame:
  tagged = [p.assign(_store=str(s.root)) for p, s in zip(parts, stores) if len(p)]
  if not tagged:
    return parts[0]
  every = pd.concat(tagged, ignore_index=True)
  value_columns = [c for c in every.columns if c not in key and c != "_store"]
  distinct = every.astype(object).where(every.notna(), None).drop_duplicates(subset=key + value_columns)
  clashes = distinct[distinct.duplicated(subset=key, keep=False)]
  if len(clashes):
    first = clashes.iloc[0]
    same = clashes[(clashes[key] == first[key]).all(axis=1)]
    raise ValueError(f"Conflicting {what} for {dict(first[key])} in {list(same['_store'])}: "
                     f"{same[value_columns].to_dict('records')}. Keep each run in one store or make them agree.")
  return distinct.drop(columns="_store").reset_index(drop=True)


def seed_groups(results: Results) -> dict[str, dict[int, str]]:
  """Experiments as seed -> run, for runs whose metadata agree but for the seed, keyed by the experiment's name
  (its name and first run id where two experiments share a name); in `run_order`, the first run of a seed kept."""
  meta = results.runs.set_index("run")
  identity = [key for key in META_KEYS if key != "seed"]
  experiments: dict[tuple, dict[int, str]] = {}
  for run in run_order(results):
    if run in meta.index and pd.notna(meta.loc[run, "seed"]):
      seeds = experiments.setdefault(tuple(str(meta.loc[run, k]) for k in identity), {})
      seeds.setdefault(int(meta.loc[run, "seed"]), run)
  names = [meta.loc[next(iter(seeds.values())), "name"] for seeds in experiments.values()]
  return {(str(name) if name and names.count(name) == 1 else f"{name or 'run'} [{next(iter(seeds.values()))}]"):
          seeds for name, seeds in zip(names, experiments.values())}
