"""Spearman correlation (checked against scipy) and the perception/reasoning clustering of VQA groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from visual_priors.analysis import correlations
from visual_priors.analysis.results import load_results, rows_frame


def _group_rows(scores: pd.DataFrame) -> pd.DataFrame:
  """A results frame holding `scores` (runs x group names) as the eval suite's group/<G> rows."""
  return rows_frame([{"run": run, "stage": "eval", "benchmark": f"group/{group}", "group": group,
                      "metric": "accuracy", "value": float(value), "count": None}
                     for run, row in scores.iterrows() for group, value in row.items()])


def test_average_ranks_match_scipy_with_ties():
  rng = np.random.default_rng(0)
  for _ in range(20):
    x = rng.integers(0, 5, size=int(rng.integers(1, 30))).astype(float)
    np.testing.assert_allclose(correlations.average_ranks(x), stats.rankdata(x, method="average"))


def test_spearman_matches_scipy_on_random_data_with_ties():
  rng = np.random.default_rng(1)
  for n in (3, 7, 40):
    data = pd.DataFrame(rng.integers(0, 6, size=(n, 5)).astype(float), columns=list("abcde"))
    data.iloc[0] = [0, 1, 2, 3, 4]  # no column constant
    data.iloc[1] = [5, 4, 3, 2, 1]
    expected = stats.spearmanr(data.to_numpy()).statistic
    np.testing.assert_allclose(correlations.spearman(data).to_numpy(), expected, atol=1e-12)


def test_spearman_errors():
  with pytest.raises(ValueError, match="at least 3 runs"):
    correlations.spearman(pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, 1.0]}))
  with pytest.raises(ValueError, match=r"\['b'\] are constant"):
    correlations.spearman(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, 2.0, 2.0]}))


def test_clustering_recovers_a_constructed_split():
  # Perception groups rise with p, reasoning groups with r = -p + small noise: anti-correlated blocks.
  rng = np.random.default_rng(2)
  p = rng.normal(size=30)
  r = -0.5 * p + rng.normal(size=30)
  scores = pd.DataFrame({"Knowledge": r + 0.1 * rng.normal(size=30), "General": p + 0.1 * rng.normal(size=30),
                         "Vision-Centric": r + 0.1 * rng.normal(size=30), "OCR & Chart": p + 0.1 * rng.normal(size=30)},
                        index=[f"run{i}" for i in range(30)])
  analysis = correlations.perception_reasoning(_group_rows(scores))
  assert {k: sorted(v) for k, v in analysis.clustering.clusters.items()} == {
      "perception": ["General", "OCR & Chart"], "reasoning": ["Knowledge", "Vision-Centric"]}
  assert list(analysis.clustering.clusters) == ["perception", "reasoning"]
  order = analysis.clustering.order
  # Heat-map order keeps each cluster contiguous.
  assert {frozenset(order[:2]), frozenset(order[2:])} == {frozenset({"General", "OCR & Chart"}),
                                                         frozenset({"Knowledge", "Vision-Centric"})}
  assert analysis.rho.loc["General", "Knowledge"] < 0 < analysis.rho.loc["General", "OCR & Chart"]


def test_other_split_gets_other_names():
  rho = pd.DataFrame([[1, 0.9, -0.5, -0.5], [0.9, 1, -0.5, -0.5], [-0.5, -0.5, 1, 0.9], [-0.5, -0.5, 0.9, 1]],
                     index=list("wxyz"), columns=list("wxyz"), dtype=float)
  clusters = correlations.cluster(rho).clusters
  assert {k: sorted(v) for k, v in clusters.items()} == {"cluster 1": ["w", "x"], "cluster 2": ["y", "z"]}
  with pytest.raises(ValueError, match="into 2 clusters"):
    correlations.cluster(rho.iloc[:1, :1])


def test_fewer_than_three_complete_runs_is_a_clear_error():
  scores = pd.DataFrame({g: [1.0, 2.0, 3.0] for g in correlations.VQA_GROUPS}, index=["a", "b", "c"])
  frame = _group_rows(scores)
  frame = frame[~((frame["run"] == "c") & (frame["benchmark"] == "group/OCR & Chart"))]
  with pytest.raises(ValueError, match="at least 3 runs.*2 have them"):
    correlations.perception_reasoning(frame)


def test_ambiguous_stage_and_unknown_extra():
  scores = pd.DataFrame({g: [1.0, 2.0, 3.0] for g in correlations.VQA_GROUPS}, index=["a", "b", "c"])
  frame = _group_rows(scores)
  twice = pd.concat([frame, frame.assign(stage="eval2")], ignore_index=True)
  with pytest.raises(ValueError, match="several stages"):
    correlations.score_matrix(twice)
  assert correlations.score_matrix(twice, stage="eval2").shape == (3, 4)
  with pytest.raises(ValueError, match="Unknown extra column"):
    correlations.perception_reasoning(frame, extra=["MLE"])


def test_fixture_grid_shows_the_papers_split(fixture_store):
  analysis = correlations.perception_reasoning(load_results(fixture_store).frame, extra=["MLE-Bench"])
  clusters = {k: set(v) for k, v in analysis.clustering.clusters.items()}
  assert {"General", "OCR & Chart"} <= clusters["perception"]
  assert clusters["reasoning"] == {"Knowledge", "Vision-Centric"}
  # The sft_data runs have no MLE-Bench rows: dropped from this analysis, every other run kept.
  assert sorted(analysis.dropped_runs) == sorted(r for r in fixture_store.run_names() if r.startswith("sft_data-"))
  assert len(analysis.dropped_runs) == 5 and len(analysis.scores) == len(fixture_store.run_names()) - 5
