"""`math`: Metamath set.mm theorems with their English comments, the PARI/GP manuals (TeX), and
generated arithmetic/algebra word problems with worked solutions."""

from __future__ import annotations

import re
from collections.abc import Iterator

from visual_priors.data.corpora import wordproblems
from visual_priors.data.corpora.fetch import Fetched, Package
from visual_priors.data.corpora.model import Document, SourceBuilder, SubSource
from visual_priors.data.corpora.sources.common import read_text
from visual_priors.data.corpora.text import chunk_paragraphs, group, split_before

SET_MM = "usr/share/metamath/databases/set.mm"
PARI_DOC = "usr/share/pari/doc"
# The manual chapters and tutorials; the macro files and the reference card are not prose.
PARI_FILES = ("tutorial.tex", "tutorial-mf.tex", "develop.tex",
              *(f"usersch{n}.tex" for n in range(1, 9)))
PARI_HEADING = re.compile(r"^\\(?:chapter|section|subsec)\b", re.M)
SECTION_MIN_CHARS = 1500
SECTION_MAX_CHARS = 40_000  # Longer Metamath sections are cut at paragraphs into ~20k pieces.
WORD_PROBLEM_SEED, WORD_PROBLEM_DOCUMENTS, WORD_PROBLEMS_PER_DOCUMENT = 0, 2500, 4

_MM_COMMENT = re.compile(r"\$\((.*?)\$\)", re.S)
_MM_STATEMENT_KEYWORDS = frozenset({"$a", "$p", "$e"})  # Axiom, theorem, hypothesis.
_MM_STATEMENT_ENDS = frozenset({"$=", "$."})  # Start of the proof, end of the statement.
# A section heading comment: a rule line (its pattern gives the level), the title, a rule, the body.
_MM_HEADING = re.compile(
    r"^\s*(?P<rule>#\*#\*|=-=-=|-\.-\.-|####)[^\n]*\n\s*(?P<title>[^\n]*)\n[^\n]*\n(?P<body>.*)", re.S)
_MM_CREDIT = re.compile(
    r"\((?:Contributed|Revised|Proof|New usage|Modified|Shortened|Moved|Eliminated|Added)\b[^()]*\)")


def _comment_text(comment: str) -> str:
  text = re.sub(r"<HTML>.*?</HTML>", "", comment, flags=re.S)
  text = _MM_CREDIT.sub("", text).replace("`", "")
  text = re.sub(r"~\s+", "", text)  # "~ label" cross-references become the bare label.
  return "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip())


def _metamath_tokens(text: str) -> Iterator[tuple[str | None, str]]:
  """(None, comment) and (label, formula) pairs in file order."""
  for index, piece in enumerate(_MM_COMMENT.split(text)):
    if index % 2:
      yield None, piece
      continue
    words = piece.split()
    for position, word in enumerate(words):
      if word in _MM_STATEMENT_KEYWORDS and position > 0:
        end = next((k for k in range(position + 1, len(words)) if words[k] in _MM_STATEMENT_ENDS),
                   len(words))
        yield words[position - 1], " ".join(words[position + 1:end])


def _metamath_sections(text: str) -> Iterator[str]:
  """One text per set.mm section: its title and description, then each commented statement as
  "label: comment" followed by its formula. Skipped: the file header before the first part
  (####) heading (licence, contributors, label-change log, syntax notes) and the typesetting ($t) and
  metadata ($j) comments."""
  section: list[str] | None = None
  pending: str | None = None
  for label, content in _metamath_tokens(text):
    if label is None:
      if content.lstrip().startswith(("$t", "$j")):
        continue
      heading = _MM_HEADING.match(content)
      if heading and (section is not None or heading.group("rule") == "####"):
        if section:
          yield "\n\n".join(section)
        body = _comment_text(heading.group("body"))
        section, pending = [heading.group("title").strip(), *([body] if body else [])], None
        continue
      if section is not None and pending:
        section.append(pending)
      pending = _comment_text(content)
    elif section is not None and pending:
      section.append(f"{label}: {pending}\n{content}")
      pending = None
  if section:
    yield "\n\n".join(section)


def _metamath(fetched: Fetched) -> Iterator[Document]:
  text = read_text(fetched.path / SET_MM)
  sections = group(_metamath_sections(text), SECTION_MIN_CHARS, "\n\n")
  pieces = (piece for section in sections
            for piece in (chunk_paragraphs(section, SECTION_MAX_CHARS // 2)
                          if len(section) > SECTION_MAX_CHARS else [section]))
  for index, piece in enumerate(pieces):
    yield Document(piece, f"metamath-databases:{SET_MM}#part-{index}")


def _pari(fetched: Fetched) -> Iterator[Document]:
  for name in PARI_FILES:
    text = read_text(fetched.path / PARI_DOC / name, encoding="latin-1")
    for index, section in enumerate(split_before(text, PARI_HEADING, SECTION_MIN_CHARS)):
      yield Document(section, f"pari-doc:{PARI_DOC}/{name}#section-{index}")


def _word_problems(fetched: Fetched) -> Iterator[Document]:
  del fetched  # Generated in code; nothing was downloaded.
  for index, text in wordproblems.problem_sets(WORD_PROBLEM_SEED, WORD_PROBLEM_DOCUMENTS,
                                               WORD_PROBLEMS_PER_DOCUMENT):
    yield Document(text, f"visual_priors-wordproblems:seed-{WORD_PROBLEM_SEED}/{index}")


BUILDER = SourceBuilder(
    source="math",
    version=1,
    description=("Mathematics: Metamath set.mm (each theorem's English comment with its formula, grouped "
                 "by section), the PARI/GP user's manual and tutorials (LaTeX source, by section), and "
                 f"{WORD_PROBLEM_DOCUMENTS} sets of {WORD_PROBLEMS_PER_DOCUMENT} generated arithmetic/"
                 "algebra word problems with worked solutions."),
    sub_sources=(
        SubSource("metamath-set-mm", Package("deb", "metamath-databases"), "CC0-1.0", _metamath),
        SubSource("pari-gp-manual", Package("deb", "pari-doc"), "GPL-2.0-or-later", _pari, prose=False),
        SubSource("word-problems",
                  Package("local", "visual_priors-wordproblems", wordproblems.GENERATOR_VERSION),
                  "Apache-2.0 (generated by this project)", _word_problems),
    ),
    parameters={"word_problems": {"seed": WORD_PROBLEM_SEED, "documents": WORD_PROBLEM_DOCUMENTS,
                                  "per_document": WORD_PROBLEMS_PER_DOCUMENT}},
)
