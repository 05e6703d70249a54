"""Tests for visual_priors.data.segments and visual_priors.data.vocab on a small real corpus."""

import pathlib
import shutil

import numpy as np
import pytest

from visual_priors.data import segments, vocab


def test_vocab_follows_seqio_id_conventions(small_vocab):
  sp = vocab.load_processor(small_vocab)
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)


@pytest.mark.parametrize("text", [
    "def f(x):\n    return x ** 2  # squares\n\n\tindented with a tab\n",
    "Call me Ishmael. Some years ago—never mind how long precisely—",
    "∀x ∈ ℝ: x² ≥ 0, and 12345 + 67890 = 80235.",
])
def test_vocab_round_trips_code_prose_and_unicode(small_vocab, text):
  sp = vocab.load_processor(small_vocab)
  assert sp.decode(sp.encode(text)) == text


def test_segments_end_with_eos_and_fit_the_length(small_store):
  from array_record.python.array_record_module import ArrayRecordReader
  source = small_store.sources[0]
  lengths = small_store.lengths(source, "train")
  assert lengths.max() <= small_store.segment_length
  assert (lengths == small_store.segment_length).any()  # long documents fill whole segments
  reader = ArrayRecordReader(str(small_store.path(source, "train", "array_record")))
  records = reader.read_all()
  assert len(records) == len(lengths) == small_store.num_segments(source, "train")
  for raw, n in zip(records[:50], lengths):
    ids = np.frombuffer(raw, np.int32)
    assert ids.size == n and ids[-1] == vocab.EOS_ID and (ids[:-1] != vocab.EOS_ID).all()


def test_every_source_has_both_splits_and_labels(small_store):
  for source in small_store.sources:
    for split in segments.SPLITS:
      assert small_store.num_segments(source, split) > 0
    masks = small_store.masks(source, "train")
    assert masks.dtype == np.uint8 and masks.max() < 64
  rates = small_store.label_rates("code")
  assert rates["code"] > 0.5  # the stdlib is code


def test_mismatched_vocabulary_is_refused(small_store, tmp_path):
  other = tmp_path / "other.model"
  other.write_bytes(small_store.vocab_path.read_bytes() + b"\0")
  with pytest.raises(ValueError, match="does not match the segment store"):
    small_store.check_vocab(other)


def test_missing_store_fails_clearly(tmp_path):
  with pytest.raises(FileNotFoundError, match="data build"):
    segments.SegmentStore(tmp_path / "nowhere")


def test_rebuild_is_a_no_op(small_store, small_vocab, small_corpus_args):
  messages = []
  again = segments.build_segment_store(small_store.sources, small_vocab, small_corpus_args["labeller"],
                                       segments.SegmentConfig(segment_length=small_store.segment_length),
                                       cache_dir=small_corpus_args["cache_dir"], log=messages.append)
  assert again.root == small_store.root and "up to date" in messages[0]


def test_failed_store_build_leaves_nothing_behind(small_vocab, small_corpus_args):
  class Broken:
    name = "broken-labeller"

    def label(self, texts):
      raise RuntimeError("labeller crashed")

  root = small_corpus_args["cache_dir"] / "segments"
  before = sorted(p.name for p in root.iterdir())
  with pytest.raises(RuntimeError, match="labeller crashed"):
    segments.build_segment_store(small_corpus_args["sources"], small_vocab, Broken(),
                                 segments.SegmentConfig(segment_length=64), cache_dir=small_corpus_args["cache_dir"])
  assert sorted(p.name for p in root.iterdir()) == before


def test_bad_segment_config():
  with pytest.raises(ValueError, match="too small"):
    segments.SegmentConfig(segment_length=4)


def test_a_moved_cache_finds_its_store_and_vocabulary(small_store, tmp_path):
  from visual_priors.data import cache  # pylint: disable=import-outside-toplevel

  moved = tmp_path / "moved"  # the cache copied elsewhere, the original gone (simulated: stale recorded paths)
  recorded_vocab = pathlib.Path(small_store.manifest["vocab"]["path"])
  shutil.copytree(small_store.root, moved / "segments" / small_store.root.name)
  shutil.copytree(recorded_vocab.parent, moved / "vocab" / recorded_vocab.parent.name)
  gone = f"/gone/vocab/{recorded_vocab.parent.name}/{recorded_vocab.name}"
  manifest = dict(small_store.manifest, vocab={**small_store.manifest["vocab"], "path": gone})
  cache.write_json_atomic(moved / "segments" / small_store.root.name / "manifest.json", manifest)
  cache.write_json_atomic(moved / segments.LATEST, {"store": f"/gone/segments/{small_store.root.name}"})

  store = segments.open_store(None, str(moved))
  assert store.root == moved / "segments" / small_store.root.name
  assert store.vocab_path == moved / "vocab" / recorded_vocab.parent.name / recorded_vocab.name
  store.check_vocab(store.vocab_path)
