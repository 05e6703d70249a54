"""Answers from free-form model replies: multiple-choice extraction, yes/no, and open-answer matching.

Multiple choice (docs/paper.md, section 5.2), three stages, stop at the first hit:
  1. an answer letter (read through markdown marks, and with option texts that hold a capital letter, "Type A",
     "Hepatitis B", masked where the reply quotes them, so their letter is no answer letter): after an answer cue ("The correct answer is (B)", "Answer: B", "answer is option C"; the
     last cue wins, as conclusions come last), else a letter leading the reply ("(B) ...", "B. ...", "B) ...",
     a reply that is just "B"), else a trailing "(B)", else the first standalone letter ("I'd say B.",
     "(C) looks right"). A capital letter used as a word ("A cat", "I think") is not a letter answer; only
     letters within the option count are taken.
  2. the reply, trimmed of whitespace and punctuation, equals an option's text (case-insensitive);
  3. option texts found in the reply as whole words (case-insensitive): the longest wins (so "dark red" beats
     "red"); equally long ones: the one mentioned first.
Open answers: `normalize_answer` is the official VQA evaluation's normalisation (lower case, punctuation,
number words to digits, articles and contractions); `exact_match`, `vqa_accuracy` (the official soft
accuracy: min(#matching humans / 3, 1) averaged over the 10 leave-one-out subsets), `relaxed_accuracy`
(ChartQA: numbers within 5%), `contains_match` (OCRBench: a reference occurs in the reply; without spaces for
its formulas) and `numeric_match` (MathVista free-form: the number at a given precision). Yes/no: the first
yes/no word.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Sequence

LETTERS = string.ascii_uppercase

_CUE = r"\b(?:answer|option|choice)(?:\s+(?:is|would\s+be|should\s+be))?\s*(?:option|choice)?\s*[:：]?\s*"
_CUE_LETTER = re.compile(_CUE + r"(?:\(([A-Za-z])\)|\[([A-Za-z])\]|(?-i:([A-Z]))(?![A-Za-z0-9']))",
                         re.IGNORECASE)
# A letter that leads the reply: "(B)", "[B]", "B.", "B)", "B:" followed by anything, or a bare "B" alone.
_LEADING = re.compile(r"^\s*(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Z])(?:[.):](?![A-Za-z])|\s*$))")
_TRAILING = re.compile(r"[(\[]([A-Za-z])[)\]][\s.!]*$")
# A standalone letter: parenthesised, followed by ".", ")", ":" or "," and a space, or ending the reply.
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'])(?:\(([A-Z])\)|([A-Z])(?:(?=[.):,?!](?:\s|$))|$))")
# "B is correct", "C is the right answer": a letter named as the answer without a preceding cue.
_LETTER_IS = re.compile(r"(?<![A-Za-z0-9'])\(?([A-Z])\)?\s+is\s+(?:the\s+)?(?:correct|right|best|answer)")
_TRIM = string.whitespace + string.punctuation
# Markdown read through before looking for a letter: emphasis and code marks, heading hashes.
_MARKDOWN = re.compile(r"[*`]+|^[ \t]*#+[ \t]*", re.MULTILINE)
_CAPITAL_WORD = re.compile(r"(?<![A-Za-z0-9'])[A-Z](?![A-Za-z0-9'])")
OPTION_PLACEHOLDER = "\u2026"  # what an option's text quoted in the reply becomes before letters are read


def letter_view(output: str, options: Sequence[str]) -> str:
  """The reply as step 1 reads it: markdown marks removed, and each option text that holds a standalone
  capital ("Type A", "Hepatitis B") replaced where the reply quotes it, so its letter is not an answer letter."""
  text = _MARKDOWN.sub("", output)
  quoted = sorted((o.strip() for o in options if len(o.strip()) > 1 and _CAPITAL_WORD.search(o)), key=len,
                  reverse=True)
  for option in quoted:
    text = re.sub(r"(?<!\w)" + re.escape(option) + r"(?!\w)", OPTION_PLACEHOLDER, text, flags=re.IGNORECASE)
  return text


def _first_group(match: re.Match) -> str:
  return next(g for g in match.groups() if g is not None).upper()


def extract_letter(output: str, n_options: int) -> int | None:
  """Stage 1: the option index named by an answer letter in `output`, or None."""
  valid = LETTERS[:n_options]
  cued = sorted((m.start(), _first_group(m)) for pattern in (_CUE_LETTER, _LETTER_IS)
                for m in pattern.finditer(output))
  cued = [letter for _, letter in cued if letter in valid]
  if cued:
    return valid.index(cued[-1])
  for pattern in (_LEADING, _TRAILING):
    match = pattern.search(output)
    if match and _first_group(match) in valid:
      return valid.index(_first_group(match))
  for match in _STANDALONE.finditer(output):
    letter = _first_group(match)
    if letter in valid:
      return valid.index(letter)
  return None


def _fold(text: str) -> str:
  return " ".join(text.strip(_TRIM).lower().split())


def match_option_text(output: str, options: Sequence[str]) -> int | None:
  """Stage 2: the option whose text equals the reply (case-insensitive, trimmed), or None."""
  reply = _fold(output)
  for index, option in enumerate(options):
    if reply and _fold(option) == reply:
      return index
  return None


def find_option_text(output: str, options: Sequence[str]) -> int | None:
  """Stage 3: of the options mentioned in the reply as whole words, the longest (ties: mentioned first)."""
  reply = " ".join(output.lower().split())
  best: tuple[int, int] | None = None  # (-length, position)
  found = None
  for index, option in enumerate(options):
    text = " ".join(option.lower().split())
    if not text:
      continue
    match = re.search(r"(?<!\w)" + re.escape(text) + r"(?!\w)", reply)
    if match and (best is None or (-len(text), match.start()) < best):
      best, found = (-len(text), match.start()), index
  return found


def extract_choice(output: str, options: Sequence[str]) -> int | None:
  """The option index a reply chooses (letter, then exact option text, then longest contained option)."""
  if not options:
    raise ValueError("extract_choice needs at least one option.")
  if len(options) > len(LETTERS):
    raise ValueError(f"{len(options)} options; at most {len(LETTERS)} can be lettered.")
  for stage in (lambda: extract_letter(letter_view(output, options), len(options)),
                lambda: match_option_text(output, options),
                lambda: find_option_text(output, options)):
    index = stage()
    if index is not None:
      return index
  return None


_YES_NO = re.compile(r"(?<![\w'])(yes|no)(?![\w'])", re.IGNORECASE)


def extract_yes_no(output: str) -> str | None:
  """"yes" or "no": the first of these words in the reply, or None."""
  match = _YES_NO.search(output)
  return match.group(1).lower() if match else None


# The official VQA evaluation's normalisation tables (vqaEval.py), written out here.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "shant": "shan't",
    "shed": "she'd", "shouldve": "should've", "shouldnt": "shouldn't", "somebodys": "somebody's",
    "someones": "someone's", "somethings": "something's", "thats": "that's", "thered": "there'd",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "wasnt": "wasn't", "wed": "we'd", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "yall": "y'all", "youd": "you'd", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
                "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # as written in the official code (a no-op lookahead typo)
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _punctuation(text: str) -> str:
  out = text  # as the official code: the conditions look at the input, the replacements apply to the output
  digit_comma = _COMMA_STRIP.search(text) is not None
  for p in _PUNCTUATION:
    if p not in out:
      continue
    if digit_comma or p + " " in text or " " + p in text:
      out = out.replace(p, "")
    else:
      out = out.replace(p, " ")
  return _PERIOD_STRIP.sub("", out)


def _digits_articles(text: str) -> str:
  words = []
  for word in text.lower().split():
    word = _NUMBER_WORDS.get(word, word)
    if word not in _ARTICLES:
      words.append(_CONTRACTIONS.get(word, word))
  return " ".join(words)


@functools.lru_cache(maxsize=1 << 16)  # reference answers repeat across questions and human annotators
def normalize_answer(text: str) -> str:
  """The VQA evaluation's answer normalisation: "Two dogs." -> "2 dogs", "The Red one" -> "red 1"."""
  text = text.replace("\n", " ").replace("\t", " ").strip().lower()
  return _digits_articles(_punctuation(text))


