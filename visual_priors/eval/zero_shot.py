"""Zero-shot multiple choice by log-likelihood (lm-eval-harness style) over the paper's language benchmarks.

Each question becomes (context, continuation) pairs, one per choice; a choice's score is the summed
log-probability of its continuation tokens after the context (`loglik.split_continuation`). Two
accuracies, as lm-eval-harness reports them:
  * "accuracy": the choice with the highest log-likelihood;
  * "accuracy_norm": the highest log-likelihood per character of the continuation string (its leading
    space included), lm-eval's acc_norm. Characters, not bytes: equal for ASCII text; for other text
    lm-eval's acc_bytes divides by UTF-8 bytes instead.
Accuracies are percentages (0..100), as the VQA results are.

JSONL formats read (one object a line; prompts as lm-eval-harness writes them):
  piqa        {goal, sol1, sol2, label}                 "Question: {goal}\\nAnswer:" + " {sol}"
              (the release keeps the labels in <split>-labels.lst beside <split>.jsonl, one 0/1 a line)
  hellaswag   {ctx (or ctx_a + ctx_b), endings, label, activity_label?}  "{activity}: {ctx}" + " {ending}"
              (lm-eval's cleanup: " [title]" -> ". ", other [brackets] removed, double spaces collapsed)
  winogrande  {sentence with one "_", option1, option2, answer "1"/"2"}: partial scoring, the context is
              the sentence up to "_" with the option filled in, the continuation (shared) the rest, so
              both accuracies are equal by construction
  arc_easy, arc_challenge  {question: {stem, choices: [{text, label}]}, answerKey} (AI2 release) or the
              flattened HF form {question, choices: {text: [...], label: [...]}, answerKey}
                                                         "Question: {q}\\nAnswer:" + " {text}"
  copa        {premise, choice1, choice2, question "cause"/"effect", label}
                                                         "{premise minus final .} because/therefore" + " {choice}"
  sciq        {question, distractor1-3, correct_answer, support}  "{support}\\nQuestion: {q}\\nAnswer:" + " {a}"
  openbookqa  {question_stem, choices: {text, label} or [{text, label}], answerKey} (HF) or the AI2
              release {question: {stem, choices}, answerKey}   "{stem}" + " {text}"
  boolq       {question, passage, answer: bool} (or HF SuperGLUE's label 0/1)
                                                         "{passage}\\nQuestion: {question}?\\nAnswer:" + " no"/" yes"
Files are looked up under a data root as `<task>.jsonl`, then `<task>/<split>.jsonl` for the split
lm-eval evaluates (test for ARC, SciQ and OpenBookQA, else validation), then the other splits.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from visual_priors.data import cache
from visual_priors.eval import loglik
from visual_priors.models.decoder import Decoder
from visual_priors.names import lookup


@dataclasses.dataclass(frozen=True)
class Item:
  """One question: per choice a context and a continuation (scored after it); `label` is the right one."""

  contexts: tuple[str, ...]
  continuations: tuple[str, ...]
  label: int

  def __post_init__(self):
    if len(self.contexts) != len(self.continuations) or len(self.contexts) < 2:
      raise ValueError(f"An item needs >= 2 choices with one context each; got {len(self.contexts)} contexts "
                       f"and {len(self.continuations)} continuations.")
    if not 0 <= self.label < len(self.contexts):
      raise ValueError(f"Label {self.label} is not one of the {len(self.contexts)} choices.")


def same_context(context: str, continuations: Sequence[str], label: int) -> Item:
  return Item((context,) * len(continuations), tuple(continuations), int(label))


def _letter_index(key: Any, labels: Sequence[str]) -> int:
  key = str(key).strip()
  labels = [str(label).strip() for label in labels]
  if key in labels:
    return labels.index(key)
  raise ValueError(f"answerKey {key!r} is not one of the choice labels {labels}.")


def _choices(value: Any) -> tuple[list[str], list[str]]:
  """(texts, labels) from [{text, label}, ...] or {text: [...], label: [...]}."""
  if isinstance(value, Mapping):
    return [str(t) for t in value["text"]], [str(l) for l in value["label"]]
  return [str(c["text"]) for c in value], [str(c["label"]) for c in value]


def parse_piqa(row: Mapping[str, Any]) -> Item:
  return same_context(f"Question: {row['goal']}\nAnswer:", [f" {row['sol1']}", f" {row['sol2']}"],
                      int(row["label"]))


def _hellaswag_clean(text: str) -> str:
  text = text.strip().replace(" [title]", ". ")
  text = re.sub(r"\[.*?\]", "", text)
  return text.replace("  ", " ")


def parse_hellaswag(row: Mapping[str, Any]) -> Item:
  if "ctx_a" in row and "ctx_b" in row:
    ctx = f"{row['ctx_a']} {str(row['ctx_b']).capitalize()}"
  else:
    ctx = str(row["ctx"])
  activity = row.get("activity_label")
  context = _hellaswag_clean(f"{activity}: {ctx}" if activity else ctx)
  return same_context(context, [" " + _hellaswag_clean(str(e)) for e in row["endings"]], int(row["label"]))


def parse_winogrande(row: Mapping[str, Any]) -> Item:
  sentence = str(row["sentence"])
  if sentence.count("_") != 1:
    raise ValueError(f"WinoGrande sentence {sentence!r} must hold exactly one '_'.")
  blank = sentence.index("_")
  suffix = " " + sentence[blank + 1:].strip()
  options = [str(row["option1"]), str(row["option2"])]
  answer = str(row["answer"]).strip()
  if answer not in ("1", "2"):
    raise ValueError(f"WinoGrande answer {answer!r} must be '1' or '2'.")
  return Item(tuple(sentence[:blank] + option for option in options), (suffix, suffix), int(answer) - 1)


def _question_and_choices(row: Mapping[str, Any]) -> tuple[str, list[str], list[str]]:
  question = row.get("question_stem", row.get("question"))
  if isinstance(question, Mapping):  # AI2 release: {"question": {"stem", "choices"}}
    texts, labels = _choices(question["choices"])
    return str(question["stem"]), texts, labels
  texts, labels = _choices(row["choices"])
  return str(question), texts, labels


def parse_arc(row: Mapping[str, Any]) -> Item:
  question, texts, labels = _question_and_choices(row)
  return same_context(f"Question: {question}\nAnswer:", [f" {t}" for t in texts],
                      _letter_index(row["answerKey"], labels))


def parse_openbookqa(row: Mapping[str, Any]) -> Item:
  question, texts, labels = _question_and_choices(row)
  return same_context(question, [f" {t}" for t in texts], _letter_index(row["answerKey"], labels))


def parse_copa(row: Mapping[str, Any]) -> Item:
  connector = {"cause": " because", "effect": " therefore"}
  kind = str(row["question"])
  if kind not in connector:
    raise ValueError(f"COPA question {kind!r} must be 'cause' or 'effect'.")
  premise = str(row["premise"]).strip()
  context = (premise[:-1] if premise.endswith(".") else premise) + connector[kind]
  choices = [str(row["choice1"]), str(row["choice2"])]
  return same_context(context, [" " + c[0].lower() + c[1:] for c in choices], int(row["label"]))


def parse_sciq(row: Mapping[str, Any]) -> Item:
  choices = [row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]]
  context = f"{str(row.get('support', '')).strip()}\nQuestion: {row['question']}\nAnswer:".lstrip()
  return same_context(context, [f" {c}" for c in choices], 3)


def parse_boolq(row: Mapping[str, Any]) -> Item:
  if "answer" in row:
    answer = row["answer"]
    if isinstance(answer, str):
      answer = answer.strip().lower() in ("true", "yes", "1")
  else:
    answer = int(row["label"]) == 1
  context = f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:"
  return same_context(context, [" no", " yes"], int(bool(answer)))


@dataclasses.dataclass(frozen=True)
class TaskFormat:
  name: str
  parse: Callable[[Mapping[str, Any]], Item]
  splits: tuple[str, ...]  # file names tried under <root>/<name>/, in order


_VALIDATION = ("validation", "valid", "dev", "val", "test")
_TEST = ("test", "validation", "valid", "dev", "val")
FORMATS: dict[str, TaskFormat] = {t.name: t for t in (
    TaskFormat("piqa", parse_piqa, _VALIDATION),
    TaskFormat("hellaswag", parse_hellaswag, _VALIDATION),
    TaskFormat("winogrande", parse_winogrande, _VALIDATION),
    TaskFormat("arc_easy", parse_arc, _TEST),
    TaskFormat("arc_challenge", parse_arc, _TEST),
    TaskFormat("copa", parse_copa, _VALIDATION),
    TaskFormat("sciq", parse_sciq, _TEST),
    TaskFormat("openbookqa", parse_openbookqa, _TEST),
    TaskFormat("boolq", parse_boolq, _VALIDATION),
)}
# The paper's zero-shot average (docs/paper.md, section 5.4); ARC counts as its two lm-eval tasks.
PAPER_TASKS: tuple[str, ...] = tuple(FORMATS)


def find_file(data_root: str | pathlib.Path, task: str) -> pathlib.Path | None:
  """The task's JSONL file under `data_root` (see the module docstring), or None."""
  task_format = lookup(FORMATS, task, "zero-shot task")
  root = pathlib.Path(data_root)
  candidates = [root / f"{task}.jsonl"] + [root / task / f"{split}.jsonl" for split in task_format.splits]
  return next((path for path in candidates if path.is_file()), None)


