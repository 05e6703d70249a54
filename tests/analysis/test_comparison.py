"""The pre-registered comparisons: learned per group, pre-training against the untrained control, mixtures."""

from __future__ import annotations

import numpy as np
import pytest

from visual_priors.analysis import comparison, report, uncertainty
from visual_priors.analysis.results import ResultsStore, load_results, seed_groups
from visual_priors.eval import vqa

GROUPS = {"gen_general": "General", "gen_knowledge": "Knowledge"}
N = 200


def _records(rng: np.random.Generator, accuracy: dict[str, float], blind_accuracy: float = 0.25) -> list[dict]:
  return [{"benchmark": b, "id": f"{b}_{i:03d}", "blind": blind, "group": GROUPS[b], "type": "mc",
           "score": float(rng.random() < (blind_accuracy if blind else accuracy[b])), "extracted": 0, "output": "x"}
          for b in GROUPS for i in range(N) for blind in (False, True)]


def _store(tmp_path, experiments: dict[str, tuple[int, dict[str, float]]], seeds=(0, 1)) -> ResultsStore:
  """experiment name -> (pre-training tokens, accuracy per benchmark); one run per seed."""
  store = ResultsStore(tmp_path / "results")
  for index, (name, (tokens, accuracy)) in enumerate(experiments.items()):
    for seed in seeds:
      run = f"{name.replace('/', '-')}-s{seed}"
      records = _records(np.random.default_rng(100 * index + seed), accuracy)
      rows = vqa.tabulate(records)
      rows += [{"benchmark": f"group/{g}", "group": g, "metric": "accuracy_chance", "value": 25.0, "count": N}
               for g in GROUPS.values()]
      store.put(run, "sft", rows)
      store.put_items(run, "sft", records)
      store.put_run(run, {"name": name, "family": "demo", "tokens": tokens, "scale": "nano", "seed": seed})
  return store


def test_seed_paired_difference_pools_seeds_and_matches_one_pair():
  rng = np.random.default_rng(0)
  a1, b1, a2, b2 = ({"m": {str(i): float(rng.random() < p) for i in range(300)}} for p in (0.7, 0.3, 0.6, 0.4))
  one = uncertainty.seed_paired_difference([(a1, b1)])
  assert one == uncertainty.paired_difference(a1, b1)
  pooled = uncertainty.seed_paired_difference([(a1, b1), (a2, b2)])
  assert pooled.per_seed == pytest.approx((one.value, uncertainty.paired_difference(a2, b2).value))
  assert pooled.value == pytest.approx(np.mean(pooled.per_seed)) and pooled.low > 0
  assert "seeds +" in pooled.format()
  # Seed-to-seed variation widens the interval: one seed far above, one at 0.
  noisy = uncertainty.seed_paired_difference([(a1, b1), (b1, b1)])
  assert noisy.high - noisy.low > one.high - one.low
  with pytest.raises(ValueError, match="at least one pair"):
    uncertainty.seed_paired_difference([])


def test_seed_groups_pair_runs_by_experiment_and_seed(tmp_path):
  store = _store(tmp_path, {"demo/untrained": (0, {"gen_general": 0.3, "gen_knowledge": 0.3}),
                            "demo/mix0": (10, {"gen_general": 0.3, "gen_knowledge": 0.3})})
  groups = seed_groups(load_results(store))
  assert groups == {"demo/mix0": {0: "demo-mix0-s0", 1: "demo-mix0-s1"},
                    "demo/untrained": {0: "demo-untrained-s0", 1: "demo-untrained-s1"}}


def test_learning_table_applies_the_rule_per_run_and_group(tmp_path):
  store = _store(tmp_path, {"demo/mix0": (10, {"gen_general": 0.8, "gen_knowledge": 0.3})})
  table = comparison.learning_table(load_results(store)).set_index(["run", "group"])
  assert len(table) == 4
  assert table.loc[("demo/mix0 (seed 0)", "General"), "verdict"] == comparison.LEARNED
  assert table.loc[("demo/mix0 (seed 1)", "Knowledge"), "verdict"] == comparison.NOT_LEARNED  # 30% vs blind 25%
  assert table.loc[("demo/mix0 (seed 0)", "General"), "parsed %"] == "100.0"
  results = load_results(store)
  assert comparison.parse_ok(results, "demo-mix0-s0")
  store.put("demo-mix0-s0", "sft", [{"benchmark": "overall", "group": None, "metric": "parse_rate", "value": 85.0,
                                     "count": 400}])
  assert not comparison.parse_ok(load_results(store), "demo-mix0-s0")


def test_pretraining_and_mixture_verdicts(tmp_path):
  store = _store(tmp_path, {"demo/untrained": (0, {"gen_general": 0.3, "gen_knowledge": 0.3}),
                            "demo/mix0": (10, {"gen_general": 0.7, "gen_knowledge": 0.3}),
                            "demo/mix6": (10, {"gen_general": 0.3, "gen_knowledge": 0.3})})
  results = load_results(store)
  pretraining = comparison.pretraining_table(results)
  assert list(pretraining.index) == ["demo/mix0 - demo/untrained", "demo/mix6 - demo/untrained"]
  assert pretraining.loc["demo/mix0 - demo/untrained", "General"].startswith(comparison.HELPED)
  assert pretraining.loc["demo/mix6 - demo/untrained", "General"].startswith(comparison.UNDECIDED)
  mixtures = comparison.mixture_table(results)
  assert list(mixtures.index) == ["demo/mix0 - demo/mix6"]
  assert mixtures.loc["demo/mix0 - demo/mix6", "General"].startswith(comparison.DIFFER)
  assert mixtures.loc["demo/mix0 - demo/mix6", "Knowledge"].startswith(comparison.UNDECIDED)
  lines = comparison.statements(results)
  assert lines[0] == ("General: pre-training helped demo/mix0; the mixtures differ (demo/mix0 - demo/mix6).")
  assert lines[1].startswith("Knowledge: no pre-trained experiment is told apart from the untrained control")
  html = report.build_html(results, title="t", notes=None, plot_dir=tmp_path / "plots")
  assert "Pre-registered comparisons" in html and "Did the models learn" in html
  assert "Paired differences" not in html  # the seed-pooled comparison replaces the run-by-run one


def test_experiments_without_a_shared_seed_are_not_compared(tmp_path):
  store = _store(tmp_path, {"demo/untrained": (0, {"gen_general": 0.3, "gen_knowledge": 0.3})}, seeds=(0,))
  _store(tmp_path, {"demo/mix0": (10, {"gen_general": 0.7, "gen_knowledge": 0.3})}, seeds=(1,))
  assert comparison.pretraining_table(load_results(store)).empty
