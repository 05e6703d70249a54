"""Plain-text normalisation and cutting long texts into documents (no markup knowledge here)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator

# Control characters other than tab and newline (C0, DEL, C1), zero-width and BOM characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200e\u200f\ufeff]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")
_INLINE_SPACE = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")


def normalise(text: str, prose: bool) -> str:
  """Canonical form of a document, the text that is hashed, deduplicated and stored.

  Always: NFC, Unix newlines, no control characters, no trailing spaces, at most one blank line in a
  row, no leading/trailing blank lines. Code (`prose=False`) keeps its indentation and tabs; prose
  has every line stripped and runs of spaces collapsed, but keeps its line breaks.
  """
  text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
  text = _CONTROL.sub("", text)
  if prose:
    text = "\n".join(_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n"))
  text = _TRAILING_SPACE.sub("\n", text + "\n")
  text = _BLANK_RUNS.sub("\n\n", text)
  return text.strip("\n")


def chunk_paragraphs(text: str, target_chars: int) -> list[str]:
  """Cuts a long text at blank lines into pieces of about `target_chars`; a paragraph longer than
  that (verse without blank lines) is cut between its lines."""
  units = []
  for paragraph in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
    units.extend(group(paragraph.split("\n"), target_chars, "\n") if len(paragraph) > target_chars
                 else [paragraph])
  return list(group(units, target_chars, "\n\n"))


def split_before(text: str, heading: re.Pattern[str], min_chars: int) -> list[str]:
  """Splits `text` before each match of `heading` (multiline regex), merging pieces under `min_chars`
  into the next one so that short sections do not become near-empty documents."""
  starts = sorted({0, *(m.start() for m in heading.finditer(text))})
  raw = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])]
  return list(group(raw, min_chars, ""))


def group(items: Iterable[str], target_chars: int, separator: str) -> Iterator[str]:
  """Joins consecutive items with `separator` until each group reaches `target_chars`."""
  current, size = [], 0
  for item in items:
    current.append(item)
    size += len(item) + len(separator)
    if size >= target_chars:
      yield separator.join(current)
      current, size = [], 0
  if current:
    yield separator.join(current)
