"""`encyclopedia`: the English Wikipedia articles shipped in gensim's test data (wikitext to text) and
the GCIDE dictionary (Webster 1913 and later additions)."""

from __future__ import annotations

import bz2
import gzip
import re
import zipfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from visual_priors.data.corpora.fetch import Fetched, Package
from visual_priors.data.corpora.markup import wikitext_to_text
from visual_priors.data.corpora.model import Document, SourceBuilder, SubSource
from visual_priors.data.corpora.sources.common import spread
from visual_priors.data.corpora.text import group

WIKI_DUMPS = ("gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
              "gensim/test/test_data/enwiki-table-markup.xml.bz2")
GCIDE = "usr/share/dictd/gcide"
DICTIONARY_GROUP_CHARS = 3000  # Consecutive dictionary entries are joined into documents of this size.
_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _wikipedia(fetched: Fetched) -> Iterator[Document]:
  with zipfile.ZipFile(fetched.path) as wheel:
    for dump in WIKI_DUMPS:
      with wheel.open(dump) as compressed, bz2.open(compressed) as xml:
        for _, element in ET.iterparse(xml):
          if not element.tag.endswith("}page"):
            continue
          title, markup = element.findtext("{*}title") or "", element.findtext(".//{*}text") or ""
          element.clear()
          if markup.lstrip().lower().startswith("#redirect"):
            continue
          yield Document(f"{title}\n\n{wikitext_to_text(markup)}", f"gensim:{dump}#{title}")


def _dictd_number(digits: str) -> int:
  value = 0
  for digit in digits:
    value = value * 64 + _BASE64.index(digit)
  return value


def _dictd_entries(index_path, data_path) -> list[str]:
  """Entries of a dictd database in file order; headwords sharing one entry give it once."""
  raw = gzip.open(data_path).read()
  spans = set()
  with open(index_path, encoding="utf-8", errors="replace") as index:
    for line in index:
      headword, offset, length = line.rstrip("\n").split("\t")[:3]
      if not headword.startswith("00-database"):
        spans.add((_dictd_number(offset), _dictd_number(length)))
  return [raw[start:start + size].decode("utf-8", errors="replace") for start, size in sorted(spans)]


def _gcide_entry(entry: str) -> str:
  entry = re.sub(r"^\s*\[(?:[^\]\n]*(?:Webster|WordNet|PJC|RNW|MW|Century|Chambers)[^\]\n]*)\]\s*$", "",
                 entry, flags=re.M)  # Source tags such as "[1913 Webster]".
  entry = re.sub(r"\\[^\\\n]*\\", "", entry)  # Pronunciations such as \Ze"bra\.
  headword, _, rest = entry.strip().partition("\n")
  headword = re.sub(r" ?\([^()\n]*[\"*`][^()\n]*\)", "", headword)  # Coded ones: (h[=oo]`s[-o]*[e^]v"[~e]r).
  entry = re.sub(r" +([,.;])", r"\1", f"{headword}\n{rest}")
  return re.sub(r"[{}]", "", entry).strip()  # Cross-reference braces: {Equus zebra}.


def _gcide(fetched: Fetched) -> Iterator[Document]:
  root = fetched.path
  entries = (_gcide_entry(e) for e in _dictd_entries(root / f"{GCIDE}.index", root / f"{GCIDE}.dict.dz"))
  groups = [Document(text, f"dict-gcide:{GCIDE}.dict.dz#group-{index}")
            for index, text in enumerate(group(entries, DICTIONARY_GROUP_CHARS, "\n\n"))]
  yield from spread(groups, key=lambda document: document.origin)


BUILDER = SourceBuilder(
    source="encyclopedia",
    version=1,
    description=("Encyclopedic text: the 111 English Wikipedia articles in gensim 4.4.0's test data "
                 "(wikitext to text: templates, references, tables, files and appendix sections removed; "
                 "one article per document) and the GCIDE dictionary entries (Webster 1913 with later "
                 "additions; long encyclopedic notes), grouped into ~3k-character documents."),
    stand_in=("Only 111 Wikipedia articles ship in a package; the GCIDE dictionary adds encyclopedic "
              "bulk in dictionary form."),
    # Sub-sources with short documents first: the round-robin then samples both under a small bound.
    sub_sources=(
        SubSource("gcide-dictionary", Package("deb", "dict-gcide"), "GPL-2.0-or-later", _gcide),
        SubSource("wikipedia-articles", Package("wheel", "gensim", "4.4.0"), "CC-BY-SA-3.0 (Wikipedia text)",
                  _wikipedia),
    ),
    parameters={"dictionary_group_chars": DICTIONARY_GROUP_CHARS},
)
