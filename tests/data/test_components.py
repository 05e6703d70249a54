"""Tests for visual_priors.data.components: mixture specs resolved against a segment store."""

import numpy as np
import pytest

from visual_priors.data import components, mixtures


def test_example_rates_turn_token_shares_into_segment_shares(small_store):
  a, b = small_store.sources[:2]
  plan = components.plan_components(small_store, mixtures.SourceWeights.from_mapping({a: 0.5, b: 0.5}))
  mean = {s: small_store.lengths(s, "train").mean() for s in (a, b)}
  want = (0.5 / mean[a]) / (0.5 / mean[a] + 0.5 / mean[b])
  assert plan[0].example_rate == pytest.approx(want)
  assert sum(c.rate for c in plan) == pytest.approx(1.0)
  assert sum(c.example_rate for c in plan) == pytest.approx(1.0)


def test_category_components_partition_the_pool(small_store):
  plan = components.plan_components(small_store, mixtures.CategoryProportions({"reasoning": 0.5, "visual": 0.2}))
  assert sum(c.rate for c in plan) == pytest.approx(1.0)
  for source in small_store.sources:
    masks = small_store.masks(source, "train")
    chosen = np.sum([c.selects(masks) for c in plan], axis=0)
    assert (chosen == 1).all()  # every segment is in exactly one stratum
