"""ResultsStore: validation, idempotent puts, metadata, merging several roots."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from visual_priors.analysis.results import META_KEYS, ROW_COLUMNS, ResultsStore, load_results


def _row(benchmark="gqa", metric="accuracy", value=50.0, group="General", count=100):
  return {"benchmark": benchmark, "group": group, "metric": metric, "value": value, "count": count}


def test_put_and_frame_roundtrip(tmp_path):
  store = ResultsStore(tmp_path)
  store.put("run-a", "eval", [_row(), _row("ocrbench", value=np.float32(12.5), group="OCR & Chart", count=None)])
  store.put("run-a", "pretrain", [{"benchmark": "wikitext", "metric": "perplexity", "value": 31.0}])
  frame = store.frame()
  assert list(frame.columns) == list(ROW_COLUMNS)
  assert len(frame) == 3
  got = frame.set_index(["stage", "benchmark"])
  assert got.loc[("eval", "ocrbench"), "value"] == 12.5
  assert pd.isna(got.loc[("eval", "ocrbench"), "count"])
  assert got.loc[("eval", "gqa"), "count"] == 100
  assert got.loc[("pretrain", "wikitext"), "group"] is None


def test_put_is_idempotent_and_replaces_same_key(tmp_path):
  store = ResultsStore(tmp_path)
  rows = [_row(), _row("mme", value=60.0)]
  store.put("run-a", "eval", rows)
  first = (tmp_path / "run-a" / "eval.jsonl").read_bytes()
  store.put("run-a", "eval", rows)
  assert (tmp_path / "run-a" / "eval.jsonl").read_bytes() == first
  assert len(store.frame()) == 2
  store.put("run-a", "eval", [_row(value=70.0), _row("seed", value=40.0)])
  frame = store.frame().set_index("benchmark")["value"]
  assert frame.to_dict() == {"gqa": 70.0, "mme": 60.0, "seed": 40.0}
  # Same benchmark, other metric: a different key, kept side by side.
  store.put("run-a", "eval", [_row(metric="accuracy_blind", value=30.0)])
  assert len(store.frame()) == 4


@pytest.mark.parametrize("bad, message", [
    (_row(value=math.nan), "finite"),
    (_row(value=math.inf), "finite"),
    (_row(value="50"), "not a number"),
    (_row(value=True), "not a number"),
    (_row(benchmark=""), "benchmark must be a non-empty"),
    (_row(metric=" "), "metric must be a non-empty"),
    (_row(count=-1), "count"),
    ({**_row(), "vaule": 1.0}, "unknown field"),
    ({"benchmark": "gqa", "metric": "accuracy"}, "missing 'value'"),
    ({**_row(), "run": "other"}, "differs"),
])
def test_bad_rows_are_rejected_naming_the_row(tmp_path, bad, message):
  store = ResultsStore(tmp_path)
  store.put("run-a", "eval", [_row("mme")])
  with pytest.raises(ValueError, match=message) as error:
    store.put("run-a", "eval", [_row("seed"), bad])
  assert "run-a" in str(error.value)
  # Nothing of the failed put is written.
  assert store.frame()["benchmark"].tolist() == ["mme"]


def test_bad_names_and_conflicting_rows_in_one_put(tmp_path):
  store = ResultsStore(tmp_path)
  for name in ("", "../x", "a/b", ".hidden"):
    with pytest.raises(ValueError, match="Bad run name"):
      store.put(name, "eval", [_row()])
  with pytest.raises(ValueError, match="Bad stage name"):
    store.put("run-a", "ev/al", [_row()])
  with pytest.raises(ValueError, match="two different rows"):
    store.put("run-a", "eval", [_row(value=1.0), _row(value=2.0)])


def test_run_metadata(tmp_path):
  store = ResultsStore(tmp_path)
  store.put_run("run-a", {"name": "mix/mix6", "family": "mix", "tokens": np.int64(50_000_000_000),
                          "reasoning_share": 0.55, "blind": False})
  store.put("run-b", "eval", [_row()])  # rows but no metadata yet
  runs = store.runs().set_index("run")
  assert list(runs.columns) == list(META_KEYS)
  assert runs.loc["run-a", "tokens"] == 50_000_000_000
  assert runs.loc["run-a", "scale"] is None
  assert runs.loc["run-b", "family"] is None
  store.put_run("run-a", {"name": "mix/mix6", "family": "mix"})  # replaces
  assert store.runs().set_index("run").loc["run-a", "tokens"] is None
  with pytest.raises(ValueError, match="reasoning_share"):
    store.put_run("run-a", {"reasoning_shar": 0.5})
  with pytest.raises(ValueError, match="family 'mixx'"):
    store.put_run("run-a", {"family": "mixx"})
  with pytest.raises(ValueError, match="finite"):
    store.put_run("run-a", {"proportion": float("nan")})


def test_merge_several_roots(tmp_path):
  a, b = ResultsStore(tmp_path / "a"), ResultsStore(tmp_path / "b")
  a.put("run-1", "eval", [_row()])
  a.put_run("run-1", {"family": "scale"})
  b.put("run-2", "eval", [_row(value=10.0)])
  b.put("run-1", "eval", [_row()])  # identical duplicate of a's row: collapses
  b.put("run-1", "eval", [_row("mme")])  # rows of run-1 kept in b, its metadata in a
  merged = load_results([a, b])
  assert sorted(merged.frame["run"] + "/" + merged.frame["benchmark"]) == ["run-1/gqa", "run-1/mme", "run-2/gqa"]
  assert merged.runs.set_index("run")["family"].to_dict() == {"run-1": "scale", "run-2": None}
  b.put("run-1", "eval", [_row(value=99.0)])
  with pytest.raises(ValueError, match="Conflicting result row"):
    load_results([a, b])
  with pytest.raises(FileNotFoundError):
    load_results([tmp_path / "nope"])


def test_empty_store(tmp_path):
  results = load_results(tmp_path)
  assert results.frame.empty and list(results.frame.columns) == list(ROW_COLUMNS)
  assert results.runs.empty


def test_rows_are_validated_when_read(tmp_path):
  """A row edited by hand or damaged on disk is an error naming the file, not a wrong number in a report."""
  store = ResultsStore(tmp_path)
  store.put("run-a", "eval", [{"benchmark": "gqa", "group": "General", "metric": "accuracy", "value": 50.0,
                               "count": 10}])
  path = tmp_path / "run-a" / "eval.jsonl"
  path.write_text(path.read_text().replace("50.0", '"fifty"'))
  with pytest.raises(ValueError, match=r"eval\.jsonl row 1: .*value 'fifty' is not a number"):
    store.frame()
