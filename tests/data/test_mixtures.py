"""Tests for visual_priors.data.mixtures."""

import pytest

from visual_priors.data import mixtures
from visual_priors.data.categories import LABELS
from visual_priors.names import UnknownNameError


def test_mix6_shares_equal_hand_computation():
  # mix6 = 40 web, 8 enc, 5 acad, 2 lit, 10 math, 35 code; reasoning comb. rates 10.0, 3.4, 83.3, 9.1, 92.9, 97.3.
  reasoning = (40 * 10.0 + 8 * 3.4 + 5 * 83.3 + 2 * 9.1 + 10 * 92.9 + 35 * 97.3) / 100 / 100
  visual = (40 * 26.9 + 8 * 12.4 + 5 * 5.3 + 2 * 33.5 + 10 * 8.0 + 35 * 3.7) / 100 / 100
  shares = mixtures.mixture_shares(mixtures.PAPER_MIXTURES["mix6"])
  assert shares["reasoning"] == pytest.approx(reasoning)
  assert shares["visual"] == pytest.approx(visual)


def test_reasoning_share_rises_and_visual_falls_from_mix0_to_mix10():
  shares = [mixtures.mixture_shares(s) for s in mixtures.PAPER_MIXTURES.values()]
  assert len(shares) == 11
  assert all(a["reasoning"] < b["reasoning"] for a, b in zip(shares, shares[1:]))
  assert all(a["visual"] > b["visual"] for a, b in zip(shares, shares[1:]))


def test_rounded_published_rows_are_accepted_and_normalised():
  weights = mixtures.PAPER_MIXTURES["mix1"].weights  # published row sums to 99.9
  assert sum(weights.values()) == pytest.approx(1.0)
  assert weights["web-crawl"] == pytest.approx(48.3 / 99.9)


@pytest.mark.parametrize("raw, message", [
    ({"code": -0.1, "math": 1.1}, "negative"),
    ({"code": 0.0, "math": 0.0}, "zero"),
    ({"code": 0.3, "math": 0.3}, "sum to 0.6"),
    ({}, "at least one"),
    ({"code": float("nan")}, "finite"),
])
def test_bad_weights_fail_clearly(raw, message):
  with pytest.raises(ValueError, match=message):
    mixtures.SourceWeights.from_mapping(raw)


def test_unknown_source_names_closest():
  with pytest.raises(UnknownNameError, match="'code'"):
    mixtures.SourceWeights.from_mapping({"cod": 1.0})


def test_normalize_accepts_any_positive_weights():
  spec = mixtures.SourceWeights.from_mapping({"code": 3, "math": 1, "law": 0}, normalize=True)
  assert spec.weights == {"code": 0.75, "math": 0.25}


@pytest.mark.parametrize("props, message", [({"reasoning": 1.25}, "over 100%"), ({"reasoning": -0.1}, "fractions"),
                                            ({}, "at least one")])
def test_bad_category_proportions_fail_clearly(props, message):
  with pytest.raises(ValueError, match=message):
    mixtures.CategoryProportions(props)


def test_unknown_category_fails_with_close_match():
  with pytest.raises(UnknownNameError, match="visual"):
    mixtures.CategoryProportions({"visuals": 0.2})


def _mask(*labels):
  return sum(1 << LABELS.index(l) for l in labels)


POOL = {_mask("code"): 50, _mask("visual-concept"): 30, _mask("code", "visual-attribute"): 5, 0: 100,
        _mask("math", "science"): 15}


def test_single_category_keeps_pool_proportions_inside_and_outside():
  weights = mixtures.stratum_weights(mixtures.CategoryProportions({"reasoning": 0.75}), POOL)
  assert weights == {(True,): pytest.approx(0.75), (False,): pytest.approx(0.25)}


def test_two_overlapping_categories_meet_both_marginals():
  spec = mixtures.CategoryProportions({"reasoning": 0.6, "visual": 0.15})
  weights = mixtures.stratum_weights(spec, POOL)
  assert sum(weights.values()) == pytest.approx(1.0)
  assert sum(w for k, w in weights.items() if k[0]) == pytest.approx(0.6, abs=1e-8)
  assert sum(w for k, w in weights.items() if k[1]) == pytest.approx(0.15, abs=1e-8)
  # IPF keeps the pool's odds ratio between the two memberships.
  pool = {(True, True): 5, (True, False): 65, (False, True): 30, (False, False): 100}
  odds = lambda t: t[(True, True)] * t[(False, False)] / (t[(True, False)] * t[(False, True)])
  assert odds(weights) == pytest.approx(odds(pool), rel=1e-6)


def test_zero_and_full_proportions_use_one_side_only():
  assert mixtures.stratum_weights(mixtures.CategoryProportions({"code": 1.0}), POOL) == {(True,): pytest.approx(1.0)}
  assert mixtures.stratum_weights(mixtures.CategoryProportions({"code": 0.0}), POOL) == {(False,): pytest.approx(1.0)}


def test_category_absent_from_pool_fails():
  with pytest.raises(ValueError, match="no segment of the pool carries it"):
    mixtures.stratum_weights(mixtures.CategoryProportions({"visual-relationship": 0.25}), POOL)


def test_parse_spec_forms():
  assert mixtures.parse_spec("mix6") is mixtures.PAPER_MIXTURES["mix6"]
  assert mixtures.parse_spec("code=50%,math=50%").weights == {"code": 0.5, "math": 0.5}
  assert mixtures.parse_spec("cat:reasoning=0.6,visual=0.15").proportions == {"reasoning": 0.6, "visual": 0.15}
  with pytest.raises(ValueError, match="NAME=WEIGHT"):
    mixtures.parse_spec("code")