def _release_labels(path: pathlib.Path) -> list[str] | None:
  """The labels of `<split>-labels.lst` beside `<split>.jsonl` (PIQA's release: one label a line, rows aligned)."""
  labels = path.with_name(f"{path.stem}-labels.lst")
  return labels.read_text(encoding="utf-8").split() if labels.is_file() else None


def read_items(path: str | pathlib.Path, task: str, limit: int | None = None) -> list[Item]:
  """The first `limit` (default all) items of a task's JSONL file; errors name the file and line. Rows without a
  "label" take theirs from a `<split>-labels.lst` file beside it (PIQA's release)."""
  parse = lookup(FORMATS, task, "zero-shot task").parse
  path = pathlib.Path(path)
  labels = _release_labels(path)
  items, rows = [], 0
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if limit is not None and len(items) >= limit:
        break
      if not line.strip():
        continue
      row = cache.parse_json(line, f"{path} line {number}", "replace it with an intact copy")
      if labels is not None and isinstance(row, dict) and "label" not in row:
        if rows >= len(labels):
          raise ValueError(f"{path} line {number}: {path.stem}-labels.lst has only {len(labels)} labels.")
        row = {**row, "label": labels[rows]}
      rows += 1
      try:
        items.append(parse(row))
      except (KeyError, ValueError, TypeError, IndexError) as error:
        raise ValueError(f"{path} line {number} is not a {task} item: {type(error).__name__}: {error}.") from error
  if not items:
    raise ValueError(f"{path} holds no {task} items.")
  return items