def _references(references: str | Sequence[str]) -> list[str]:
  refs = [references] if isinstance(references, str) else list(references)
  if not refs:
    raise ValueError("No reference answers to compare with.")
  return [str(r) for r in refs]


def exact_match(output: str, references: str | Sequence[str]) -> float:
  """1.0 when the normalised reply equals a normalised reference answer, else 0.0."""
  reply = normalize_answer(output)
  return float(any(reply == normalize_answer(r) for r in _references(references)))


def vqa_accuracy(output: str, references: str | Sequence[str]) -> float:
  """The official VQA soft accuracy: over each leave-one-out subset of the human answers, min(#equal / 3, 1),
  averaged. With one reference it is exact match."""
  refs = [normalize_answer(r) for r in _references(references)]
  if len(refs) == 1:
    return float(normalize_answer(output) == refs[0])
  reply = normalize_answer(output)
  accuracies = []
  for left_out in range(len(refs)):
    same = sum(r == reply for i, r in enumerate(refs) if i != left_out)
    accuracies.append(min(1.0, same / 3))
  return sum(accuracies) / len(accuracies)


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")


def _to_float(text: str) -> float | None:
  text = text.strip().rstrip("%").replace(",", "").strip()
  try:
    return float(text)
  except ValueError:
    return None


