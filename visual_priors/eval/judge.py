"""Judges of reasoning traces for the probe: is a trace logically coherent? `RuleJudge` (offline), `LlmJudge`.

A judge maps (question, choices, reference answer, trace) to {"coherent": bool, "reason": str}. Coherence is
about the reasoning, not the result: a trace whose steps hang together and end in the answer they lead to is
coherent even when that answer is wrong.

RuleJudge, a deterministic offline judge (tests, CPU demo, a reproducible floor). A trace is coherent iff all
of these hold, checked in this order (the reason names the first that fails):
  1. not degenerate: at least `min_words` words (whitespace-separated);
  2. not repetitive: with at least 6 word trigrams, at least half of them are distinct;
  3. it states a final answer: "answer is X", "answer: X", "final answer = X", "correct option is X", ...;
  4. for a multiple-choice question every stated final answer names an option (its letter, "(B)" / "B." /
     "B" at its start, or its text, the longest option text found winning, or "(B)" anywhere);
  5. all stated final answers agree (no "the answer is A ... so the answer is C");
  6. it reasons before answering: at least `min_reasoning_words` words precede the first final answer;
  7. its arithmetic holds: every written equation "a op b [op c ...] = r" (op in + - * / ×) is right
     (within 1e-6 relative), evaluated left to right with * and / first;
  8. a numeric final answer (the chosen option's text or the open answer) equals the result of the
     trace's last equation, when the trace has one.
The reference answer is not used (coherence, not correctness).

LlmJudge asks a chat model behind any OpenAI-compatible endpoint, through the labelling client
(`visual_priors.data.labelling.llm.LlmLabeller`: its request, retry, backoff and Retry-After policy, reused
as it is), with a versioned prompt (`PROMPT_VERSION` changes with the instructions), a bounded number of
re-asks when a reply does not parse, a thread pool of `concurrency` requests and a sqlite cache of verdicts
keyed by (prompt version, model, question, choices, answer, trace) so a re-run sends nothing it already has.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import hashlib
import json
import pathlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from visual_priors import names
from visual_priors.data import cache
from visual_priors.data.labelling import label_cache, llm, reply

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
Verdict = dict[str, Any]  # {"coherent": bool, "reason": str}


class Judge(abc.ABC):
  """The judge interface: `name` (recorded with each judgement) and `judge`; `judge_many` batches."""

  name: str = "judge"

  @abc.abstractmethod
  def judge(self, question: str, choices: Sequence[str] | None, answer: str, trace: str) -> Verdict:
    """{"coherent": bool, "reason": str} for one reasoning trace."""

  def judge_many(self, items: Sequence[Mapping[str, Any]]) -> list[Verdict]:
    """Verdicts for {"question", "choices", "answer", "trace"} items, in order."""
    return [self.judge(item["question"], item.get("choices"), item["answer"], item["trace"]) for item in items]


# ------------------------------------------------------------------------------------------------ rules

_FINAL = re.compile(r"\b(?:final\s+answer|answer|correct\s+(?:option|choice))\s*(?:is|would\s+be|should\s+be|:|=)"
                    r"\s*:?\s*(?P<value>[^\n]+?)\s*(?:$|\n|\.(?:\s|$))", re.IGNORECASE)
_NUMBER = r"-?\d+(?:\.\d+)?"
_EQUATION = re.compile(rf"(?<![\w.])({_NUMBER}(?:\s*[-+*/×]\s*{_NUMBER})+)\s*=\s*({_NUMBER})(?![\w])")
_TOKEN = re.compile(rf"{_NUMBER}|[-+*/×]")


def _evaluate(expression: str) -> float:
  """Left-to-right arithmetic with * and / before + and - (no parentheses)."""
  tokens = _TOKEN.findall(expression.replace(" ", ""))
  values, operators = [float(tokens[0])], []
  for operator, number in zip(tokens[1::2], tokens[2::2]):
    if operator in "*×/":
      values[-1] = values[-1] * float(number) if operator != "/" else values[-1] / float(number)
    else:
      values.append(float(number))
      operators.append(operator)
  total = values[0]
  for operator, value in zip(operators, values[1:]):
    total = total + value if operator == "+" else total - value
  return total


def _as_number(text: str) -> float | None:
  match = re.fullmatch(rf"\s*({_NUMBER})\s*", text)
  return float(match.group(1)) if match else None


def _normalise(text: str) -> str:
  return re.sub(r"\s+", " ", re.sub(r"[^\w\s.-]", " ", text.lower())).strip(" .")


def _resolve(value: str, choices: Sequence[str] | None) -> str | None:
  """The option a stated final answer names (its text), the normalised open answer, or None."""
  if not choices:
    return _normalise(value) or None
  letter = re.match(r"^\(?([A-Z])\)?(?:[\s.,:)]|$)", value.strip())
  if letter and _LETTERS.index(letter.group(1)) < len(choices):
    return str(choices[_LETTERS.index(letter.group(1))])
  found = [str(c) for c in choices if re.search(rf"(?<!\w){re.escape(_normalise(str(c)))}(?!\w)", _normalise(value))]
  if found:
    return max(found, key=len)
  letter = re.search(r"\(([A-Z])\)", value)  # "eight (C)"
  if letter and _LETTERS.index(letter.group(1)) < len(choices):
    return str(choices[_LETTERS.index(letter.group(1))])
  return None


class RuleJudge(Judge):
  """The deterministic offline judge (the rule is in the module docstring)."""

  def __init__(self, min_words: int = 8, min_reasoning_words: int = 5):
    if min_words < 1 or min_reasoning_words < 0:
      raise ValueError(f"min_words ({min_words}) must be >= 1 and min_reasoning_words ({min_reasoning_words}) >= 0.")
    self.min_words, self.min_reasoning_words = min_words, min_reasoning_words
    self.name = f"rule-v1:{min_words},{min_reasoning_words}"

  def judge(self, question: str, choices: Sequence[str] | None, answer: str, trace: str) -> Verdict:
    words = trace.split()
    if len(words) < self.min_words:
      return _verdict(False, f"degenerate: {len(words)} words (fewer than {self.min_words})")
    lowered = [w.lower() for w in words]
    trigrams = list(zip(lowered, lowered[1:], lowered[2:]))
    if len(trigrams) >= 6 and len(set(trigrams)) < len(trigrams) / 2:
      return _verdict(False, f"repetitive: {len(set(trigrams))} distinct of {len(trigrams)} word trigrams")
    finals = list(_FINAL.finditer(trace))
    if not finals:
      return _verdict(False, "no final answer stated")
    resolved = [_resolve(match.group("value"), choices) for match in finals]
    unresolved = [match.group("value") for match, value in zip(finals, resolved) if value is None]
    if unresolved:
      return _verdict(False, f"final answer {unresolved[0]!r} is not one of the options")
    if len(set(resolved)) > 1:
      return _verdict(False, f"contradictory final answers: {' vs '.join(dict.fromkeys(resolved))}")
    before = len(trace[:finals[0].start()].split())
    if before < self.min_reasoning_words:
      return _verdict(False, f"no reasoning before the final answer ({before} words)")
    equations = list(_EQUATION.finditer(trace))
    for equation in equations:
      left, right = _evaluate(equation.group(1)), float(equation.group(2))
      if abs(left - right) > 1e-6 * max(1.0, abs(right)):
        return _verdict(False, f"wrong arithmetic: {equation.group(0)}")
    final = resolved[0]
    number = _as_number(final)
    if number is not None and equations and abs(float(equations[-1].group(2)) - number) > 1e-6 * max(1.0, abs(number)):
      return _verdict(False, f"final answer {final} contradicts the computed {equations[-1].group(2)}")
    return _verdict(True, f"reasons for {before} words, then answers {final!r} consistently")


def _verdict(coherent: bool, reason: str) -> Verdict:
  return {"coherent": coherent, "reason": reason}


# ------------------------------------------------------------------------------------------------ LLM

SYSTEM_PROMPT = "\n".join([
    "You judge the logical soundness of a model's reasoning trace for a visual question.",
    "You cannot see the image; judge the reasoning as written.",
    "A trace is coherent when its steps follow from each other and from what it says it observes, it does not "
    "contradict itself, its calculations are right, and its final answer is the one its reasoning leads to.",
    "A coherent trace may still reach a wrong answer; an incoherent one may guess the right answer. Judge the "
    "reasoning, not the result. A trace that is empty, repetitive, off-topic or gives no final answer is "
    "not coherent.",
    'Reply with only a JSON object: {"coherent": true or false, "reason": "<one short sentence>"}.',
])
REPAIR_PROMPT = 'That reply could not be read. Answer again with only {"coherent": true or false, "reason": "..."}.'
PROMPT_VERSION = "v1-" + hashlib.sha256(f"{SYSTEM_PROMPT}\n{REPAIR_PROMPT}".encode()).hexdigest()[:10]


def _repair(messages: list[dict], answer: str) -> list[dict]:
  """The first question again, the unreadable reply, and the request to answer in the format."""
  return messages[:2] + [{"role": "assistant", "content": answer}, {"role": "user", "content": REPAIR_PROMPT}]


class JudgingFailedError(RuntimeError):
  """Some traces got no verdict; the ones that did are cached."""


def user_message(question: str, choices: Sequence[str] | None, answer: str, trace: str) -> str:
  options = "".join(f"\n{_LETTERS[i]}. {c}" for i, c in enumerate(choices or ()))
  return (f"Question: {question}{options}\nReference answer: {answer}\n"
          f"Trace to judge:\n<<<\n{trace}\n>>>")


def parse_verdict(text: str) -> Verdict:
  """{"coherent", "reason"} from a reply: a JSON object (possibly fenced or inside prose), else "coherent: yes"."""
  for candidate in re.findall(r"\{.*?\}", text, re.DOTALL) + re.findall(r"\{.*\}", text, re.DOTALL):
    try:
      obj = json.loads(candidate)
    except json.JSONDecodeError:
      continue
    if isinstance(obj, dict) and "coherent" in obj:
      value = obj["coherent"]
      if isinstance(value, str) and value.strip().lower() in ("true", "yes", "false", "no"):
        value = value.strip().lower() in ("true", "yes")
      if isinstance(value, bool):
        return _verdict(value, str(obj.get("reason", "")).strip())
  match = re.search(r"coherent\W{0,3}\s*(true|false|yes|no)\b", text, re.IGNORECASE)
  if match:
    return _verdict(match.group(1).lower() in ("true", "yes"), text.strip()[:300])
  raise reply.UnparseableReplyError(f"no coherent=true/false in reply {text[:200]!r}")


class VerdictCache:
  """Verdicts by key in a sqlite table (WAL; one connection shared by threads under a lock)."""

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path).expanduser()
    self._db, self._lock = label_cache.shared_connection(self.path, (
        "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict TEXT NOT NULL, "
        "model TEXT NOT NULL, prompt_version TEXT NOT NULL, created REAL NOT NULL)"))

  def get(self, key: str) -> Verdict | None:
    with self._lock:
      row = self._db.execute("SELECT verdict FROM verdicts WHERE key = ?", (key,)).fetchone()
    return None if row is None else json.loads(row[0])

  def put(self, key: str, verdict: Verdict, model: str) -> None:
    with self._lock:
      self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)",
                       (key, json.dumps(verdict), model, PROMPT_VERSION, time.time()))

  def __len__(self) -> int:
    with self._lock:
      return self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]


class LlmJudge(Judge):
  """A chat model's verdicts (see the module docstring); `config` is the labelling client's `LlmConfig`.

  `config.cache_path` "" -> <cache_root>/judge/judge_cache.sqlite (that file also holds the client's own,
  unused, labels table). Set `max_tokens` to leave room for the reason (e.g. 128).
  """

  def __init__(self, config: llm.LlmConfig):
    path = config.cache_path or str(cache.cache_root() / "judge" / "judge_cache.sqlite")
    self.config = config
    self._client = llm.LlmLabeller(dataclasses.replace(config, cache_path=path))
    self.cache = VerdictCache(path)
    self.name = f"llm-{PROMPT_VERSION}:{config.model}"

  def _key(self, question: str, choices: Sequence[str] | None, answer: str, trace: str) -> str:
    payload = json.dumps([PROMPT_VERSION, self.config.model, question, list(choices or []), answer, trace])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()

  def judge(self, question: str, choices: Sequence[str] | None, answer: str, trace: str) -> Verdict:
    return self.judge_many([{"question": question, "choices": choices, "answer": answer, "trace": trace}])[0]

  def judge_many(self, items: Sequence[Mapping[str, Any]]) -> list[Verdict]:
    fields = [(i["question"], i.get("choices"), str(i["answer"]), i["trace"]) for i in items]
    keys = [self._key(*f) for f in fields]
    found = {key: verdict for key in set(keys) if (verdict := self.cache.get(key)) is not None}
    todo = {key: f for key, f in zip(keys, fields) if key not in found}

    def keep(key: str, verdict: Verdict) -> None:
      found[key] = verdict
      self.cache.put(key, verdict, self.config.model)

    failures = self._client.ask_each({key: functools.partial(self._ask, user_message(*f)) for key, f in todo.items()},
                                     keep)
    if failures:
      raise JudgingFailedError(llm.failure_summary(failures, len(todo),
                                                   f"traces got no verdict from {self.config.base_url}", "judged"))
    return [dict(found[key]) for key in keys]

  def _ask(self, content: str, rejections: list[Exception]) -> Verdict:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]
    return self._client.ask(messages, parse_verdict, _repair, rejections)


JUDGE_KINDS = ("rule", "llm")


def make_judge(config: Mapping[str, Any]) -> Judge:
  """{"judge": "rule"} or {"judge": "llm", "url", "model", ...other LlmConfig fields} (the eval.probe settings)."""
  kind = names.lookup({k: k for k in JUDGE_KINDS}, config.get("judge", "rule"), "probe judge")
  if kind == "rule":
    return RuleJudge()
  if not config.get("url") or not config.get("model"):
    raise ValueError("The llm judge needs eval.probe.url (an OpenAI-compatible base URL, e.g. "
                     "http://localhost:8000/v1) and eval.probe.model.")
  extra = {k: v for k, v in config.items() if k not in ("judge", "url", "model", "enabled")}
  return LlmJudge(llm.LlmConfig(base_url=config["url"], model=config["model"], **{"max_tokens": 128, **extra}))
