"""The SentencePiece vocabulary: the same corpora and settings give the same model file, wherever it is built."""

import json
import shutil

from visual_priors.data import vocab


def test_the_same_vocabulary_built_in_two_places_is_byte_identical(small_corpus_args, small_vocab, tmp_path):
  config = vocab.VocabConfig(**json.loads((small_vocab.parent / "manifest.json").read_text())["config"])
  shutil.copytree(small_corpus_args["cache_dir"] / "corpora", tmp_path / "corpora")
  again = vocab.train_vocab(small_corpus_args["sources"], config, cache_dir=tmp_path, log=lambda _: None)
  assert again != small_vocab
  assert again.read_bytes() == small_vocab.read_bytes()  # no temporary path recorded inside