def choice_scores(model: Decoder, encode: Callable[[str], Sequence[int]], items: Sequence[Item], *, seq_len: int,
                  batch_size: int = 8) -> list[np.ndarray]:
  """Per item, each choice's continuation log-likelihood (all items' choices scored in one packed pass)."""
  documents, starts = [], []
  for item in items:
    for context, continuation in zip(item.contexts, item.continuations):
      whole, split = loglik.split_continuation(encode, context, continuation)
      documents.append(np.asarray(whole, np.int64))
      starts.append(split)
  scored = loglik.score_documents(model, documents, seq_len=seq_len, batch_size=batch_size, score_from=starts)
  out, index = [], 0
  for item in items:
    n = len(item.contexts)
    out.append(np.array([s.total() for s in scored[index:index + n]]))
    index += n
  return out


def accuracies(items: Sequence[Item], scores: Sequence[np.ndarray]) -> dict[str, float]:
  """{"accuracy", "accuracy_norm"} in percent: argmax of the log-likelihood, raw and per character."""
  if not items:
    raise ValueError("No items to score.")
  raw = norm = 0
  for item, score in zip(items, scores):
    lengths = np.array([max(len(c), 1) for c in item.continuations], np.float64)
    raw += int(np.argmax(score)) == item.label
    norm += int(np.argmax(score / lengths)) == item.label
  return {"accuracy": 100.0 * raw / len(items), "accuracy_norm": 100.0 * norm / len(items)}


def task_rows(benchmark: str, items: Sequence[Item], scores: Sequence[np.ndarray]) -> list[dict[str, Any]]:
  """Result rows of one zero-shot task: metrics "accuracy" and "accuracy_norm"."""
  return [{"benchmark": benchmark, "group": None, "metric": metric, "value": value, "count": len(items)}
          for metric, value in accuracies(items, scores).items()]
