"""`academia` (stand-in): the SciPy documentation as text and the 1992 Library of Congress workshop
proceedings."""

from __future__ import annotations

from collections.abc import Iterator

from visual_priors.data.corpora.fetch import Fetched, Package
from visual_priors.data.corpora.markup import html_to_text
from visual_priors.data.corpora.model import Document, SourceBuilder, SubSource
from visual_priors.data.corpora.sources.common import read_text, relative, spread, tar_member_text
from visual_priors.data.corpora.text import chunk_paragraphs

SCIPY_HTML = "usr/share/doc/python-scipy-doc/html"
SCIPY_SECTIONS = ("tutorial", "reference")  # Not the release notes, developer guide or indexes.
BROTLI = Package("sdist", "brotli", "1.2.1")
LONG_TEXT_CHARS = 12_000  # Book-length texts are cut at paragraphs into documents of about this size.


def _main_content(page: str) -> str:
  """The article of a Sphinx (pydata theme) page, without navigation, sidebars and footer."""
  start = page.find('role="main"')
  if start < 0:
    return page
  start = page.find(">", start) + 1
  end = page.find("<!-- Previous / next buttons -->", start)
  return page[start:end if end >= 0 else page.find("</main>", start)]


def _scipy(fetched: Fetched) -> Iterator[Document]:
  root = fetched.path / SCIPY_HTML
  pages = [p for section in SCIPY_SECTIONS for p in (root / section).rglob("*.html") if p.is_file()]
  for path in spread(pages, key=lambda p: relative(p, root)):
    yield Document(html_to_text(_main_content(read_text(path))),
                   f"python-scipy-doc:{SCIPY_HTML}/{relative(path, root)}")


def _loc_proceedings(fetched: Fetched) -> Iterator[Document]:
  member = f"brotli-{fetched.version}/tests/testdata/lcet10.txt"
  text = tar_member_text(fetched.path, member, "latin-1")
  for index, piece in enumerate(chunk_paragraphs(text, LONG_TEXT_CHARS)):
    yield Document(piece, f"brotli:{member}#part-{index}")


BUILDER = SourceBuilder(
    source="academia",
    version=1,
    description=("Scientific and technical prose: the SciPy 1.10 documentation (tutorials and API "
                 "reference with the mathematics behind each method; HTML to text, one page per "
                 "document) and the proceedings of the Library of Congress Workshop on Electronic Texts "
                 "(1992, Project Gutenberg etext lcet10, cut into ~12k-character parts)."),
    stand_in=("No scholarly papers (arXiv, PubMed, journals) ship in any package these machines can "
              "install; scientific software documentation and one workshop proceedings stand in for "
              "academic text."),
    sub_sources=(
        SubSource("scipy-docs", Package("deb", "python-scipy-doc"), "BSD-3-Clause", _scipy, prose=False),
        SubSource("loc-workshop-proceedings", BROTLI,
                  "public domain (Project Gutenberg etext; shipped in the MIT-licensed brotli sdist)",
                  _loc_proceedings),
    ),
    parameters={"long_text_chars": LONG_TEXT_CHARS},
)
