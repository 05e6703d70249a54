"""Faults in pre-training's data: a vocabulary other than the store's, and damaged segment store files."""

import pytest

from visual_priors import cli
from visual_priors.data import cache, vocab
from visual_priors.train import store_data

PRETRAIN = ["pretrain", "--scale", "nano", "--steps", "2", "--batch", "8", "--seq", "32", "--eval-batch", "8",
            "--set", "model.attention_impl='xla'"]


def _data(store):
  return store_data.mixture_data(store, "mix6", batch_size=8, seq_len=32, eval_batch_size=8, seed=0)


def _source_file(store, suffix):
  return store.path(store.sources[0], "train", suffix)


def test_a_vocabulary_with_more_pieces_than_the_stores_fails_before_compute_naming_both_files(
    tmp_path, store_copy, small_corpus_args, capsys):
  bigger = vocab.train_vocab(small_corpus_args["sources"], vocab.VocabConfig(vocab_size=1100),
                             cache_dir=small_corpus_args["cache_dir"], log=lambda _: None)
  used = store_copy.vocab_path
  used.write_bytes(bigger.read_bytes())
  work_dir = tmp_path / "lm"
  code = cli.main([*PRETRAIN, "--store", str(store_copy.root), "--work-dir", str(work_dir)])
  error = capsys.readouterr().err
  assert code == 2, error
  assert str(used) in error and str(store_copy.root / "manifest.json") in error
  assert not (work_dir / "checkpoints").exists()  # nothing was computed


def test_a_different_vocabulary_file_is_refused(store_copy):
  store_copy.vocab_path.write_bytes(b"not the store's vocabulary")
  with pytest.raises(ValueError, match="does not match the segment store"):
    _data(store_copy)


@pytest.mark.parametrize("suffix", ["array_record", "masks.npy"])
def test_flipped_bytes_in_a_store_file_are_detected_on_first_use(store_copy, suffix):
  path = _source_file(store_copy, suffix)
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.raises(ValueError) as raised:
    _data(store_copy)
  assert str(path) in str(raised.value) and "sha256" in str(raised.value) and "\n" not in str(raised.value)


def test_a_verified_store_is_not_hashed_again_but_a_truncated_file_is_still_caught(store_copy, monkeypatch):
  _data(store_copy)  # first use: full content hashes, cached in the store
  hashed = []
  original = cache.sha256_file
  monkeypatch.setattr(cache, "sha256_file", lambda path, *a, **k: hashed.append(path) or original(path, *a, **k))
  _data(store_copy)
  assert not [p for p in hashed if p.name.endswith((".array_record", ".tfrecord", ".masks.npy"))]
  path = _source_file(store_copy, "array_record")
  path.write_bytes(path.read_bytes()[:-10])
  with pytest.raises(ValueError, match=str(path)):
    _data(store_copy)
