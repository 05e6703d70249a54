"""How sure a number is: Wilson intervals, bootstrap intervals over questions, paired run differences, seeds.

Accuracies are percentages (0..100) as the results store keeps them. A benchmark's accuracy over n questions
gets the Wilson score interval of a proportion. A mean over several benchmarks (a VQA group, the overall)
gets a percentile bootstrap that resamples questions within each benchmark, so every benchmark keeps its
size. Two runs scored on the same questions are compared by a paired bootstrap of the same statistic over
the per-question differences; its two-sided p-value is the bootstrap's (twice the smaller tail around 0).
Runs that differ only in their seed are summarised as mean, standard deviation and the per-seed points.
Spearman correlations get a bootstrap over runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
BOOTSTRAP_SAMPLES = 2000


def wilson_interval(percent: float, n: int, z: float = Z_95) -> tuple[float, float]:
  """The Wilson score interval (in percent) of a proportion observed as `percent` over `n` trials."""
  if n <= 0:
    return (math.nan, math.nan)
  p = min(max(percent / 100, 0.0), 1.0)
  denominator = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denominator
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
  return (100 * max(centre - half, 0.0), 100 * min(centre + half, 1.0))


def _benchmark_arrays(scores: Mapping[str, Sequence[float]]) -> list[np.ndarray]:
  arrays = [np.asarray(values, np.float64) for values in scores.values()]
  if not arrays or any(a.size == 0 for a in arrays):
    raise ValueError("Every benchmark needs at least one scored question.")
  return arrays


def mean_of_means(scores: Mapping[str, Sequence[float]]) -> float:
  """The mean over benchmarks of each benchmark's mean score, in percent (scores are 0..1 per question)."""
  return 100 * float(np.mean([a.mean() for a in _benchmark_arrays(scores)]))


def bootstrap_interval(scores: Mapping[str, Sequence[float]], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
  """Percentile interval (percent) of `mean_of_means`, resampling questions within each benchmark."""
  rng = np.random.default_rng(seed)
  arrays = _benchmark_arrays(scores)
  means = np.zeros(samples)
  for a in arrays:
    means += a[rng.integers(0, a.size, size=(samples, a.size))].mean(axis=1)
  means *= 100 / len(arrays)
  tail = (1 - level) / 2
  return (float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))


@dataclasses.dataclass(frozen=True)
class Difference:
  """run_a minus run_b on the same questions, in points of percent; pooled over seeds when `per_seed` has several
  (each seed's own difference)."""

  value: float
  low: float
  high: float
  p_value: float
  n: int  # questions both runs answered (of one seed)
  per_seed: tuple[float, ...] = ()

  def format(self) -> str:
    seeds = (f", seeds {', '.join(f'{d:+.1f}' for d in self.per_seed)}" if len(self.per_seed) > 1 else "")
    return f"{self.value:+.1f} [{self.low:+.1f}, {self.high:+.1f}] (p={self.p_value:.3g}, n={self.n}{seeds})"


Scores = Mapping[str, Mapping[str, float]]  # benchmark -> question id -> score (0..1)


def paired_difference(a: Scores, b: Scores, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0,
                      level: float = 0.95) -> Difference:
  """`mean_of_means(a) - mean_of_means(b)` over the questions both hold, with a paired bootstrap interval and
  two-sided p-value (questions resampled within each benchmark)."""
  return seed_paired_difference([(a, b)], samples=samples, seed=seed, level=level)


