"""SentencePiece vocabulary trained on the local corpus, with seqio's id conventions (pad 0, eos 1, unk 2).

Settings chosen for a pre-training corpus that mixes prose, math and code: identity normalisation and no
whitespace collapsing (indentation survives), byte fallback (any character, newlines included, round-trips),
digits split into single pieces (arithmetic is not memorised as whole numbers). The training text is a
deterministic, source-balanced sample of paragraphs from each source's train split.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
from collections.abc import Iterator, Sequence

from visual_priors import console
from visual_priors.data import cache

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
VOCAB_VERSION = 1


@dataclasses.dataclass(frozen=True)
class VocabConfig:
  vocab_size: int = 32000
  model_type: str = "unigram"  # "unigram" (seqio/T5 default) or "bpe" (Llama)
  max_mb_per_source: float = 2.0  # training text sampled per source (14 MB over the 7 local sources)
  max_paragraph_chars: int = 2000
  seed: int = 42

  def __post_init__(self):
    if self.vocab_size < 64:
      raise ValueError(f"vocab_size={self.vocab_size} is too small; use at least 64.")
    if self.model_type not in ("unigram", "bpe"):
      raise ValueError(f"model_type={self.model_type!r}; expected 'unigram' or 'bpe'.")


def _paragraphs(documents: Iterator[dict], budget_bytes: int, max_chars: int) -> Iterator[str]:
  used = 0
  for doc in documents:
    for paragraph in doc["text"].split("\n\n"):
      paragraph = paragraph.strip("\n")
      while paragraph and used < budget_bytes:
        piece, paragraph = paragraph[:max_chars], paragraph[max_chars:]
        used += len(piece.encode("utf-8"))
        yield piece
    if used >= budget_bytes:
      return


def vocab_dir(corpus_manifests: dict[str, dict], config: VocabConfig, cache_dir=None) -> pathlib.Path:
  key = cache.sha256_json({"version": VOCAB_VERSION, "config": dataclasses.asdict(config),
                           "corpora": {s: cache.sha256_json(m) for s, m in corpus_manifests.items()}})
  return cache.cache_root(cache_dir) / "vocab" / f"spm{config.vocab_size}-{key[:12]}"


def train_vocab(sources: Sequence[str], config: VocabConfig = VocabConfig(), cache_dir=None,
                log=print) -> pathlib.Path:
  """Trains (or reuses) a SentencePiece model on the sources' train splits; returns the model path."""
  spm = _sentencepiece()
  from visual_priors.data import corpora  # pylint: disable=import-outside-toplevel

  manifests = {s: corpora.corpus_manifest(s, cache_dir=cache_dir) for s in sources}
  out = vocab_dir(manifests, config, cache_dir)
  model_path = out / "spm.model"
  if (out / "manifest.json").exists() and model_path.exists():
    log(f"vocab {out.name}: up to date")
    return model_path

  budget = int(config.max_mb_per_source * 1e6)

  def sentences() -> Iterator[str]:
    # Round-robin over sources so every source shapes the vocabulary, whatever their sizes.
    streams = [_paragraphs(corpora.read_documents(s, "train", cache_dir=cache_dir), budget,
                           config.max_paragraph_chars) for s in sources]
    while streams:
      for stream in list(streams):
        piece = next(stream, None)
        if piece is None:
          streams.remove(stream)
        else:
          yield piece

  spm.set_random_generator_seed(config.seed)
  with cache.atomic_directory(out) as tmp:
    # Written through model_writer, not model_prefix: the model file records its prefix, and a temporary path in
    # it made two builds of the same vocabulary differ in bytes (and so in every store name downstream).
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences(),
        model_writer=model,
        vocab_size=config.vocab_size,
        model_type=config.model_type,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        byte_fallback=True,
        max_sentence_length=config.max_paragraph_chars * 4,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        hard_vocab_limit=False,
        num_threads=2,
        minloglevel=2,
    )
    (tmp / "spm.model").write_bytes(model.getvalue())
    manifest = {
        "version": VOCAB_VERSION,
        "config": dataclasses.asdict(config),
        "sources": list(sources),
        "corpora": {s: cache.sha256_json(m) for s, m in manifests.items()},
        "sha256": cache.sha256_file(tmp / "spm.model"),
        "vocab_size": spm.SentencePieceProcessor(model_file=str(tmp / "spm.model")).get_piece_size(),
    }
    cache.write_json_atomic(tmp / "manifest.json", manifest)
  log(f"vocab {out.name}: trained, {manifest['vocab_size']} pieces")
  return model_path


def vocab_sha256(model_path: pathlib.Path) -> str:
  return cache.sha256_file(model_path)


def _sentencepiece():
  """The sentencepiece module, with its C++ INFO lines (e.g. "precompiled_charsmap is empty. use identity
  normalization." at every load of an identity-normalised model) off unless --verbose."""
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  if not console.verbose():
    spm.set_min_log_level(1)
  return spm


def load_processor(model_path: pathlib.Path):
  """A sentencepiece processor for `model_path`, with a clear error when the file is missing."""
  spm = _sentencepiece()
  model_path = pathlib.Path(model_path)
  if not model_path.exists():
    raise FileNotFoundError(f"No vocabulary at {model_path}; train one with "
                            "`python -m visual_priors data build`.")
  return spm.SentencePieceProcessor(model_file=str(model_path))


def seqio_vocabulary(model_path: pathlib.Path):
  """The seqio vocabulary object for a model file (imports seqio, hence TensorFlow)."""
  _sentencepiece()
  import seqio  # pylint: disable=import-outside-toplevel
  return seqio.SentencePieceVocabulary(str(model_path))
