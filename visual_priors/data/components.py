"""A mixture spec resolved against a segment store into weighted components, for the grain reader.

Rates are token shares, as in the paper ("25% of the 30B tokens"). Pipelines interleave examples, and
segments differ in length across components (e-mail is short, code fills whole segments), so each
component also carries its example rate: token share divided by its mean segment length, normalised.

A component is a set of segments: those of some sources whose labels satisfy a membership predicate
(e.g. "carries reasoning and not visual"). Source weights give one component per source; category
proportions give one component per membership stratum of the whole pool, weighted by
`mixtures.stratum_weights`. Inside a component, segments are drawn uniformly, i.e. each source in
proportion to how many of its segments qualify ("drawn proportionally from the pool").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from visual_priors.data import mixtures, segments


@dataclasses.dataclass(frozen=True)
class Component:
  name: str
  sources: tuple[str, ...]
  predicate: tuple[tuple[str, bool], ...]  # (category, must carry it)
  rate: float  # share of tokens
  example_rate: float = 0.0  # share of segments that realises `rate`; set by plan_components

  def selects(self, masks: np.ndarray) -> np.ndarray:
    keep = np.ones(np.shape(masks), bool)
    for category, wanted in self.predicate:
      keep &= segments.category_member(masks, category) == wanted
    return keep


@dataclasses.dataclass(frozen=True)
class FixedComponents:
  """A plan given as components with example rates, as a seqio Mixture gives it (seqio samples examples, so
  its rates are example rates); `plan_components` derives the token rates from the segment lengths."""

  components: tuple[Component, ...]


def predicate_name(predicate: Sequence[tuple[str, bool]]) -> str:
  return "+".join(("" if wanted else "not-") + category for category, wanted in predicate) or "all"


def plan_components(store: segments.SegmentStore, spec: mixtures.MixtureSpec | FixedComponents,
                    split: str = "train", pool: Sequence[str] | None = None) -> list[Component]:
  """Weighted components of `spec` over `store`; token rates and example rates each sum to 1."""
  if isinstance(spec, FixedComponents):
    total = sum(c.example_rate for c in spec.components)
    if not spec.components or total <= 0:
      raise ValueError(f"The fixed plan {[c.name for c in spec.components]} has no positive example rate.")
    per_example = [c.example_rate / total * mean_segment_tokens(store, c, split) for c in spec.components]
    return [dataclasses.replace(c, rate=r / sum(per_example), example_rate=c.example_rate / total)
            for c, r in zip(spec.components, per_example)]
  if isinstance(spec, mixtures.SourceWeights):
    missing = [s for s in spec.weights if s not in store.sources]
    if missing:
      raise ValueError(f"Mixture needs source(s) {missing} that the segment store at {store.root} does "
                       f"not hold (it has {store.sources}); build them with "
                       f"`python -m visual_priors data build --sources {','.join(missing)}`.")
    plan = [Component(source, (source,), (), weight) for source, weight in spec.weights.items()]
  else:
    pool = tuple(pool or store.sources)
    weights = mixtures.stratum_weights(spec, store.mask_counts(split, pool))
    names = list(spec.proportions)
    plan = []
    for stratum, weight in weights.items():
      predicate = tuple(zip(names, stratum))
      plan.append(Component(predicate_name(predicate), pool, predicate, weight))
  per_token = [c.rate / mean_segment_tokens(store, c, split) for c in plan]
  total = sum(per_token)
  return [dataclasses.replace(c, example_rate=r / total) for c, r in zip(plan, per_token)]


def mean_segment_tokens(store: segments.SegmentStore, component: Component, split: str) -> float:
  lengths = [store.lengths(s, split)[ix] for s, ix in component_indices(store, component, split).items()]
  return float(np.concatenate(lengths).mean())


def component_indices(store: segments.SegmentStore, component: Component, split: str
                      ) -> Mapping[str, np.ndarray]:
  """Per source, the record indices of the component's segments in that source's split."""
  out = {}
  for source in component.sources:
    chosen = np.flatnonzero(component.selects(store.masks(source, split)))
    if chosen.size:
      out[source] = chosen
  if not out:
    raise ValueError(f"Component {component.name!r} selects no {split} segment in {store.root}.")
  return out
