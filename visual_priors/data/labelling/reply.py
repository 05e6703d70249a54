"""Reading label sets out of messy LLM replies: JSON in fences or prose, loose names, synonyms, "none"."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

from visual_priors.data import categories


class UnparseableReplyError(ValueError):
  """A model reply that names no readable label set (never read as "no labels")."""


_NONE = "none"
# Loose spellings (lower case, '_'/'-' as spaces, a trailing "reasoning" dropped) -> label.
_SYNONYMS: dict[str, str] = {
    **{label.replace("-", " "): label for label in categories.LABELS},
    "visual concepts": "visual-concept", "concept": "visual-concept", "concepts": "visual-concept",
    "visual entity": "visual-concept", "visual entities": "visual-concept",
    "visual attributes": "visual-attribute", "attribute": "visual-attribute",
    "attributes": "visual-attribute",
    "visual relationships": "visual-relationship", "visual relation": "visual-relationship",
    "visual relations": "visual-relationship", "relationship": "visual-relationship",
    "relationships": "visual-relationship", "spatial relationship": "visual-relationship",
    "spatial relation": "visual-relationship",
    "coding": "code", "programming": "code", "software": "code", "software engineering": "code",
    "maths": "math", "mathematics": "math", "mathematical": "math",
    "scientific": "science", "sciences": "science",
    "none": _NONE, "null": _NONE, "nil": _NONE, "n/a": _NONE, "na": _NONE, "no label": _NONE,
    "no labels": _NONE, "nothing": _NONE, "": _NONE,
}
_LABEL_KEYS = ("labels", "label", "categories", "category", "tags")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n?(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_LIST_PREFIX = re.compile(r"^\s*(?:final\s+)?(?:labels?|categories|answer)\s*[:=-]\s*", re.I)


def normalise_label(name: str) -> str | None:
  """The label `name` spells loosely ("Visual Concept", "code_reasoning", ...), or None for "none"."""
  key = re.sub(r"[\s_\-]+", " ", name.strip().strip("\"'`*.,;:()[]{}").lower()).strip()
  key = re.sub(r" reasoning$", "", key)
  if key not in _SYNONYMS:
    raise UnparseableReplyError(f"Unknown label {name!r}; expected one of {', '.join(categories.LABELS)} "
                                "or none.")
  label = _SYNONYMS[key]
  return None if label == _NONE else label


def parse_labels(reply: str) -> frozenset[str]:
  """The label set in `reply`; UnparseableReplyError when no reading is possible.

  Accepted: a JSON object with a "labels" list (or a {label: true/false} object), a JSON list, either
  inside ```json fences or surrounded by prose, with trailing commas or single quotes; or a bare
  comma/line-separated list of label names. "none"/"None"/[] mean no label.
  """
  if not reply or not reply.strip():
    raise UnparseableReplyError("The reply is empty.")
  errors = []
  for candidate in _json_candidates(reply):
    try:
      return _labels_from_value(_load_loose_json(candidate))
    except ValueError as e:  # Includes UnparseableReplyError: try the next candidate.
      errors.append(str(e))
  try:
    return _labels_from_plain_list(reply)
  except UnparseableReplyError as e:
    errors.append(str(e))
  raise UnparseableReplyError(f"No label set could be read from the reply {reply[:300]!r}: "
                              f"{'; '.join(errors[-3:])}")


def _json_candidates(reply: str) -> Iterator[str]:
  """Fenced blocks first, then every balanced {...} or [...] span, outermost first."""
  for match in _FENCE.finditer(reply):
    yield match.group(2).strip()
  yield from _bracketed_spans(reply)


def _bracketed_spans(text: str) -> Iterator[str]:
  start = 0
  while True:
    opens = [i for i in (text.find("{", start), text.find("[", start)) if i >= 0]
    if not opens:
      return
    begin = min(opens)
    end = _matching_close(text, begin)
    if end is None:
      start = begin + 1
      continue
    yield text[begin:end + 1]
    start = end + 1


def _matching_close(text: str, begin: int) -> int | None:
  """Index of the bracket closing `text[begin]`, skipping quoted strings; None if unbalanced."""
  depth, quote, escaped = 0, None, False
  for i in range(begin, len(text)):
    char = text[i]
    if quote:
      if escaped:
        escaped = False
      elif char == "\\":
        escaped = True
      elif char == quote:
        quote = None
    elif char in "\"'":
      quote = char
    elif char in "[{":
      depth += 1
    elif char in "]}":
      depth -= 1
      if depth == 0:
        return i
  return None


def _load_loose_json(candidate: str) -> Any:
  """json.loads, then with trailing commas removed, then as a Python literal (single quotes)."""
  text = _TRAILING_COMMA.sub(r"\1", candidate)
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    pass
  try:
    return ast.literal_eval(text.replace("null", "None").replace("true", "True").replace("false", "False"))
  except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
    raise ValueError(f"not JSON: {candidate[:80]!r}") from e


def _labels_from_value(value: Any) -> frozenset[str]:
  if value is None:
    return frozenset()
  if isinstance(value, str):
    if not value.strip():  # {"labels": ""} names nothing: a malformed reply to ask again, never "no labels"
      raise UnparseableReplyError("The labels field is an empty string; say none or [] for no label.")
    return _labels_from_names(re.split(r"[,;|\n]", value))
  if isinstance(value, (list, tuple)):
    names = []
    for item in value:
      if isinstance(item, dict):
        item = next((item[k] for k in ("label", "name") if k in item), None)
      if not isinstance(item, str):
        raise UnparseableReplyError(f"A label list holds {item!r}, not a label name.")
      names.append(item)
    return _labels_from_names(names)
  if isinstance(value, dict):
    for key, inner in value.items():
      if isinstance(key, str) and key.strip().lower() in _LABEL_KEYS:
        return _labels_from_value(inner)
    if value and all(isinstance(v, (bool, int)) for v in value.values()):
      return _labels_from_names([k for k, v in value.items() if v])
    raise UnparseableReplyError(f"A JSON object without a 'labels' field: {str(value)[:120]}")
  raise UnparseableReplyError(f"A JSON value of type {type(value).__name__} is not a label set.")


def _labels_from_names(names: list[str]) -> frozenset[str]:
  labels = (normalise_label(name) for name in names)
  return frozenset(label for label in labels if label is not None)


def _labels_from_plain_list(reply: str) -> frozenset[str]:
  """A reply such as "Labels: visual concept, Code Reasoning" or "None." without any JSON."""
  lines = [line for line in reply.strip().splitlines() if line.strip()]
  if len(lines) > len(categories.LABELS) + 1:
    raise UnparseableReplyError("The reply is prose, not a list of labels.")
  items = []
  for line in lines:
    line = _LIST_PREFIX.sub("", re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line))
    items.extend(re.split(r"[,;|]|\band\b", line))
  return _labels_from_names(items)
