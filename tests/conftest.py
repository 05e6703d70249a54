"""Test session setup (an 8-device CPU mesh, quiet TensorFlow) and the shared small real corpus, vocab and store."""

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Hermetic: the data cache (corpora, stores, benchmark files) is this session's own temporary folder, never
# the user's; only downloaded package files (immutable, fetched again when absent) stay in the shared download
# cache, so a test run does not download every package anew.
_default_cache = pathlib.Path(os.environ.get("VISUAL_PRIORS_CACHE") or pathlib.Path.home() / ".cache" / "visual_priors")
os.environ.setdefault("VISUAL_PRIORS_DOWNLOADS", str(_default_cache / "downloads"))
os.environ["VISUAL_PRIORS_CACHE"] = tempfile.mkdtemp(prefix="visual_priors-test-cache-")
atexit.register(shutil.rmtree, os.environ["VISUAL_PRIORS_CACHE"], ignore_errors=True)
# grain workers and seqio read absl flags; mark them parsed so library code does not abort.
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

# Imported after the environment above is set: these modules may import jax.

import pytest  # noqa: E402

from visual_priors.data import corpora, segments, vocab  # noqa: E402
from visual_priors.data.labelling import make_labeller  # noqa: E402

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


def _user_texts(count: int, seed: int) -> list[str]:
  """Short, learnable English-like documents (one segment each at any segment length >= 64)."""
  import random  # pylint: disable=import-outside-toplevel
  rng = random.Random(seed)
  animals, places = ("cat", "dog", "fox", "owl", "bee"), ("park", "river", "market", "garden")
  return [f"Note {i}: the {rng.choice(animals)} went to the {rng.choice(places)} and counted "
          f"{' '.join(str(i + k) for k in range(4))}." for i in range(count)]


@pytest.fixture(scope="session")
def user_texts():
  """`user_texts(count, seed)`: short, learnable documents for a user's seqio Task."""
  return _user_texts


@pytest.fixture(scope="session")
def user_vocab(tmp_path_factory):
  """A SentencePiece model trained in the test on the user documents, with seqio's ids (pad 0, eos 1, unk 2)."""
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  prefix = tmp_path_factory.mktemp("user_vocab") / "user"
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(_user_texts(400, 0)), model_prefix=str(prefix), vocab_size=320, model_type="unigram",
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False, minloglevel=2)
  return pathlib.Path(f"{prefix}.model")


@pytest.fixture(scope="session")
def register_user_task(user_vocab):
  """A factory: registers a seqio Task (a user's, by seqio.TaskRegistry.add) over in-memory train and validation
  texts with the `user_vocab` SentencePiece vocabulary on "targets"; returns its name."""
  import functools  # pylint: disable=import-outside-toplevel

  import seqio  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  def register(name: str, train: list[str], validation: list[str], **task_args) -> str:
    texts = {"train": list(train), "validation": list(validation)}

    def dataset_fn(split, shuffle_files, seed=None):
      del shuffle_files, seed
      return tf.data.Dataset.from_tensor_slices({"text": tf.constant(texts[split], tf.string)})

    if name in seqio.TaskRegistry.names():
      seqio.TaskRegistry.remove(name)
    vocabulary = seqio.SentencePieceVocabulary(str(user_vocab))
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(dataset_fn, splits=("train", "validation")),
        preprocessors=[functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
                       seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features=task_args.pop("output_features", None) or {
            "targets": seqio.Feature(vocabulary, add_eos=True, dtype=tf.int32)},
        **task_args)
    return name

  return register
