"""Mixture specifications: source weights or category proportions, validation, and reasoning/visual shares.

A mixture is declared in one of two ways (docs/paper.md, section 3):

* `SourceWeights`: a weight per source, e.g. the paper's mix0..mix10 (`PAPER_MIXTURES`). Weights may be
  given as fractions summing to 1 or percentages summing to 100; the published tables are rounded to one
  decimal, so sums within `SUM_TOLERANCE` of the total are accepted and normalised exactly.
* `CategoryProportions`: a share of segments per label category, the remainder drawn proportionally from
  the labelled pool, e.g. ``{"reasoning": 0.75}`` or the vision-favourable grid's
  ``{"reasoning": 0.60, "visual": 0.15}``. Categories overlap (a segment can be both), so the pool is cut into
  strata by joint membership and stratum weights are found by iterative proportional fitting: the unique
  mixture closest to the pool (minimum KL divergence) whose category marginals equal the spec. With one
  category this is exactly "p from the category, 1-p from the rest, each drawn proportionally from the pool".
  The paper does not say how it combined two overlapping targets; this is our documented choice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from visual_priors.data import categories
from visual_priors.names import lookup

# Published tables are rounded to 0.1 %: mix1 and mix4 sum to 99.9 %, mix5 to 100.1 %.
SUM_TOLERANCE = 0.005

_MIX_COLUMNS = ("web-crawl", "encyclopedia", "academia", "literature", "math", "code")
_MIX_ROWS = {
    "mix0": (50.0, 2.5, 2.5, 20.0, 5.0, 20.0),
    "mix1": (48.3, 3.4, 2.9, 17.0, 5.8, 22.5),
    "mix2": (46.7, 4.3, 3.3, 14.0, 6.7, 25.0),
    "mix3": (45.0, 5.2, 3.8, 11.0, 7.5, 27.5),
    "mix4": (43.3, 6.1, 4.2, 8.0, 8.3, 30.0),
    "mix5": (41.7, 7.1, 4.6, 5.0, 9.2, 32.5),
    "mix6": (40.0, 8.0, 5.0, 2.0, 10.0, 35.0),
    "mix7": (36.5, 7.0, 7.5, 2.0, 11.5, 35.5),
    "mix8": (33.0, 6.5, 9.5, 2.0, 12.0, 37.0),
    "mix9": (29.5, 6.0, 11.5, 2.0, 12.5, 38.5),
    "mix10": (26.0, 5.5, 12.5, 2.0, 13.0, 41.0),
}


@dataclasses.dataclass(frozen=True)
class SourceWeights:
  """Normalised sampling weight per source (zero-weight sources dropped)."""

  weights: Mapping[str, float]

  @classmethod
  def from_mapping(cls, raw: Mapping[str, float], *, known_sources: Sequence[str] | None = None,
                   normalize: bool = False) -> SourceWeights:
    """Validates raw weights (fractions summing to 1 or percentages summing to 100)."""
    if not raw:
      raise ValueError("A mixture needs at least one source weight; got none.")
    table = {s: s for s in (known_sources or (*categories.SOURCES, *categories.EXTRA_SOURCES))}
    for source, weight in raw.items():
      lookup(table, source, "source")
      if not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"Weight of source {source!r} is {weight!r}; weights must be finite numbers.")
      if weight < 0:
        raise ValueError(f"Weight of source {source!r} is negative ({weight}); weights must be >= 0.")
    total = float(sum(raw.values()))
    if total <= 0:
      raise ValueError(f"All source weights are zero ({dict(raw)}); at least one must be positive.")
    if not normalize:
      scale = 100.0 if total > 1.0 + SUM_TOLERANCE else 1.0
      if abs(total / scale - 1.0) > SUM_TOLERANCE:
        raise ValueError(
            f"Source weights sum to {total:g}, not 1 (fractions) or 100 (percent) within "
            f"{SUM_TOLERANCE * 100:g}%: {dict(raw)}. Fix the weights or pass normalize=True.")
    return cls({s: w / total for s, w in raw.items() if w > 0})


@dataclasses.dataclass(frozen=True)
class CategoryProportions:
  """Target share of segments per label category; the rest is drawn proportionally from the pool."""

  proportions: Mapping[str, float]

  def __post_init__(self):
    if not self.proportions:
      raise ValueError("A category-proportion mixture needs at least one category.")
    for category, p in self.proportions.items():
      categories.resolve_category(category)
      if not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0:
        raise ValueError(f"Proportion of {category!r} is {p!r}; proportions are fractions in [0, 1].")
      if p > 1.0:
        raise ValueError(f"Proportion of {category!r} is {p:g} (= {p * 100:g}%), over 100%; "
                         "give fractions in [0, 1].")


MixtureSpec = SourceWeights | CategoryProportions

PAPER_MIXTURES: Mapping[str, SourceWeights] = {
    name: SourceWeights.from_mapping(dict(zip(_MIX_COLUMNS, row))) for name, row in _MIX_ROWS.items()
}


def parse_spec(text: str, *, known_sources: Sequence[str] | None = None) -> MixtureSpec:
  """Parses a command-line spec: a paper mixture name ("mix6"), "code=0.5,web-crawl=0.5" (sources),
  or "cat:reasoning=0.75" / "cat:reasoning=0.6,visual=0.15" (category proportions)."""
  text = text.strip()
  if text.startswith("seqio:"):
    raise ValueError(f"Mixture {text!r} names a seqio Task or Mixture: it is resolved against the seqio registry "
                     "(data.tasks.resolve, which store_data.mixture_data calls), not parsed as a spec.")
  if text in PAPER_MIXTURES:
    return PAPER_MIXTURES[text]
  is_category = text.startswith("cat:")
  body = text.removeprefix("cat:")
  pairs = {}
  for item in filter(None, (p.strip() for p in body.split(","))):
    name, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"Cannot parse {item!r} in mixture spec {text!r}: expected NAME=WEIGHT, "
                       f"a paper mixture ({', '.join(PAPER_MIXTURES)}), or cat:CATEGORY=FRACTION.")
    try:
      pairs[name.strip()] = float(value.rstrip("%")) / (100.0 if value.endswith("%") else 1.0)
    except ValueError:
      raise ValueError(f"Weight {value!r} of {name!r} in mixture spec {text!r} is not a number.") from None
  if is_category:
    return CategoryProportions(pairs)
  return SourceWeights.from_mapping(pairs, known_sources=known_sources)


def mixture_shares(spec: SourceWeights, rates: Mapping[str, categories.LabelRates] | None = None
                   ) -> dict[str, float]:
  """The paper's reasoning and visual shares of a source mixture: sum over sources of weight x rate.

  `rates` defaults to the published per-source rates; a source without a rate is an error, not a zero.
  """
  rates = categories.published_rates() if rates is None else rates
  missing = [s for s in spec.weights if s not in rates]
  if missing:
    raise ValueError(f"No label rates for source(s) {missing}; rates are known for {sorted(rates)}. "
                     "Label the local corpus (`python -m visual_priors data labels`) to measure them.")
  return {
      category: sum(w * rates[s][category] for s, w in spec.weights.items())
      for category in ("reasoning", "visual")
  }


def _member(mask: int, category: str) -> bool:
  return any(mask >> categories.LABELS.index(label) & 1 for label in categories.labels_of(category))


def stratum_weights(spec: CategoryProportions, mask_counts: Mapping[int, int], *,
                    iterations: int = 500, tolerance: float = 1e-9) -> dict[tuple[bool, ...], float]:
  """Sampling weight of each membership stratum (one bool per spec category) of the labelled pool.

  `mask_counts` maps a segment label mask (bit i = categories.LABELS[i]) to its number of segments in
  the pool. Returns weights summing to 1 whose category marginals equal the spec, found by iterative
  proportional fitting from the pool's own distribution. Fails clearly when the target is infeasible.
  """
  names = list(spec.proportions)
  pool: dict[tuple[bool, ...], float] = {}
  for mask, count in mask_counts.items():
    if count > 0:
      key = tuple(_member(mask, c) for c in names)
      pool[key] = pool.get(key, 0.0) + count
  total = sum(pool.values())
  if total <= 0:
    raise ValueError("The labelled pool is empty: build and label segments first "
                     "(`python -m visual_priors data build` then `data labels`).")
  for i, c in enumerate(names):
    p = spec.proportions[c]
    have = sum(v for k, v in pool.items() if k[i])
    if p > 0 and have == 0:
      raise ValueError(f"Category {c!r} is asked for {p:.0%} of the mixture but no segment of the pool "
                       "carries it.")
    if p < 1 and have == total:
      raise ValueError(f"Category {c!r} is asked for {p:.0%} of the mixture but every segment of the "
                       "pool carries it, so nothing is left for the remainder.")
  weights = {k: v / total for k, v in pool.items()}
  for _ in range(iterations):
    for i, c in enumerate(names):
      p = spec.proportions[c]
      inside = sum(w for k, w in weights.items() if k[i])
      scale_in = p / inside if inside > 0 else 0.0
      scale_out = (1 - p) / (1 - inside) if inside < 1 else 0.0
      weights = {k: w * (scale_in if k[i] else scale_out) for k, w in weights.items()}
    error = max(abs(sum(w for k, w in weights.items() if k[i]) - spec.proportions[c])
                for i, c in enumerate(names))
    if error < tolerance:
      return {k: w for k, w in weights.items() if w > 0}
  raise ValueError(f"Category proportions {dict(spec.proportions)} cannot be met together by the "
                   f"labelled pool (closest marginal error {error:.3g}); the categories overlap too "
                   "much or too little in this pool.")

