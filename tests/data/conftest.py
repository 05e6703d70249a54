"""Shared data fixtures: one small real corpus, vocabulary and segment store per test session."""

import pytest

from visual_priors.data import corpora, segments, vocab
from visual_priors.data.labelling import make_labeller

SMALL_MB = 0.05  # per source: every built-in source, real text, ~50 kB each
SMALL_VOCAB = 1000
SMALL_SEGMENT = 64


@pytest.fixture(scope="session")
def small_corpus_args(tmp_path_factory):
  """A fresh cache holding small real corpora; downloads reuse the persistent download cache."""
  cache_dir = tmp_path_factory.mktemp("cache")
  sources = list(corpora.BUILTIN_SOURCES)
  corpora.build_corpora(sources, cache_dir=cache_dir, max_mb_per_source=SMALL_MB, log=lambda _: None,
                        downloads_dir=corpora.fetch.downloads_root())
  return {"cache_dir": cache_dir, "sources": sources, "labeller": make_labeller({"kind": "lexicon"})}


@pytest.fixture(scope="session")
def small_vocab(small_corpus_args):
  return vocab.train_vocab(small_corpus_args["sources"], vocab.VocabConfig(vocab_size=SMALL_VOCAB),
                           cache_dir=small_corpus_args["cache_dir"], log=lambda _: None)


@pytest.fixture(scope="session")
def small_store(small_corpus_args, small_vocab):
  return segments.build_segment_store(
      small_corpus_args["sources"], small_vocab, small_corpus_args["labeller"],
      segments.SegmentConfig(segment_length=SMALL_SEGMENT), cache_dir=small_corpus_args["cache_dir"],
      log=lambda _: None)
