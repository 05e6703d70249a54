"""The fast offline labeller: per-label lexicon and structure-pattern hits per 100 words, against tuned thresholds.

How a segment is scored, per label:
  hits  = occurrences of the label's lexicon words and phrases (lexicons/<label>.txt, matched on lowercase
          [a-z]+ tokens, simple plurals included)
        + matches of the label's structure patterns (below: code lines, comments, operators, hex literals and
          multi-letter identifiers; LaTeX, math symbols, digit-operator-digit and worked-exercise headings;
          numbers with physical units and p-values; hyphenated appearance words such as "funnel-shaped");
          science patterns count at most SCIENCE_PATTERN_CAP per science word (plus one), so units alone
          ("350 km in 5 hours") do not make a worked exercise science
        + for visual-relationship, each spatial preposition ("on the small table") or part-whole marker between
          two visual-concept words ("a duck with red feathers") followed by a visual-concept word, up to
          MAX_ATTRIBUTES visual-attribute words allowed in between; its lexicon words and phrases count only
          within RELATIONSHIP_WINDOW tokens of a visual-concept word
  score = 100 * hits / number of word tokens, and 0 for the visual labels on technical text
          (code score, math notation score or half the math score >= TECHNICAL_SCORE); the visual-relationship
          score is 0 below RELATIONSHIP_MIN_CONCEPT visual-concept score (relationships hold between concrete
          things: prepositions in abstract prose locate nothing) and gets RELATIONSHIP_CONCEPT_WEIGHT times the
          visual-concept score added above it (dense concrete description names parts the lexicon lacks)
A segment carries the label when score >= the label's threshold. Thresholds live in
lexicons/thresholds.json and are tuned for F1 on the dev split of the hand-labelled set
(`python -m visual_priors.data.labelling.tune`). One regex pass per pattern plus one loop over tokens:
about a millisecond per 1024-token segment on one core.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import logging
import os
import pathlib
import re
from collections.abc import Mapping, Sequence

import ml_collections

from visual_priors.data import cache, categories
from visual_priors.data.labelling import base

LEXICON_DIR = pathlib.Path(__file__).resolve().parent / "lexicons"
THRESHOLDS_FILE = "thresholds.json"
_TOKEN = re.compile(r"[a-z]+")
_M = re.MULTILINE

# Mathematical function names: a call of one of them ("gcd(15, 13)", "sin(x)") is no code hit.
_MATH_FUNCTIONS = ("sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|sinh|cosh|tanh|log|ln|lg|exp|sqrt|gcd|lcm|max|min|"
                   "det|dim|deg|mod|sup|inf|lim|arg|var|cov|pdf|cdf|ppf|sgn|sign|abs")

# Structure patterns, counted on the original text (case kept; code patterns skip _MATH_SPAN). Each match
# is one hit.
STRUCTURE_PATTERNS: Mapping[str, tuple[re.Pattern[str], ...]] = {
    "code": (
        re.compile(r"^[ \t]*(?:def |class |return\b|import |from\s+[\w.]+\s+import\b|elif\b|else:|try:|"
                   r"except\b|finally:|raise\b|yield\b|async\s|await\s|@[\w.]+|for\s.+\sin\s.+:$|"
                   r"while\s.+:$|if\s.+:$|with\s.+:$)", _M),
        re.compile(r"^[ \t]*(?:#include|#define|public\s|private\s|protected\s|static\s|void\s|const\s|"
                   r"let\s|var\s|func\s|function\s|package\s|using\s)", _M),
        re.compile(r"[;{}][ \t]*$", _M),
        re.compile(r"^[ \t]*(?:>>>|\.\.\.\s|\$\s)", _M),
        # Assignments and calls need a name of two or more characters: "x = 1" and "lcm(8, 9)" are math.
        re.compile(r"(?<![\\\w])[A-Za-z_][\w.]+\s*(?:[-+*/%|&^]|//|\*\*)?=(?!=|-=)\s*\S"),
        re.compile(r"(?<![\\\w])(?!(?:" + _MATH_FUNCTIONS + r")\()[A-Za-z_][\w.]+\([^()\n]*\)"),
        re.compile(r"(?<=[a-z])_[a-z0-9]"),  # snake_case joints
        re.compile(r"\b[a-z][a-z0-9]*(?:[A-Z][a-z0-9]+)+\b"),  # lowerCamelCase ("getName"), not "WhiteheadRussell"
        # Operators, not rules or decorations drawn with them ("=====", "=-=-=-", "::::").
        re.compile(r"(?<![-=:|&+!<>])(?:==|!=|&&|\|\||\+=|-=|::|=>)(?![-=:|&>])"),
        re.compile(r"^(?: {4}|\t)+[^\s*>-][^\n]*[(){}\[\]:;]\s*$", _M),  # indented code lines, not bullets or prose
        re.compile(r"^[ \t]*(?://|/\*|\*/)", _M),  # C-family comment lines
        re.compile(r"\b0x[0-9A-Fa-f]+\b|'\\u[0-9A-Fa-f]{4}'"),  # hex literals, escaped code points
    ),
    "math": (
        re.compile(r"\\(?:frac|d?sum|int|prod|sqrt|lim|infty|alpha|beta|gamma|delta|epsilon|varepsilon|"
                   r"zeta|eta|theta|kappa|lambda|mu|nu|xi|pi|rho|sigma|tau|phi|varphi|chi|psi|omega|Gamma|"
                   r"Delta|Theta|Lambda|Sigma|Phi|Psi|Omega|leq?|geq?|neq?|notin|in|subseteq|subset|cup|cap|"
                   r"times|cdot|circ|mathbb|mathcal|mathrm|mathbf|left|right|partial|nabla|forall|exists|"
                   r"equiv|approx|sim|pmod|bmod|binom|hat|bar|tilde|ldots|cdots|to|mapsto|Rightarrow|"
                   r"Leftrightarrow|log|exp|sin|cos|tan|det|dim|ker|deg|gcd|sup|inf|max|min|"
                   r"begin\{(?:equation|align|eqnarray)\*?\})(?![A-Za-z])"),
        re.compile(r"\$[^$\n]{1,120}\$|\\\(.{1,200}?\\\)"),
        re.compile(r"[∑∫√≤≥≠∈∉∀∃∞±×÷⇒⇔≈≡⊂⊆∪∩∂∇∘]"),
        re.compile(r"\d ?[+*^=<>] ?\d|\d [-/] \d"),  # "3+4", "2 - 1"; not dates such as 2002-08-22
        re.compile(r"(?<=[A-Za-z]) ?\^ ?[\d{(]"),
        re.compile(r"` [^`\n]{1,120} `"),  # Metamath's `( A e. B )` formula notation.
        re.compile(r"^(?:Problem|Solution|Answer)\s*:", _M),  # worked exercises
    ),
    "science": (
        re.compile(r"\b\d+(?:[.,]\d+)?\s?(?:%|percent\b|°\s?[CF]?|(?:kg|mg|g|km|cm|mm|nm|µm|m|Hz|kHz|MHz|"
                   r"GHz|eV|keV|MeV|GeV|kJ|J|kW|W|mV|V|mol|mM|ml|mL|L|ppm)\b)"),
        re.compile(r"p(?<!\wp) ?[<=>] ?0?\.\d"),  # p-values
        re.compile(r"(?<=\d)(?: ?[×x] ?10\^?[-−]?\d+|e[-+]\d+\b)"),  # scientific notation
    ),
    "visual-attribute": (
        # Hyphenated appearance compounds: "snake-like", "funnel-shaped", "long-haired", "black-capped".
        re.compile(r"\b[A-Za-z]+-(?:like|shaped|colou?red|sized|haired|legged|necked|tailed|striped|spotted|"
                   r"eyed|capped|winged|headed|faced|bodied)\b"),
    ),
}


# A spatial preposition, an optional determiner and attribute, then a visual-concept word is one
# visual-relationship hit ("sitting on the hearth", "into the cask", "under a green tree").
_SPATIAL_PREPOSITIONS = frozenset(
    "on in into onto under over through from off at across along beside behind near above below upon "
    "inside within beneath around between".split())
_DETERMINERS = frozenset("the a an its his her their my your our this that these those each every both two three four "
                         "several many some".split())
# A part-whole marker between two visual-concept words is one visual-relationship hit ("a duck with red
# feathers", "a shrub having white flowers", "the dog has a thick tail").
_PART_MARKERS = frozenset("with having has have bearing".split())
# How many visual-attribute words may stand between a preposition or part marker (and its determiner) and the
# visual-concept word it locates ("on a small green branch").
MAX_ATTRIBUTES = 2
# Visual labels are not given to technical text: at this code or math score (hits per 100 words) the
# lexicon's concrete nouns are mostly identifiers or symbol names ("key", "table", "sign").
TECHNICAL_SCORE = 10.0
# Science structure hits (numbers with units, p-values) counted per science lexicon word (plus one).
SCIENCE_PATTERN_CAP = 1
# How many tokens away a visual-concept word may be for a relationship word or phrase to count.
RELATIONSHIP_WINDOW = 4
# Below this visual-concept score (hits per 100 words) a segment gets no visual-relationship score; above it,
# RELATIONSHIP_CONCEPT_WEIGHT times the visual-concept score is added to the visual-relationship score.
RELATIONSHIP_MIN_CONCEPT = 4.0
RELATIONSHIP_CONCEPT_WEIGHT = 0.05
_LABEL_INDEX = {label: index for index, label in enumerate(categories.LABELS)}
# Inline and display math, removed before the code patterns run ("$k = n(n+1)$" is no assignment or call).
_MATH_SPAN = re.compile(r"\$[^$\n]{1,200}\$|\\\(.{1,200}?\\\)|\\\[.{1,400}?\\\]|"
                        r"\\begin\{(equation|align|eqnarray)\*?\}.*?\\end\{\1\*?\}", re.S)


class Lexicons:
  """The six label lexicons, indexed for one pass over a token list."""

  def __init__(self, directory: str | os.PathLike[str] = LEXICON_DIR):
    self.directory = pathlib.Path(directory)
    words: dict[str, list[int]] = collections.defaultdict(list)
    phrases: dict[str, list[tuple[tuple[str, ...], int]]] = collections.defaultdict(list)
    digest = hashlib.sha256()
    for index, label in enumerate(categories.LABELS):
      path = self.directory / f"{label}.txt"
      if not path.is_file():
        raise FileNotFoundError(f"Lexicon {path} is missing; a lexicon directory needs one file per label: "
                                f"{', '.join(f'{l}.txt' for l in categories.LABELS)}.")
      text = path.read_text(encoding="utf-8")
      digest.update(f"{label}\n{text}".encode())
      for entry in sorted(_entries(text)):
        for tokens in _inflections(tuple(_TOKEN.findall(entry))):
          if len(tokens) == 1:
            words[tokens[0]].append(index)
          else:
            phrases[tokens[0]].append((tokens[1:], index))
    rules = [p.pattern for patterns in STRUCTURE_PATTERNS.values() for p in patterns]
    rules += [_MATH_SPAN.pattern, sorted(_SPATIAL_PREPOSITIONS), sorted(_DETERMINERS), sorted(_PART_MARKERS),
              TECHNICAL_SCORE, RELATIONSHIP_WINDOW, MAX_ATTRIBUTES, SCIENCE_PATTERN_CAP,
              "technical: max(code, math notation, math / 2)", RELATIONSHIP_MIN_CONCEPT, RELATIONSHIP_CONCEPT_WEIGHT]
    digest.update(repr(rules).encode())  # The thresholds were tuned for these rules as well.
    self.words = {word: tuple(sorted(set(labels))) for word, labels in words.items()}
    self.phrases = {first: tuple(sorted(set(rests))) for first, rests in phrases.items()}
    self.digest = digest.hexdigest()
    self._starters = frozenset(self.phrases) | _SPATIAL_PREPOSITIONS | _PART_MARKERS

  def hits(self, text: str) -> tuple[list[int], int, list[int]]:
    """Hits per label (in categories.LABELS order), the number of word tokens in `text`, and the structure-pattern
    hits per label (already included in the first)."""
    tokens = _TOKEN.findall(text.lower())
    hits = [0] * len(categories.LABELS)
    words, phrases = self.words, self.phrases
    concept, attribute = _LABEL_INDEX["visual-concept"], _LABEL_INDEX["visual-attribute"]
    relationship = _LABEL_INDEX["visual-relationship"]
    for token, count in collections.Counter(tokens).items():
      for index in words.get(token, ()):
        if index != relationship:
          hits[index] += count
    # A relationship word or phrase counts only near a visual-concept word ("the base of the lamp", not
    # "the customer base"): within RELATIONSHIP_WINDOW tokens on either side.
    concepts = [i for i, token in enumerate(tokens) if concept in words.get(token, ())]

    def near_concept(position: int, ahead: int = RELATIONSHIP_WINDOW) -> bool:
      at = bisect.bisect_left(concepts, position - RELATIONSHIP_WINDOW)
      return at < len(concepts) and concepts[at] <= position + ahead

    starters = self._starters
    for position, token in enumerate(tokens):
      if relationship in words.get(token, ()) and near_concept(position):
        hits[relationship] += 1
      if token not in starters:
        continue
      starts = phrases.get(token)
      if starts:
        for rest, index in starts:
          if tuple(tokens[position + 1:position + 1 + len(rest)]) == rest:
            if index != relationship or near_concept(position):
              hits[index] += 1
      # "on the (small) table": a located visual concept; "a duck with (red) feathers": a part of one.
      if token in _SPATIAL_PREPOSITIONS or (token in _PART_MARKERS and near_concept(position, ahead=-1)):
        after = position + 1
        if after < len(tokens) and tokens[after] in _DETERMINERS:
          after += 1
        for _ in range(MAX_ATTRIBUTES):
          if after < len(tokens) and attribute in words.get(tokens[after], ()):
            after += 1
        if after < len(tokens) and concept in words.get(tokens[after], ()):
          hits[relationship] += 1
    without_math = _MATH_SPAN.sub(" ", text)
    structure = [0] * len(categories.LABELS)
    for label, patterns in STRUCTURE_PATTERNS.items():
      searched = without_math if label == "code" else text
      for pattern in patterns:
        structure[_LABEL_INDEX[label]] += sum(1 for _ in pattern.finditer(searched))
    # Units and percentages back science vocabulary up but do not make science on their own: a worked exercise
    # ("350 km in 5 hours", "25% off") is math. At most SCIENCE_PATTERN_CAP structure hits per science word count.
    science = _LABEL_INDEX["science"]
    counted = list(structure)
    counted[science] = min(structure[science], SCIENCE_PATTERN_CAP * (hits[science] + 1))
    return [a + b for a, b in zip(hits, counted)], len(tokens), structure


def _entries(text: str) -> set[str]:
  entries = set()
  for line in text.splitlines():
    entry = line.split("#", 1)[0].strip().lower()
    if entry:
      entries.add(entry)
  return entries


def _inflections(tokens: tuple[str, ...]) -> set[tuple[str, ...]]:
  """The entry and its simple plurals (+s, +es, y -> ies), inflecting the last word."""
  if not tokens:
    return set()
  *head, last = tokens
  forms = {last, last + "s", last + "es"}
  if last.endswith("y"):
    forms.add(last[:-1] + "ies")
  return {(*head, form) for form in forms}


def read_thresholds(directory: str | os.PathLike[str] = LEXICON_DIR,
                    lexicons: Lexicons | None = None) -> dict[str, float]:
  """The tuned per-label thresholds stored next to the lexicons (`lexicons`: those already loaded)."""
  path = pathlib.Path(directory) / THRESHOLDS_FILE
  if not path.is_file():
    raise FileNotFoundError(f"No thresholds at {path}; run `python -m visual_priors.data.labelling.tune` "
                            "or pass thresholds explicitly.")
  stored = cache.read_json(path, "rerun `python -m visual_priors.data.labelling.tune` to rewrite it")
  thresholds = _checked_thresholds(stored["thresholds"], str(path))
  current = (lexicons or Lexicons(directory)).digest
  if stored.get("lexicon_digest") != current:
    logging.warning("Thresholds in %s were tuned for other lexicons or patterns (digest %s, now %s); "
                    "re-run `python -m visual_priors.data.labelling.tune`.",
                    path, stored.get("lexicon_digest"), current)
  return thresholds


def _checked_thresholds(thresholds: Mapping[str, float], where: str) -> dict[str, float]:
  missing = [label for label in categories.LABELS if label not in thresholds]
  extra = [label for label in thresholds if label not in categories.LABELS]
  if missing or extra:
    raise ValueError(f"Thresholds from {where} must name exactly the labels {list(categories.LABELS)}; "
                     f"missing {missing}, unknown {extra}.")
  return {label: float(thresholds[label]) for label in categories.LABELS}


class LexiconLabeller:
  """Labels a segment with every label whose score (hits per 100 words) reaches its threshold."""

  def __init__(self, lexicon_dir: str | os.PathLike[str] = LEXICON_DIR,
               thresholds: Mapping[str, float] | None = None):
    self.lexicons = Lexicons(lexicon_dir)
    self.thresholds = (read_thresholds(lexicon_dir, self.lexicons) if thresholds is None
                       else _checked_thresholds(thresholds, "the thresholds argument"))
    identity = hashlib.sha256(f"{self.lexicons.digest}{sorted(self.thresholds.items())}".encode())
    self.name = f"lexicon-v1:{identity.hexdigest()[:12]}"

  def scores(self, text: str) -> dict[str, float]:
    """Hits per 100 word tokens, per label; visual scores are 0 on technical text (TECHNICAL_SCORE), and the
    visual-relationship score depends on the visual-concept score (RELATIONSHIP_MIN_CONCEPT)."""
    hits, words, structure = self.lexicons.hits(text)
    scores = {label: 100.0 * count / max(words, 1) for label, count in zip(categories.LABELS, hits)}
    # A few math words ("root", "square", "set") do not make text technical: math notation does, or twice as many
    # math words and symbols ("the polynomial matrix over a ring is a ring").
    math_notation = 100.0 * structure[_LABEL_INDEX["math"]] / max(words, 1)
    if max(scores["code"], math_notation, scores["math"] / 2) >= TECHNICAL_SCORE:
      scores.update({label: 0.0 for label in categories.VISUAL_LABELS})
    concept = scores["visual-concept"]
    scores["visual-relationship"] = (scores["visual-relationship"] + RELATIONSHIP_CONCEPT_WEIGHT * concept
                                     if concept >= RELATIONSHIP_MIN_CONCEPT else 0.0)
    return scores

  def label(self, texts: Sequence[str]) -> list[frozenset[str]]:
    return [self.labels_from_scores(self.scores(text)) for text in texts]

  def labels_from_scores(self, scores: Mapping[str, float]) -> frozenset[str]:
    return frozenset(label for label in categories.LABELS if scores[label] >= self.thresholds[label])


def tune_thresholds(scores: Sequence[Mapping[str, float]],
                    gold: Sequence[frozenset[str]]) -> dict[str, float]:
  """Per label, the threshold with the best F1 on (scores, gold); the middle one among equally good ones.

  Candidates are midpoints between consecutive distinct scores, plus one below all scores (everything
  positive) and one above (nothing positive).
  """
  if len(scores) != len(gold) or not scores:
    raise ValueError(f"Tuning needs as many gold label sets as score rows (got {len(scores)} and {len(gold)}), "
                     "and at least one.")
  tuned = {}
  for label in categories.LABELS:
    values = sorted({row[label] for row in scores})
    candidates = [values[0] - 1.0, *((a + b) / 2 for a, b in zip(values, values[1:])), values[-1] + 1.0]
    f1s = [_f1([row[label] >= t for row in scores], [label in g for g in gold]) for t in candidates]
    best = max(f1s)
    ties = [t for t, f in zip(candidates, f1s) if f == best]
    tuned[label] = ties[len(ties) // 2]
  return tuned


def _f1(predicted: Sequence[bool], actual: Sequence[bool]) -> float:
  """F1 for tuning; predicting no positive where there is none is a perfect 1.0."""
  true_positives = sum(p and a for p, a in zip(predicted, actual))
  denominator = sum(predicted) + sum(actual)
  return 2.0 * true_positives / denominator if denominator else 1.0


@base.register_labeller("lexicon")
def _from_config(config: ml_collections.ConfigDict) -> LexiconLabeller:
  fields = base.config_fields(config, {"lexicon_dir": "", "thresholds": None})
  thresholds = fields["thresholds"]
  return LexiconLabeller(fields["lexicon_dir"] or LEXICON_DIR,
                         dict(thresholds) if thresholds is not None else None)
