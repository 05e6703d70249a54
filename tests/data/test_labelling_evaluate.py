"""Tests for visual_priors.data.labelling.evaluate and the hand-labelled asset."""

import argparse
import collections
import json

import pytest

from visual_priors.data import categories, commands, labelling
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
  for split in evaluate.SPLITS:
    rows = evaluate.load_handlabelled(split)
    assert len(rows) >= 0.3 * len(every) and all(r.split == split for r in rows)
    counts = collections.Counter(label for r in rows for label in r.labels)
    assert all(counts[label] >= 7 for label in categories.LABELS), counts
  totals = collections.Counter(label for r in every for label in r.labels)
  assert all(totals[label] >= 25 for label in categories.LABELS), totals
  assert all(80 <= len(r.text.split()) <= 250 and ":" in r.origin for r in every)
  assert len({r.text for r in every}) == len(every)


def test_every_source_has_at_least_50_test_segments_from_the_fresh_batch():
  every = evaluate.load_handlabelled()
  test = collections.Counter(r.source for r in every if r.split == "test")
  assert set(test) == set(evaluate.KNOWN_SOURCES), test
  for source in evaluate.KNOWN_SOURCES:
    assert test[source] >= 50, (source, test[source])
  # The test split is only the fresh batch; the earlier batches (the v1 set with its peeked test half, and the v2
  # test batch, scored once and then moved to dev) are tuning data.
  assert all((r.split == "test") == (r.batch == evaluate.TEST_BATCH) for r in every)
  assert {r.batch for r in every if r.split == "dev"} == {"v1-dev", "v1-test-peeked", "v2-fresh-test"}


DOCUMENTS = [
    {"text": "\n".join(f"line {d} {i} " + " ".join(f"w{d}x{i}x{k}" for k in range(9)) for i in range(60)),
     "origin": f"made-up:doc{d}"} for d in range(4)
] + [{"text": "too short to cut", "origin": "made-up:short"}]


def test_sample_windows_is_seeded_bounded_and_never_overlaps():
  first = evaluate.sample_windows(DOCUMENTS, 12, seed=3)
  assert first == evaluate.sample_windows(DOCUMENTS, 12, seed=3)
  assert first != evaluate.sample_windows(DOCUMENTS, 12, seed=4)
  for window in first:
    assert evaluate.MIN_WORDS <= len(window["text"].split()) <= evaluate.MAX_WORDS
    assert window["text"].startswith("line ")  # moved back to a line break
    source = DOCUMENTS[int(window["origin"].split(":doc")[1].split("#")[0])]["text"]
    assert window["text"] in source and "#words-" in window["origin"]
  shingles = [evaluate._shingles(w["text"]) for w in first]  # pylint: disable=protected-access
  assert all(not a & b for i, a in enumerate(shingles) for b in shingles[i + 1:])
  avoided = evaluate.sample_windows(DOCUMENTS, 3, seed=3, avoid=[first[0]["text"]])
  assert all(not evaluate._shingles(w["text"]) & shingles[0] for w in avoided)  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="non-overlapping"):
    evaluate.sample_windows(DOCUMENTS, 40, seed=0)


def _recomputed_rows(labeller):
  """Per-label (precision, recall, F1, support) on the test split, counted here straight from the asset file."""
  rows = [json.loads(line) for line in evaluate.HANDLABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
  rows = [r for r in rows if r["split"] == "test"]
  predicted = labeller.label([r["text"] for r in rows])
  table = {}
  for label in categories.LABELS:
    tp = sum(label in p and label in r["labels"] for p, r in zip(predicted, rows))
    fp = sum(label in p and label not in r["labels"] for p, r in zip(predicted, rows))
    fn = sum(label not in p and label in r["labels"] for p, r in zip(predicted, rows))
    precision, recall = tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    table[label] = f"| {label} | {precision:.3f} | {recall:.3f} | {f1:.3f} | {tp + fn} |"
  return table, len(rows)


def test_the_data_labels_table_is_computed_from_the_asset():
  lexicon_labeller = labelling.make_labeller({"kind": "lexicon"})
  printed = commands._labeller_quality(lexicon_labeller.name, argparse.Namespace(llm_url=None, llm_model=None,
                                                                                 cache_dir=None))
  expected, count = _recomputed_rows(lexicon_labeller)
  assert f"({count} segments)" in printed and lexicon_labeller.name in printed
  for row in expected.values():
    assert row in printed, (row, printed)
  assert "targets: precision >= 0.8, recall >= 0.7" in printed
  assert "the store was labelled by" not in printed and "LLM" not in printed


def test_the_data_labels_table_scores_the_llm_labeller_when_its_endpoint_is_given(monkeypatch, tmp_path):
  gold = {r.text: r.labels for r in evaluate.load_handlabelled()}
  configs = []
  real = labelling.make_labeller

  def fake_make_labeller(config):
    configs.append(dict(config))
    if config["kind"] != "llm":
      return real(config)
    labeller = FixedLabeller(gold)
    labeller.name = "llm-v1:fake-model"
    return labeller

  monkeypatch.setattr(labelling, "make_labeller", fake_make_labeller)
  without = commands._labeller_quality("llm-v1:fake-model", argparse.Namespace(llm_url=None, llm_model=None,
                                                                               cache_dir=str(tmp_path)))
  assert "pass --llm-url and --llm-model" in without and "the store was labelled by llm-v1:fake-model" in without
  printed = commands._labeller_quality("llm-v1:fake-model", argparse.Namespace(
      llm_url="http://localhost:1/v1", llm_model="fake-model", cache_dir=str(tmp_path)))
  assert "LLM labeller on the hand-labelled test split (llm-v1:fake-model)" in printed
  assert "| code | 1.000 | 1.000 | 1.000 |" in printed and printed.endswith("all met")
  assert configs[-1]["base_url"] == "http://localhost:1/v1" and configs[-1]["model"] == "fake-model"


def test_bad_asset_rows_and_splits_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match="Unknown split"):
    evaluate.load_handlabelled("train")
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"text": "x", "labels": ["visual"], "origin": "p:q", "split": "dev"}) + "\n")
  with pytest.raises(ValueError, match=r"bad.jsonl:1.*unknown: \['visual'\]"):
    evaluate.load_handlabelled(path=bad)

