"""Tests for visual_priors.analysis.uncertainty: intervals against reference values and simulated coverage."""

import math

import numpy as np
import pytest

from visual_priors.analysis import uncertainty


@pytest.mark.parametrize("percent, n, expected", [
    (80.0, 10, (49.02, 94.33)),  # the textbook example of the Wilson interval
    (0.0, 10, (0.0, 27.75)),
    (100.0, 25, (86.68, 100.0)),
    (50.0, 200, (43.14, 56.86)),
])
def test_wilson_interval_matches_reference_values(percent, n, expected):
  low, high = uncertainty.wilson_interval(percent, n)
  assert (round(low, 2), round(high, 2)) == expected


def test_wilson_interval_of_no_trials_is_undefined():
  assert all(math.isnan(v) for v in uncertainty.wilson_interval(50.0, 0))


def test_bootstrap_interval_of_one_benchmark_is_close_to_wilson():
  scores = {"b": [1.0] * 60 + [0.0] * 140}
  low, high = uncertainty.bootstrap_interval(scores, samples=4000)
  wilson = uncertainty.wilson_interval(30.0, 200)
  assert abs(low - wilson[0]) < 1.5 and abs(high - wilson[1]) < 1.5
  assert uncertainty.mean_of_means(scores) == pytest.approx(30.0)


def test_bootstrap_interval_covers_the_truth_about_95_percent_of_the_time():
  rng = np.random.default_rng(1)
  truth = {"a": 0.3, "b": 0.7}
  covered = 0
  for trial in range(200):
    scores = {name: (rng.random(60) < p).astype(float) for name, p in truth.items()}
    low, high = uncertainty.bootstrap_interval(scores, samples=500, seed=trial)
    covered += low <= 50.0 <= high
  assert 0.88 <= covered / 200 <= 0.99


def test_paired_difference_of_identical_runs_is_zero_with_p_one():
  run = {"b": {str(i): float(i % 3 == 0) for i in range(90)}}
  difference = uncertainty.paired_difference(run, run)
  assert (difference.value, difference.low, difference.high, difference.p_value, difference.n) == (0, 0, 0, 1, 90)


def test_paired_difference_finds_a_real_improvement_and_only_uses_shared_questions():
  rng = np.random.default_rng(0)
  base = {str(i): float(rng.random() < 0.4) for i in range(300)}
  better = {i: 1.0 if rng.random() < 0.25 else v for i, v in base.items()}  # fixes about 15 points of errors
  difference = uncertainty.paired_difference({"b": better, "extra": {"x": 1.0}}, {"b": base})
  expected = 100 * np.mean([better[i] - base[i] for i in base])
  assert difference.value == pytest.approx(expected) and difference.n == 300
  assert 0 < difference.low < difference.value < difference.high
  assert difference.p_value < 0.01
  assert "p=" in difference.format() and difference.format().startswith("+")


def test_paired_difference_of_noise_is_not_significant():
  rng = np.random.default_rng(3)
  a = {str(i): float(rng.random() < 0.5) for i in range(200)}
  b = {str(i): float(rng.random() < 0.5) for i in range(200)}
  difference = uncertainty.paired_difference({"b": a}, {"b": b})
  assert difference.low < 0 < difference.high and difference.p_value > 0.05


def test_paired_difference_needs_shared_questions():
  with pytest.raises(ValueError, match="share no scored question"):
    uncertainty.paired_difference({"b": {"1": 1.0}}, {"b": {"2": 1.0}})


def test_seed_summary_and_formatting():
  summary = uncertainty.seed_summary([40.0, 44.0, 48.0])
  assert (summary.mean, summary.sd, summary.points) == (44.0, 4.0, (40.0, 44.0, 48.0))
  assert summary.format() == "44.0 ± 4.0 (40.0, 44.0, 48.0)"
  assert uncertainty.seed_summary([41.5]).format() == "41.5 (41.5)"
  assert uncertainty.format_interval(45.0, (38.12, 52.0)) == "45.0 [38.1, 52.0]"
  assert uncertainty.format_interval(45.0, (math.nan, math.nan)) == "45.0"


def test_spearman_interval():
  x = np.arange(10.0)
  assert uncertainty.spearman_interval(x, 2 * x + 1, samples=200) == pytest.approx((1.0, 1.0))
  rng = np.random.default_rng(0)
  low, high = uncertainty.spearman_interval(rng.random(12), rng.random(12), samples=500)
  assert -1 <= low < 0 < high <= 1
  with pytest.raises(ValueError, match="at least 3"):
    uncertainty.spearman_interval([1, 2], [1, 2])
