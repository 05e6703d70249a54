"""Hand-labelled segments: cutting them from the corpora, and scoring a labeller against them (per-label P/R/F1)."""

from __future__ import annotations

import bisect
import dataclasses
import pathlib
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence

from visual_priors.data import cache, categories
from visual_priors.data.labelling import base

HANDLABELLED = pathlib.Path(__file__).resolve().parent / "assets" / "handlabelled.jsonl"
SPLITS = ("dev", "test")
# The batch of the test split: fresh segments cut after the earlier batches had become tuning data (assets/README.md).
TEST_BATCH = "v3-fresh-test"
# The sources the hand-labelled segments come from: the built-in corpora (visual_priors/data/corpora).
KNOWN_SOURCES = ("code", "math", "academia", "literature", "encyclopedia", "web-crawl", "visual-description")
# The quality the labellers are held to on the test split, for every label with at least TARGET_MIN_SUPPORT
# positives there (fewer make the rates too noisy to hold a labeller to).
TARGET_PRECISION, TARGET_RECALL, TARGET_MIN_SUPPORT = 0.8, 0.7, 20
# Hand-labelled segments are excerpts of this many whitespace-separated words (short enough to read and judge).
MIN_WORDS, MAX_WORDS = 80, 250
_WORD = re.compile(r"\S+")
_SHINGLE = 8  # words; a window sharing one such run of words with a text it must not overlap is skipped


@dataclasses.dataclass(frozen=True)
class LabelledSegment:
  text: str
  labels: frozenset[str]
  origin: str  # "<package>:<path inside it>[#<item>]"
  split: str  # "dev" (tuning) or "test" (reporting only)
  source: str = ""  # the corpus source the segment was cut from (corpora.BUILTIN_SOURCES)
  batch: str = ""  # which labelling round the row comes from (assets/README.md)


def load_handlabelled(split: str | None = None, path: str | pathlib.Path = HANDLABELLED) -> list[LabelledSegment]:
  """The hand-labelled segments (all, or one split), validated line by line."""
  if split is not None and split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; the hand-labelled set has splits {SPLITS}.")
  segments = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{path}:{number}"
      row = cache.parse_json(line, where, "restore it from the repository (git diff shows the damage)")
      unknown = [label for label in row["labels"] if label not in categories.LABELS]
      source = row.get("source", "")
      if unknown or row["split"] not in SPLITS or not row["text"].strip() or source not in KNOWN_SOURCES:
        raise ValueError(f"{where}: labels must come from {categories.LABELS} (unknown: {unknown}), split "
                         f"from {SPLITS} (got {row['split']!r}), source from {KNOWN_SOURCES} (got {source!r}), "
                         "and the text must not be empty.")
      segment = LabelledSegment(row["text"], frozenset(row["labels"]), row["origin"], row["split"], source,
                                row.get("batch", ""))
      if split is None or segment.split == split:
        segments.append(segment)
  return segments


@dataclasses.dataclass(frozen=True)
class Scores:
  """Counts and rates for one label (or pooled). A rate with a zero denominator is 0.0."""

  true_positives: int
  false_positives: int
  false_negatives: int

  @property
  def support(self) -> int:
    return self.true_positives + self.false_negatives

  @property
  def precision(self) -> float:
    predicted = self.true_positives + self.false_positives
    return self.true_positives / predicted if predicted else 0.0

  @property
  def recall(self) -> float:
    return self.true_positives / self.support if self.support else 0.0

  @property
  def f1(self) -> float:
    denominator = 2 * self.true_positives + self.false_positives + self.false_negatives
    return 2 * self.true_positives / denominator if denominator else 0.0


@dataclasses.dataclass(frozen=True)
class Evaluation:
  per_label: Mapping[str, Scores]
  micro: Scores  # Counts pooled over all labels.
  examples: int


def score_predictions(predicted: Sequence[frozenset[str]], gold: Sequence[frozenset[str]]) -> Evaluation:
  """Per-label and micro-averaged scores of predicted label sets against gold ones."""
  if len(predicted) != len(gold):
    raise ValueError(f"{len(predicted)} predictions for {len(gold)} gold label sets; they must pair up.")
  per_label = {}
  for label in categories.LABELS:
    pairs = [(label in p, label in g) for p, g in zip(predicted, gold)]
    per_label[label] = Scores(true_positives=sum(p and g for p, g in pairs),
                              false_positives=sum(p and not g for p, g in pairs),
                              false_negatives=sum(g and not p for p, g in pairs))
  micro = Scores(*(sum(getattr(s, field) for s in per_label.values())
                   for field in ("true_positives", "false_positives", "false_negatives")))
  return Evaluation(per_label, micro, len(gold))


def evaluate(labeller: base.Labeller, examples: Sequence[LabelledSegment]) -> Evaluation:
  """Labels the examples' texts with `labeller` and scores the result against their hand labels."""
  predicted = labeller.label([example.text for example in examples])
  return score_predictions(predicted, [example.labels for example in examples])