def seed_paired_difference(pairs: Sequence[tuple[Scores, Scores]], *, samples: int = BOOTSTRAP_SAMPLES,
                           seed: int = 0, level: float = 0.95) -> Difference:
  """A minus B pooled over seeds: `pairs` holds one (A's scores, B's scores) per seed, both runs of a pair trained
  with that seed and asked the same questions. The value is the mean over seeds of each seed's paired difference.
  The interval is a two-level bootstrap: seeds are resampled with replacement (seed-to-seed variation; with two
  seeds a rough one), and questions within each benchmark (one draw shared by every seed, as they answer the same
  questions). The p-value is twice the smaller bootstrap tail around 0. Only questions that every run of every
  pair answered count."""
  if not pairs:
    raise ValueError("A paired difference needs at least one pair of runs.")
  benchmarks = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
  ids = {m: sorted(set.intersection(*(set(a[m]) & set(b[m]) for a, b in pairs))) for m in benchmarks}
  ids = {m: members for m, members in ids.items() if members}
  if not ids:
    raise ValueError("The runs share no scored question: a paired difference needs the same questions.")
  # differences[m]: (seeds, questions) of benchmark m
  differences = {m: np.array([[a[m][i] - b[m][i] for i in members] for a, b in pairs], np.float64)
                 for m, members in ids.items()}
  per_seed = 100 * np.mean([d.mean(axis=1) for d in differences.values()], axis=0)
  rng = np.random.default_rng(seed)
  by_seed = np.zeros((len(pairs), samples))
  for d in differences.values():
    questions = rng.integers(0, d.shape[1], size=(samples, d.shape[1]))
    by_seed += d[:, questions].mean(axis=2)
  by_seed *= 100 / len(differences)
  if len(pairs) > 1:
    drawn = rng.integers(0, len(pairs), size=(samples, len(pairs)))
    means = by_seed[drawn, np.arange(samples)[:, None]].mean(axis=1)
  else:
    means = by_seed[0]
  tail = (1 - level) / 2
  p_value = 1.0 if np.all(means == 0) else float(min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0))))
  return Difference(value=float(per_seed.mean()), low=float(np.quantile(means, tail)),
                    high=float(np.quantile(means, 1 - tail)), p_value=p_value,
                    n=int(sum(len(members) for members in ids.values())), per_seed=tuple(float(v) for v in per_seed))


@dataclasses.dataclass(frozen=True)
class SeedSummary:
  mean: float
  sd: float  # sample standard deviation (ddof 1); nan for one seed
  points: tuple[float, ...]

  def format(self) -> str:
    spread = "" if math.isnan(self.sd) else f" ± {self.sd:.1f}"
    return f"{self.mean:.1f}{spread} ({', '.join(f'{p:.1f}' for p in self.points)})"


def seed_summary(values: Sequence[float]) -> SeedSummary:
  points = tuple(float(v) for v in values)
  if not points:
    raise ValueError("seed_summary needs at least one value.")
  sd = float(np.std(points, ddof=1)) if len(points) > 1 else math.nan
  return SeedSummary(mean=float(np.mean(points)), sd=sd, points=points)


def spearman_interval(x: Sequence[float], y: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
  """Percentile interval of Spearman's rho, resampling the paired observations (runs); resamples whose ranks
  are constant on one side are left out."""
  from scipy import stats  # pylint: disable=import-outside-toplevel

  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.size < 3:
    raise ValueError(f"spearman_interval needs two equal-length series of at least 3 values, got {x.size}, {y.size}.")
  rng = np.random.default_rng(seed)
  rhos = []
  for _ in range(samples):
    index = rng.integers(0, x.size, size=x.size)
    xs, ys = x[index], y[index]
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
      continue
    rhos.append(stats.spearmanr(xs, ys).statistic)
  if not rhos:
    return (math.nan, math.nan)
  tail = (1 - level) / 2
  return (float(np.quantile(rhos, tail)), float(np.quantile(rhos, 1 - tail)))


def format_interval(value: float, interval: tuple[float, float], digits: int = 1) -> str:
  """`45.0 [38.1, 52.0]`; a missing interval prints the value alone."""
  low, high = interval
  if math.isnan(low) or math.isnan(high):
    return f"{value:.{digits}f}"
  return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def proportion_stderr(percent: float, n: int) -> float:
  """The standard error of a proportion (as a fraction, lm-eval's `acc_stderr`): sqrt(p (1 - p) / (n - 1))."""
  if n <= 1:
    return math.nan
  p = min(max(percent / 100, 0.0), 1.0)
  return math.sqrt(p * (1 - p) / (n - 1))