def _reply_number(output: str) -> float | None:
  """The number a reply gives: the whole (trimmed) reply, else the first after an answer cue, else the last."""
  whole = _to_float(output.strip().rstrip("."))
  if whole is not None:
    return whole
  cue = re.search(r"answer\s*(?:is|:)\s*", output, re.IGNORECASE)
  if cue:
    after = _NUMBER.search(output, cue.end())
    if after:
      return _to_float(after.group())
  numbers = _NUMBER.findall(output)
  return _to_float(numbers[-1]) if numbers else None


def relaxed_accuracy(output: str, references: str | Sequence[str], tolerance: float = 0.05) -> float:
  """ChartQA's relaxed accuracy: a numeric answer within `tolerance` (relative) of a reference, else exact match
  of the (case-insensitive, trimmed) text. Unlike ChartQA's script, a trailing "%" is ignored on both sides
  (there "50%" reads as 0.5 and fails against "50")."""
  for reference in _references(references):
    target = _to_float(reference)
    if target is not None:
      value = _reply_number(output)
      if value is not None and (value == target if target == 0 else abs(value - target) / abs(target) <= tolerance):
        return 1.0
    elif _fold(output) == _fold(reference):
      return 1.0
  return 0.0


def contains_match(output: str, references: str | Sequence[str]) -> float:
  """OCRBench's rule: 1.0 when a reference (lower case, trimmed) occurs in the lower-cased reply."""
  reply = output.lower()
  return float(any(r.strip().lower() and r.strip().lower() in reply for r in _references(references)))


def contains_nospace_match(output: str, references: str | Sequence[str]) -> float:
  """OCRBench's rule for handwritten formulas (HME100k): `contains_match` with all whitespace removed."""
  return contains_match("".join(output.split()), ["".join(r.split()) for r in _references(references)])


def numeric_match(output: str, references: str | Sequence[str], precision: int | None = None) -> float:
  """A number answer equal to a reference when both are rounded to `precision` decimals (None: exactly);
  text references fall back to `exact_match`."""
  for reference in _references(references):
    target = _to_float(reference)
    if target is None:
      if exact_match(output, reference):
        return 1.0
      continue
    value = _reply_number(output)
    if value is None:
      continue
    if precision is None and value == target or precision is not None and round(value, precision) == round(
        target, precision):
      return 1.0
  return 0.0


OPEN_METRICS = {"exact": exact_match, "vqa": vqa_accuracy, "relaxed": relaxed_accuracy, "contains": contains_match,
                "contains_nospace": contains_nospace_match, "numeric": numeric_match}
