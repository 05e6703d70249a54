"""The language evaluation of a Decoder: validation perplexity per source and category, Wikitext, LAMBADA, zero-shot.

Perplexity = exp(total NLL / total tokens) over the scored (non-pad) target tokens, token-weighted
across documents; it depends on the tokenizer, so compare runs that share a vocabulary (every run of
a study built on one segment store does). Result rows (`visual_priors.analysis.results`):
  val/<source>          the segment store's validation split of that source (group "source");
  val/cat:<category>    its segments carrying the category, over every source (group "category"; the
                        "cat:" prefix as in mixture specs, since "code" and "math" are sources too);
                        each segment read after a BOS and scored to its closing EOS, as pre-training reads it
  wikitext              `wiki.test.raw`: split into articles at top-level " = Title = " lines, the corpus'
                        spaced punctuation (" @-@ ", " , " ...) undone, each article scored with rolling
                        windows (`loglik`: stride = seq_len unless given)
  lambada               JSONL {"text"}: perplexity of the whole texts, and "accuracy" (percent) of the last
                        word: the passage's final space-separated word counts as right when every one of
                        its tokens is the model's greedy choice (lm-eval-harness' LAMBADA)
  <zero-shot task>      "accuracy" and "accuracy_norm" (`zero_shot`); built-in tasks as "builtin/<name>"
  language              "perplexity_mean" (mean of the Wikitext and LAMBADA perplexities present),
                        "zero_shot_mean" (mean accuracy of the paper's zero-shot tasks present, ARC as
                        arc_easy and arc_challenge) and "zero_shot_builtin_mean" (of the built-in tasks)
Files a task needs that are not under `data_root` are reported missing (logged, no row), so the
evaluation runs with whatever has been downloaded; the built-in tasks always run.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from visual_priors.data import cache, categories, segments, vocab
from visual_priors.eval import builtin_tasks, loglik, zero_shot
from visual_priors.models.decoder import Decoder
from visual_priors.names import lookup

STORE_TASK = "val"
FILE_TASKS = ("wikitext", "lambada")
BUILTIN_TASKS = tuple(builtin_tasks.TASKS)
TASKS: tuple[str, ...] = (STORE_TASK, *FILE_TASKS, *zero_shot.PAPER_TASKS, *BUILTIN_TASKS)
WIKITEXT_FILES = ("wikitext/wiki.test.raw", "wiki.test.raw", "wikitext-103-raw/wiki.test.raw",
                  "wikitext-2-raw/wiki.test.raw", "wikitext/wikitext-103-raw/wiki.test.raw",
                  "wikitext/wikitext-2-raw/wiki.test.raw")
LAMBADA_FILES = ("lambada.jsonl", "lambada_test.jsonl", "lambada/lambada_test.jsonl", "lambada/test.jsonl")
_CHUNK = 2048  # documents scored per call, to bound host memory on large validation splits
_HEADING = re.compile(r"^ = [^=].* = $")
_WIKITEXT_SPACING = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), ("( ", "("), (" )", ")"), (" 's", "'s"),
                     (" n't", "n't"))
_SPACED_PUNCTUATION = re.compile(r" ([.,;:!?])(?=\s|$)")

Encode = Callable[[str], Sequence[int]]


def _row(benchmark: str, metric: str, value: float, count: int | None, group: str | None = None) -> dict[str, Any]:
  return {"benchmark": benchmark, "group": group, "metric": metric, "value": float(value), "count": count}


def perplexity(nll: float, tokens: int) -> float:
  if tokens <= 0:
    raise ValueError("Perplexity of zero tokens is undefined.")
  return math.exp(nll / tokens)


def _nll_and_tokens(model: Decoder, documents: Sequence[np.ndarray], *, seq_len: int, batch_size: int,
                    stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Per document: summed NLL and scored-token count (documents scored in chunks)."""
  nll, tokens = np.zeros(len(documents)), np.zeros(len(documents), np.int64)
  for first in range(0, len(documents), _CHUNK):
    scored = loglik.score_documents(model, documents[first:first + _CHUNK], seq_len=seq_len,
                                    batch_size=batch_size, stride=stride)
    for i, s in enumerate(scored, first):
      nll[i], tokens[i] = -s.total(), s.log_probs.size
  return nll, tokens


def read_segments(store: segments.SegmentStore, source: str, split: str = "validation",
                  limit: int | None = None) -> list[np.ndarray]:
  """The first `limit` (default all) token segments (EOS included) of a source's split."""
  import grain  # pylint: disable=import-outside-toplevel

  count = store.num_segments(source, split)
  count = count if limit is None else min(count, limit)
  if not count:
    return []
  records = grain.sources.ArrayRecordDataSource([str(store.path(source, split, "array_record"))])
  return [np.frombuffer(records[i], np.int32).astype(np.int64) for i in range(count)]


