"""Per-question scores in the results store, and the report's interval and paired-difference tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visual_priors.analysis import report, uncertainty
from visual_priors.analysis.results import ResultsStore, load_results
from visual_priors.eval import vqa


def _scores(run_seed: int, accuracy: dict[str, float], n: int = 80) -> list[dict]:
  rng = np.random.default_rng(run_seed)
  groups = {"gen_general": "General", "gen_knowledge": "Knowledge"}
  return [{"benchmark": b, "id": f"{b}_{i:03d}", "blind": blind, "group": groups[b], "type": "mc",
           "score": float(rng.random() < accuracy[b] * (0.5 if blind else 1)), "extracted": 0 if i % 4 else None,
           "output": "x"}
          for b in groups for i in range(n) for blind in (False, True)]


def _store(tmp_path, runs: dict[str, tuple[int, dict[str, float], int]]) -> ResultsStore:
  store = ResultsStore(tmp_path / "results")
  for run, (seed, accuracy, tokens) in runs.items():
    records = _scores(seed, accuracy)
    rows = vqa.tabulate(records)
    rows.append({"benchmark": "overall", "group": None, "metric": "accuracy_chance", "value": 25.0, "count": 160})
    store.put(run, "sft", rows)
    store.put_items(run, "sft", records)
    store.put_run(run, {"name": run, "family": "demo", "tokens": tokens})
  return store


def test_item_scores_round_trip_and_replace(tmp_path):
  store = _store(tmp_path, {"a": (0, {"gen_general": 0.5, "gen_knowledge": 0.5}, 10)})
  items = store.items()
  assert len(items) == 320 and set(items["stage"]) == {"sft"}
  records = _scores(0, {"gen_general": 0.5, "gen_knowledge": 0.5})
  store.put_items("a", "sft", records[:4])  # a stage's items are replaced whole, like its re-evaluation
  assert len(store.items()) == 4
  results = load_results(store)
  scores = results.item_scores("a")
  assert scores == {"gen_general": {r["id"]: r["score"] for r in records[:4] if not r["blind"]}}
  assert len(scores["gen_general"]) == 2
  with pytest.raises(ValueError, match="outside"):
    store.put_items("a", "sft", [{**records[0], "score": 1.5}])
  assert len(store.items()) == 4  # a bad record writes nothing


def test_interval_table_bootstraps_questions_and_shows_chance_and_blind(tmp_path):
  store = _store(tmp_path, {"a": (0, {"gen_general": 0.6, "gen_knowledge": 0.4}, 10)})
  results = load_results(store)
  table = report.vqa_interval_table(results)
  row = table.loc["a"]
  overall = results.frame.query("benchmark == 'overall' and metric == 'accuracy'")["value"].item()
  members = {b: list(v.values()) for b, v in results.item_scores("a").items()}
  assert row[report.OVERALL_COLUMN] == uncertainty.format_interval(overall, uncertainty.bootstrap_interval(members))
  assert row["n"] == "160" and row["chance"] == "25.0" and float(row["blind"]) < overall
  assert row["parsed %"] == "75.0"  # one reply in four gave no readable answer
  assert not row["General (mean)"].startswith("~")
  # Without per-question scores: the Wilson interval of the stored count, marked.
  no_items = type(results)(results.frame, results.runs)
  assert report.vqa_interval_table(no_items).loc["a", report.OVERALL_COLUMN].startswith("~")


def test_paired_table_compares_each_run_with_the_untrained_control(tmp_path):
  store = _store(tmp_path, {"control": (1, {"gen_general": 0.25, "gen_knowledge": 0.25}, 0),
                            "trained": (2, {"gen_general": 0.8, "gen_knowledge": 0.7}, 10),
                            "twin": (3, {"gen_general": 0.25, "gen_knowledge": 0.25}, 10)})
  results = load_results(store)
  assert report.reference_run(results) == "control"
  table = report.paired_table(results)
  assert list(table.index) == ["trained - control", "twin - control"]
  trained = table.loc["trained - control", report.OVERALL_COLUMN]
  assert trained.startswith("+") and "p=0 " not in trained
  difference = uncertainty.paired_difference(results.item_scores("trained"), results.item_scores("control"))
  assert trained == difference.format() and difference.low > 0
  assert set(table.columns) == {"General", "Knowledge", report.OVERALL_COLUMN}
  html = report.build_html(results, title="t", notes=None, plot_dir=tmp_path / "plots")
  assert "VQA accuracy with 95% intervals" in html and "Paired differences" in html


def test_lm_eval_style_json_export(tmp_path):
  store = _store(tmp_path, {"a": (0, {"gen_general": 0.6, "gen_knowledge": 0.4}, 10)})
  results = load_results(store)
  [path] = report.write_lm_eval_json(results, tmp_path / "lm_eval")
  content = json.loads(path.read_text())
  general = content["results"]["gen_general"]
  stored = results.frame.query("benchmark == 'gen_general' and metric == 'accuracy'")["value"].item()
  p = stored / 100
  assert general["acc,none"] == pytest.approx(p)
  assert general["acc_stderr,none"] == pytest.approx((p * (1 - p) / 79) ** 0.5)
  assert content["n-samples"]["gen_general"] == {"original": 80, "effective": 80}
  assert "accuracy_blind" not in str(content["results"].keys())


def test_seed_table_aggregates_runs_that_differ_only_in_seed(tmp_path):
  store = _store(tmp_path, {"s1": (1, {"gen_general": 0.5, "gen_knowledge": 0.5}, 10),
                            "s2": (2, {"gen_general": 0.6, "gen_knowledge": 0.5}, 10),
                            "other": (3, {"gen_general": 0.6, "gen_knowledge": 0.5}, 10)})
  for run, seed, name in (("s1", 1, "demo/mix6"), ("s2", 2, "demo/mix6"), ("other", 1, "demo/mix0")):
    store.put_run(run, {"name": name, "family": "demo", "tokens": 10, "seed": seed})
  results = load_results(store)
  table = report.seed_table(results)
  assert list(table.index) == ["demo/mix6"] and table.loc["demo/mix6", "seeds"] == "1, 2"
  overall = [results.frame.query(f"run == '{r}' and benchmark == 'overall' and metric == 'accuracy'")["value"].item()
             for r in ("s1", "s2")]
  assert table.loc["demo/mix6", report.OVERALL_COLUMN] == uncertainty.seed_summary(overall).format()


def test_spearman_interval_table():
  import pandas as pd
  rng = np.random.default_rng(0)
  base = rng.random(20)
  scores = pd.DataFrame({"General": base, "OCR": base + 0.05 * rng.random(20), "Knowledge": rng.random(20)})
  table = report.spearman_interval_table(scores)
  assert table.loc["General", "General"] == "1.00 [1.00, 1.00]"
  low, high = uncertainty.spearman_interval(scores["General"], scores["OCR"])
  assert table.loc["General", "OCR"].endswith(f"[{low:.2f}, {high:.2f}]") and low > 0.5


def test_paper_findings_checked_with_intervals(tmp_path):
  from visual_priors.analysis import paper
  store = _store(tmp_path, {"control": (1, {"gen_general": 0.25, "gen_knowledge": 0.25}, 0),
                            "m0": (2, {"gen_general": 0.5, "gen_knowledge": 0.5}, 10),
                            "m6": (3, {"gen_general": 0.9, "gen_knowledge": 0.9}, 10)})
  for run, mixture, tokens in (("control", "mix6", 0), ("m0", "mix0", 10), ("m6", "mix6", 10)):
    store.put_run(run, {"name": f"demo/{run}", "family": "demo", "scale": "nano", "tokens": tokens,
                        "mixture": mixture})
  table = paper.findings_table(load_results(store))
  assert table.loc["pretraining_helps", "verdict"] == paper.SUPPORTED
  assert "demo/m6 +" in table.loc["pretraining_helps", "this grid"]
  assert table.loc["mix6_over_mix0", "verdict"] == paper.SUPPORTED
  assert table.loc["mix6_over_mix0", "this grid"].startswith("mix6 minus mix0: General +")
  assert table.loc["web_crawl", "verdict"] == paper.ABSENT and table.loc["reasoning_share", "verdict"] == paper.ABSENT
  # Two indistinguishable runs: the comparison cannot tell.
  store.put_items("m6", "sft", _scores(2, {"gen_general": 0.5, "gen_knowledge": 0.5}))
  assert paper.findings_table(load_results(store)).loc["mix6_over_mix0", "verdict"] == paper.UNDECIDED


def test_report_command_writes_lm_eval_json(tmp_path, capsys):
  from visual_priors import cli
  store = _store(tmp_path, {"a": (0, {"gen_general": 0.6, "gen_knowledge": 0.4}, 10)})
  assert cli.main(["report", "--results", str(store.root), "--out", str(tmp_path / "r.html"),
                   "--lm-eval-json", str(tmp_path / "lm")]) == 0
  assert "Wrote 1 lm-eval-style JSON file(s)" in capsys.readouterr().out
  assert json.loads((tmp_path / "lm" / "a.json").read_text())["n-samples"]["overall"]["original"] == 160