def format_evaluation(evaluation: Evaluation, title: str = "") -> str:
  """A markdown table: one row per label, then the micro average."""
  lines = [f"{title} ({evaluation.examples} segments)" if title else f"{evaluation.examples} segments",
           "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
  rows = [*evaluation.per_label.items(), ("micro average", evaluation.micro)]
  for name, s in rows:
    lines.append(f"| {name} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {s.support} |")
  return "\n".join(lines)


def format_targets(evaluation: Evaluation) -> str:
  """One line: which labels with enough support miss the precision/recall targets (or that none does)."""
  held = [label for label, s in evaluation.per_label.items() if s.support >= TARGET_MIN_SUPPORT]
  missed = [f"{label} (P {s.precision:.2f}, R {s.recall:.2f})" for label, s in evaluation.per_label.items()
            if label in held and (s.precision < TARGET_PRECISION or s.recall < TARGET_RECALL)]
  rule = (f"targets: precision >= {TARGET_PRECISION}, recall >= {TARGET_RECALL} for labels with >= "
          f"{TARGET_MIN_SUPPORT} positives ({', '.join(held) or 'none'})")
  return f"{rule}; missed by {', '.join(missed)}" if missed else f"{rule}; all met"


def report_on_test_split(labeller: base.Labeller, title: str) -> str:
  """The labeller's per-label table on the hand-labelled test split (never used for tuning), then the targets."""
  evaluation = evaluate(labeller, load_handlabelled("test"))
  return f"{format_evaluation(evaluation, title)}\n{format_targets(evaluation)}"


def sample_windows(documents: Sequence[Mapping[str, str]], count: int, seed: int,
                   avoid: Iterable[str] = (), target_words: tuple[int, int] = (120, 200),
                   snap_words: int = 30) -> list[dict[str, str]]:
  """`count` excerpts for hand labelling, drawn at random from `documents` (dicts with "text" and "origin").

  A document is drawn with probability proportional to its words (as a segment of the store is), a start word
  uniformly inside it, and a length uniformly in `target_words`; start and end move to the nearest line break
  when one is within `snap_words` words, and the excerpt stays within [MIN_WORDS, MAX_WORDS] words. Excerpts
  sharing a run of _SHINGLE words with `avoid` or with each other are redrawn. Returns {"text", "origin"} dicts,
  origin "<document origin>#words-<first>-<end>"; the same documents, count and seed give the same excerpts.
  """
  rng = random.Random(seed)
  pool = [(doc, [(m.start(), m.end()) for m in _WORD.finditer(doc["text"])]) for doc in documents]
  pool = [(doc, words) for doc, words in pool if len(words) >= MIN_WORDS]
  if not pool:
    raise ValueError(f"No document has the {MIN_WORDS} words an excerpt needs.")
  cumulative, total = [], 0
  for _, words in pool:
    total += len(words)
    cumulative.append(total)
  seen = set().union(*(_shingles(text) for text in avoid))
  chosen: list[dict[str, str]] = []
  for _ in range(200 * count):
    if len(chosen) == count:
      break
    doc, words = pool[bisect.bisect_right(cumulative, rng.randrange(total))]
    text, starts = doc["text"], [start for start, _ in words]
    first = rng.randrange(len(words) - MIN_WORDS + 1)
    end = min(len(words), first + rng.randint(*target_words))
    line_start = text.rfind("\n", 0, starts[first]) + 1
    snapped = bisect.bisect_left(starts, line_start)
    if first - snapped <= snap_words:
      first = snapped
    line_end = text.find("\n", words[end - 1][1])
    snapped = bisect.bisect_left(starts, len(text) if line_end < 0 else line_end)
    if snapped - end <= snap_words and snapped - first <= MAX_WORDS:
      end = snapped
    if not MIN_WORDS <= end - first <= MAX_WORDS:
      continue
    excerpt = text[words[first][0]:words[end - 1][1]]
    shingles = _shingles(excerpt)
    if shingles & seen:
      continue
    seen |= shingles
    chosen.append({"text": excerpt, "origin": f"{doc['origin']}#words-{first}-{end}"})
  if len(chosen) < count:
    raise ValueError(f"Found only {len(chosen)} of {count} non-overlapping excerpts; pass more documents.")
  return chosen


def _shingles(text: str) -> set[tuple[str, ...]]:
  words = text.lower().split()
  return {tuple(words[i:i + _SHINGLE]) for i in range(max(len(words) - _SHINGLE + 1, 1))}


def sample_from_corpora(per_source: int, seed: int, sources: Sequence[str] = KNOWN_SOURCES,
                        cache_dir: str | pathlib.Path | None = None, split: str = "test",
                        batch: str = TEST_BATCH) -> list[dict]:
  """Unlabelled hand-labelling rows ("labels" empty) cut with `sample_windows` from each built corpus's train
  split, avoiding the texts already in the hand-labelled set; source s uses seed `seed` + its index."""
  from visual_priors.data import corpora  # pylint: disable=import-outside-toplevel
  avoid = [segment.text for segment in load_handlabelled()]
  rows = []
  for index, source in enumerate(sources):
    documents = list(corpora.read_documents(source, "train", cache_dir))
    for window in sample_windows(documents, per_source, seed + index, avoid):
      rows.append({"text": window["text"], "labels": [], "source": source, "origin": window["origin"],
                   "split": split, "batch": batch})
      avoid.append(window["text"])
  return rows


def throughput(labeller: base.Labeller, texts: Sequence[str], min_seconds: float = 1.0) -> dict[str, float]:
  """Segments/s and MB/s of `labeller` over `texts`, repeated until at least `min_seconds` have passed."""
  megabytes = sum(len(text.encode("utf-8")) for text in texts) / 1e6
  rounds, start = 0, time.perf_counter()
  while True:
    labeller.label(texts)
    rounds += 1
    elapsed = time.perf_counter() - start
    if elapsed >= min_seconds:
      return {"segments_per_s": rounds * len(texts) / elapsed, "mb_per_s": rounds * megabytes / elapsed}