def store_perplexity(model: Decoder, store: segments.SegmentStore, *, seq_len: int, batch_size: int = 8,
                     limit: int | None = None, sources: Sequence[str] | None = None,
                     log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """Validation perplexity per source and per category (first `limit` segments of each source)."""
  sources = list(sources or store.sources)
  nll_by_category = {c: 0.0 for c in categories.CATEGORIES}
  tokens_by_category = {c: 0 for c in categories.CATEGORIES}
  rows = []
  for source in sources:
    documents = read_segments(store, source, limit=limit)
    if not documents:
      log(f"language: val/{source} has no validation segments; skipped")
      continue
    nll, tokens = _nll_and_tokens(model, documents, seq_len=seq_len, batch_size=batch_size)
    rows.append(_row(f"val/{source}", "perplexity", perplexity(nll.sum(), int(tokens.sum())), int(tokens.sum()),
                     "source"))
    masks = store.masks(source, "validation")[:len(documents)]
    for category in categories.CATEGORIES:
      member = segments.category_member(masks, category)
      nll_by_category[category] += float(nll[member].sum())
      tokens_by_category[category] += int(tokens[member].sum())
  for category in categories.CATEGORIES:
    if tokens_by_category[category]:
      rows.append(_row(f"val/cat:{category}", "perplexity",
                       perplexity(nll_by_category[category], tokens_by_category[category]),
                       tokens_by_category[category], "category"))
    else:
      log(f"language: val/cat:{category}: no validation segment carries it; skipped")
  return rows


def wikitext_articles(text: str) -> list[str]:
  """The articles of a WikiText raw file (split at top-level headings), with its spaced punctuation undone."""
  articles: list[list[str]] = [[]]
  for line in text.splitlines(keepends=True):
    if _HEADING.match(line.rstrip("\n")) and any(l.strip() for l in articles[-1]):
      articles.append([])
    articles[-1].append(line)
  out = []
  for lines in articles:
    article = "".join(lines).strip()
    for spaced, plain in _WIKITEXT_SPACING:
      article = article.replace(spaced, plain)
    article = _SPACED_PUNCTUATION.sub(r"\1", article)
    if article:
      out.append(article)
  return out


def wikitext_perplexity(model: Decoder, encode: Encode, path: str | os.PathLike[str], *, seq_len: int,
                        batch_size: int = 8, stride: int | None = None, limit: int | None = None
                        ) -> list[dict[str, Any]]:
  """Token perplexity of the (first `limit`) articles of a WikiText raw file."""
  articles = wikitext_articles(pathlib.Path(path).read_text(encoding="utf-8"))[:limit]
  if not articles:
    raise ValueError(f"{path} holds no text.")
  documents = [np.asarray(encode(article), np.int64) for article in articles]
  nll, tokens = _nll_and_tokens(model, documents, seq_len=seq_len, batch_size=batch_size, stride=stride)
  return [_row("wikitext", "perplexity", perplexity(nll.sum(), int(tokens.sum())), int(tokens.sum()))]


def read_lambada(path: str | os.PathLike[str], limit: int | None = None) -> list[str]:
  texts = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if limit is not None and len(texts) >= limit:
        break
      if line.strip():
        text = cache.parse_json(line, f"{path} line {number}", "replace it with an intact copy").get("text")
        if not isinstance(text, str) or " " not in text.strip():
          raise ValueError(f"{path} line {number}: expected {{\"text\": passage of several words}}.")
        texts.append(text.strip())
  if not texts:
    raise ValueError(f"{path} holds no LAMBADA passages.")
  return texts


def lambada(model: Decoder, encode: Encode, path: str | os.PathLike[str], *, seq_len: int, batch_size: int = 8,
            stride: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
  """LAMBADA: whole-text perplexity and last-word accuracy (percent), from one scoring pass."""
  texts = read_lambada(path, limit)
  documents, word_tokens = [], []
  for text in texts:
    context, word = text.rsplit(" ", 1)
    whole, split = loglik.split_continuation(encode, context, " " + word)
    documents.append(np.asarray(whole, np.int64))
    word_tokens.append(len(whole) - split)
  scored = loglik.score_documents(model, documents, seq_len=seq_len, batch_size=batch_size, stride=stride)
  tokens = sum(s.log_probs.size for s in scored)
  nll = -sum(s.total() for s in scored)
  correct = sum(bool(s.greedy[-n:].all()) for s, n in zip(scored, word_tokens))
  return [_row("lambada", "perplexity", perplexity(nll, tokens), tokens),
          _row("lambada", "accuracy", 100.0 * correct / len(texts), len(texts))]


def find_file(data_root: str | os.PathLike[str] | None, task: str) -> pathlib.Path | None:
  """Where `task`'s data file is under `data_root` (see the module docstring), or None."""
  if data_root is None:
    return None
  root = pathlib.Path(data_root)
  if task == "wikitext":
    candidates = [root / name for name in WIKITEXT_FILES]
  elif task == "lambada":
    candidates = [root / name for name in LAMBADA_FILES]
  else:
    return zero_shot.find_file(root, task)
  return next((path for path in candidates if path.is_file()), None)


def _encoder(tokenizer: Any) -> tuple[Encode, int | None, pathlib.Path | None]:
  """(encode, number of pieces or None, the model file or None) for a vocab path or a processor."""
  if isinstance(tokenizer, (str, os.PathLike)):
    processor = vocab.load_processor(pathlib.Path(tokenizer))
    return processor.encode, processor.get_piece_size(), pathlib.Path(tokenizer)
  if not callable(getattr(tokenizer, "encode", None)):
    raise TypeError(f"tokenizer is a {type(tokenizer).__name__}; pass a SentencePiece model path or an object "
                    "with encode(text) -> token ids.")
  size = tokenizer.get_piece_size() if callable(getattr(tokenizer, "get_piece_size", None)) else None
  return tokenizer.encode, size, None


def _mean_row(metric: str, values: Iterable[float]) -> list[dict[str, Any]]:
  values = list(values)
  return [_row("language", metric, float(np.mean(values)), len(values))] if values else []


def evaluate_language(decoder: Decoder, tokenizer: Any, *, store: segments.SegmentStore | None = None,
                      data_root: str | os.PathLike[str] | None = None, tasks: Sequence[str] | None = None,
                      seq_len: int, batch_size: int = 8, limit: int | None = None, stride: int | None = None,
                      seed: int = 0, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """Result rows of the language evaluation (names in the module docstring).

  tokenizer: the SentencePiece model path (or a processor with `encode`) the decoder was trained with.
  tasks: names from `TASKS` (default all); a task named explicitly whose data is absent is an error,
  one included by default is reported missing. limit: per task, the first `limit` items (segments per
  source for "val", articles for Wikitext, passages for LAMBADA). seed: the built-in tasks' seed.
  """
  explicit = tasks is not None
  selected = list(TASKS if tasks is None else tasks)
  for task in selected:
    lookup({t: t for t in TASKS}, task, "language task")
  if limit is not None and limit < 1:
    raise ValueError(f"limit={limit} must be positive (or None for everything).")
  encode, pieces, vocab_path = _encoder(tokenizer)
  if pieces is not None and pieces > decoder.config.vocab_size:
    raise ValueError(f"The tokenizer has {pieces} pieces but the decoder's vocabulary only "
                     f"{decoder.config.vocab_size}; evaluate with the vocabulary the model was trained with.")
  if store is not None and vocab_path is not None:
    store.check_vocab(vocab_path)
  missing, no_file = [], []
  paths = {}
  for task in selected:
    if task == STORE_TASK:
      if store is None:
        missing.append(f"{task} (no segment store given)")
    elif task not in BUILTIN_TASKS:
      paths[task] = find_file(data_root, task)
      if paths[task] is None:
        no_file.append(task)
  if no_file:
    missing.append(f"{', '.join(no_file)} (no data file under {data_root})")
  if missing and explicit:
    raise FileNotFoundError(f"Language tasks requested without their data: {'; '.join(missing)}.")
  if missing:
    count = len(no_file) + len(missing) - bool(no_file)
    log(f"language: {count} task(s) not scored for want of data: {'; '.join(missing)}")

  rows: list[dict[str, Any]] = []
  perplexities, paper_accuracy, builtin_accuracy = [], [], []
  settings = {"seq_len": seq_len, "batch_size": batch_size}
  for task in selected:
    start = time.perf_counter()
    if task == STORE_TASK:
      if store is None:
        continue
      new = store_perplexity(decoder, store, limit=limit, log=log, **settings)
    elif task in FILE_TASKS:
      if paths[task] is None:
        continue
      evaluate = wikitext_perplexity if task == "wikitext" else lambada
      new = evaluate(decoder, encode, paths[task], stride=stride, limit=limit, **settings)
      perplexities += [r["value"] for r in new if r["metric"] == "perplexity"]
    else:
      if task in BUILTIN_TASKS:
        items, benchmark = builtin_tasks.build(task, seed)[:limit], builtin_tasks.BENCHMARK_PREFIX + task
      elif paths[task] is None:
        continue
      else:
        items, benchmark = zero_shot.read_items(paths[task], task, limit), task
      scores = zero_shot.choice_scores(decoder, encode, items, **settings)
      new = zero_shot.task_rows(benchmark, items, scores)
      accuracy = next(r["value"] for r in new if r["metric"] == "accuracy")
      (builtin_accuracy if task in BUILTIN_TASKS else paper_accuracy).append(accuracy)
    rows += new
    elapsed = time.perf_counter() - start
    summary = ", ".join(f"{r['benchmark']} {r['metric']} {r['value']:.4g}" for r in new[:4])
    log(f"language: {task} in {elapsed:.1f}s: {summary}{' ...' if len(new) > 4 else ''}")
  rows += _mean_row("perplexity_mean", perplexities)
  rows += _mean_row("zero_shot_mean", paper_accuracy)
  rows += _mean_row("zero_shot_builtin_mean", builtin_accuracy)
  return rows
