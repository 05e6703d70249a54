"""Tests for visual_priors.data.labelling.evaluate and the hand-labelled asset."""

import collections
import json

import pytest

from visual_priors.data import categories
from visual_priors.data.labelling import evaluate


class FixedLabeller:
  """Returns scripted label sets, to check evaluate() against a hand computation."""

  name = "fixed"

  def __init__(self, outputs):
    self.outputs = outputs

  def label(self, texts):
    return [frozenset(self.outputs[t]) for t in texts]


def segment(text, labels):
  return evaluate.LabelledSegment(text, frozenset(labels), "made-up:case", "test")


def test_evaluate_matches_a_hand_computation():
  examples = [segment("a", {"code", "math"}), segment("b", {"code"}), segment("c", set()),
              segment("d", {"visual-concept"})]
  labeller = FixedLabeller({"a": {"code"}, "b": {"code", "science"}, "c": {"code"}, "d": {"visual-concept"}})
  result = evaluate.evaluate(labeller, examples)
  # code: predicted a, b, c; gold a, b -> tp 2, fp 1, fn 0.
  code = result.per_label["code"]
  assert (code.true_positives, code.false_positives, code.false_negatives) == (2, 1, 0)
  assert code.precision == pytest.approx(2 / 3) and code.recall == 1.0 and code.f1 == pytest.approx(0.8)
  assert code.support == 2
  # math: gold a only, never predicted -> recall 0, precision 0 (nothing predicted), F1 0.
  math = result.per_label["math"]
  assert (math.precision, math.recall, math.f1, math.support) == (0.0, 0.0, 0.0, 1)
  # science: predicted b, never gold -> precision 0, support 0.
  assert (result.per_label["science"].false_positives, result.per_label["science"].support) == (1, 0)
  assert result.per_label["visual-concept"].f1 == 1.0
  # micro: tp 2 + 1 = 3; fp 1 + 1 = 2; fn 1 -> P 3/5, R 3/4, F1 2*3/(2*3+2+1) = 2/3.
  assert (result.micro.true_positives, result.micro.false_positives, result.micro.false_negatives) == (3, 2, 1)
  assert result.micro.precision == pytest.approx(0.6)
  assert result.micro.recall == pytest.approx(0.75)
  assert result.micro.f1 == pytest.approx(2 / 3)
  assert result.examples == 4
  table = evaluate.format_evaluation(result, "made up")
  assert "| code | 0.667 | 1.000 | 0.800 | 2 |" in table and "micro average" in table


def test_score_predictions_needs_pairs():
  with pytest.raises(ValueError, match="pair up"):
    evaluate.score_predictions([frozenset()], [])


def test_the_asset_has_both_splits_and_enough_positives():
  every = evaluate.load_handlabelled()
  assert 120 <= len(every) <= 160
  for split in evaluate.SPLITS:
    rows = evaluate.load_handlabelled(split)
    assert len(rows) >= 0.4 * len(every) and all(r.split == split for r in rows)
    counts = collections.Counter(label for r in rows for label in r.labels)
    assert all(counts[label] >= 7 for label in categories.LABELS), counts
  totals = collections.Counter(label for r in every for label in r.labels)
  assert all(totals[label] >= 15 for label in categories.LABELS), totals
  assert all(80 <= len(r.text.split()) <= 250 and ":" in r.origin for r in every)
  assert len({r.text for r in every}) == len(every)


def test_bad_asset_rows_and_splits_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match="Unknown split"):
    evaluate.load_handlabelled("train")
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"text": "x", "labels": ["visual"], "origin": "p:q", "split": "dev"}) + "\n")
  with pytest.raises(ValueError, match=r"bad.jsonl:1.*unknown: \['visual'\]"):
    evaluate.load_handlabelled(path=bad)

