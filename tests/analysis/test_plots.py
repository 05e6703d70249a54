"""Plots drawn from the synthetic grid: real PNGs of sane size, deterministic, skipped with a reason when the
runs they need are absent."""

from __future__ import annotations

import matplotlib.image
import pandas as pd
import pytest

from visual_priors.analysis import plots
from visual_priors.analysis.results import ResultsStore, load_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(fixture_store):
  return load_results(fixture_store)


@pytest.mark.parametrize("name", list(plots.PLOTS))
def test_each_plot_is_a_sane_png(results, tmp_path, name):
  if name == "runs":  # a bar per run: drawn for up to MAX_RUN_BARS runs
    results = results.select(sorted(set(results.frame["run"]))[:plots.MAX_RUN_BARS])
  plot = plots.PLOTS[name](results, tmp_path / f"{name}.png")
  assert plot.reason is None and plot.path == tmp_path / f"{name}.png"
  data = plot.path.read_bytes()
  assert data[:8] == PNG_SIGNATURE
  assert len(data) > 5_000
  height, width = matplotlib.image.imread(plot.path).shape[:2]
  assert 400 <= width <= 2_000 and 300 <= height <= 6_000
  assert [p.name for p in tmp_path.iterdir()] == [f"{name}.png"]  # no temporary files left behind


def test_plots_are_deterministic(results, tmp_path):
  first = plots.plot_mix(results, tmp_path / "a.png").path.read_bytes()
  second = plots.plot_mix(results, tmp_path / "b.png").path.read_bytes()
  assert first == second


def test_absent_runs_give_a_reason_not_a_file(build_results, tmp_path):
  only_mix = load_results(build_results(tmp_path / "store", families={"mix"}))
  drawn = {p.name: p for p in plots.draw_all(only_mix, tmp_path / "plots")}
  assert drawn["mix"].path is not None and drawn["correlation"].path is not None
  for name in ("scale", "source", "category", "grid"):
    assert drawn[name].path is None and f"family '{name}'" in drawn[name].reason
  assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["correlation.png", "mix.png", "mle_bench.png",
                                                                     "runs.png"]
  two_runs = only_mix.select(sorted(set(only_mix.frame["run"]))[:2])
  skipped = plots.plot_correlation(two_runs, tmp_path / "c.png")
  assert skipped.path is None and "at least 3 runs" in skipped.reason


def test_vqa_scores_and_units(results):
  scores = plots.vqa_scores(results)
  assert list(scores.columns[:5]) == list(plots.PANELS)
  assert len(scores) == len(results.runs)
  assert scores[list(plots.PANELS)].stack().between(0, 100).all()
  assert plots.as_percent(pd.Series([0.0, 0.25, 1.0])).tolist() == [0.0, 25.0, 100.0]
  assert plots.as_percent(pd.Series([5.0, 30.0])).tolist() == [5.0, 30.0]
  assert plots.mix_index("mix10", None) == 10 and plots.mix_index("web-crawl=1", "mix/mix3") == 3
  assert plots.mix_index("cat:reasoning=0.5", "grid/r50-v5") is None


def _demo_store(root, metrics) -> ResultsStore:
  """Three runs with VQA group and overall rows for `metrics` ({metric: value of run i as a function of i})."""
  store = ResultsStore(root)
  for i, run in enumerate(("a", "b", "c")):
    store.put_run(run, {"name": f"demo/{run}", "family": "demo"})
    rows = []
    for metric, value in metrics.items():
      rows += [{"benchmark": f"group/{g}", "group": g, "metric": metric, "value": value(i), "count": 10}
               for g in plots.GROUPS]
      rows.append({"benchmark": "overall", "group": None, "metric": metric, "value": value(i), "count": 40})
    store.put(run, "sft", rows)
  return store


def test_runs_plot_adds_a_likelihood_panel_and_skips_large_grids(results, tmp_path):
  both = load_results(_demo_store(tmp_path / "both", {"accuracy": lambda i: 5.0 * i,
                                                      "accuracy_likelihood": lambda i: 30.0 + i,
                                                      "accuracy_chance": lambda i: 25.0}))
  assert plots.vqa_scores(both, "accuracy_likelihood")["Overall"].tolist() == [30.0, 31.0, 32.0]
  generated_only = load_results(_demo_store(tmp_path / "one", {"accuracy": lambda i: 5.0 * i}))
  two_panels = plots.plot_runs(both, tmp_path / "both.png")
  one_panel = plots.plot_runs(generated_only, tmp_path / "one.png")
  height = {name: matplotlib.image.imread(plot.path).shape[0] for name, plot in (("two", two_panels),
                                                                                 ("one", one_panel))}
  assert height["two"] > 1.8 * height["one"]
  many = plots.plot_runs(results, tmp_path / "many.png")
  assert many.path is None and "too many" in many.reason
