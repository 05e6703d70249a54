"""Tests for visual_priors.data.labelling.base: label masks and building labellers from configs."""

import itertools

import ml_collections
import pytest

from visual_priors.data import categories
from visual_priors.data.labelling import base, labeller_kinds, make_labeller
from visual_priors.data.labelling.lexicon import LexiconLabeller
from visual_priors.data.labelling.llm import LlmLabeller
from visual_priors.names import UnknownNameError


def test_mask_round_trip_over_every_label_subset():
  for size in range(len(categories.LABELS) + 1):
    for subset in itertools.combinations(categories.LABELS, size):
      mask = base.labels_to_mask(subset)
      assert 0 <= mask < 2 ** len(categories.LABELS)
      assert base.mask_to_labels(mask) == frozenset(subset)


def test_mask_bit_i_is_labels_i():
  for bit, label in enumerate(categories.LABELS):
    assert base.labels_to_mask([label]) == 1 << bit


def test_bad_labels_and_masks_fail_clearly():
  with pytest.raises(UnknownNameError, match="visual-concept"):
    base.labels_to_mask(["visual-concepts"])
  with pytest.raises(ValueError, match="outside"):
    base.mask_to_labels(1 << len(categories.LABELS))
  with pytest.raises(ValueError, match="outside"):
    base.mask_to_labels(-1)


def test_both_kinds_are_registered():
  assert labeller_kinds() == ("lexicon", "llm")


def test_make_labeller_builds_each_kind(tmp_path):
  lexicon = make_labeller(ml_collections.ConfigDict({"kind": "lexicon"}))
  assert isinstance(lexicon, LexiconLabeller)
  assert lexicon.name.startswith("lexicon-")
  llm = make_labeller(ml_collections.ConfigDict({
      "kind": "llm", "base_url": "http://127.0.0.1:9/v1", "model": "qwen-32b",
      "cache_path": str(tmp_path / "c.sqlite"), "concurrency": 3}))
  assert isinstance(llm, LlmLabeller)
  assert llm.config.concurrency == 3
  assert "qwen-32b" in llm.name


@pytest.mark.parametrize("config, error, match", [
    ({"kind": "lexicom"}, UnknownNameError, "Did you mean 'lexicon'"),
    ({"model": "m"}, ValueError, "has no 'kind'"),
    ({"kind": "llm", "model": "m"}, ValueError, "needs base_url"),
    ({"kind": "llm", "base_url": "http://x/v1", "model": "m", "concurency": 4}, ValueError,
     "Did you mean 'concurrency'"),
    ({"kind": "llm", "base_url": "localhost:8000", "model": "m"}, ValueError, "http://"),
    ({"kind": "llm", "base_url": "http://x/v1", "model": "m", "concurrency": 0}, ValueError, "concurrency"),
    ({"kind": "lexicon", "thresholds": {"code": 1.0}}, ValueError, "missing"),
    ({"kind": "lexicon", "lexicon_dir": "/nonexistent/lexicons"}, FileNotFoundError, "code.txt"),
])
def test_bad_configs_fail_with_a_clear_error(config, error, match, tmp_path):
  if config.get("kind") == "llm":
    config = {**config, "cache_path": str(tmp_path / "c.sqlite")}
  with pytest.raises(error, match=match):
    make_labeller(ml_collections.ConfigDict(config))
