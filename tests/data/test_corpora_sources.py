"""Readers of the built-in sources on small hand-made inputs in each package's format."""

from __future__ import annotations

import gzip
import pathlib

from visual_priors.data.corpora import registry
from visual_priors.data.corpora.fetch import Fetched, Package
from visual_priors.data.corpora.sources import academia, encyclopedia, literature, mathematics, visual_description

SET_MM = """$( set.mm header $)
$(
#*#*#*#*#*#*#*#*#*#*
  Header chapter
#*#*#*#*#*#*#*#*#*#*
  Licence and change log. $)
$(
####################
  PROPOSITIONAL CALCULUS
####################

  Logic is the study of correct reasoning.

  A second paragraph.
$)
  $( Minor premise for modus ponens. $)
  min $e |- ph $.
  $( Rule of modus ponens, see ~ ax-1 . (Contributed by NM, 30-Sep-1992.) $)
  ax-mp $a |- ps $.
  $( Identity law: ` ph ` implies itself. (Proof shortened by Wolf Lammen,
     1-Jan-2020.) $)
  id $p |- ( ph -> ph ) $= ( wi ax-1 ) AAB $.
  $( $t /* typesetting definitions */ latexdef "ph" as "\\varphi"; $)
$(
=-=-=-=-=-=-=-=-=-=
  Next section
=-=-=-=-=-=-=-=-=-=
$)
"""


def test_metamath_sections_pair_comments_with_formulas_and_skip_the_header():
  sections = list(mathematics._metamath_sections(SET_MM))
  assert sections == [
      "PROPOSITIONAL CALCULUS\n\nLogic is the study of correct reasoning.\n\nA second paragraph.\n\n"
      "min: Minor premise for modus ponens.\n|- ph\n\n"
      "ax-mp: Rule of modus ponens, see ax-1 .\n|- ps\n\n"
      "id: Identity law: ph implies itself.\n|- ( ph -> ph )",
      "Next section",
  ]


def test_gcide_entries_lose_pronunciation_codes_and_source_tags():
  entry = ("Zebra \\Ze\"bra\\, n. [Pg. zebra.] (Zool.)\n   Any of three species of African wild horses,\n"
           "   marked with dark bands. See {Quagga}.\n   [1913 Webster]\n")
  assert encyclopedia._gcide_entry(entry) == (
      "Zebra, n. [Pg. zebra.] (Zool.)\n   Any of three species of African wild horses,\n"
      "   marked with dark bands. See Quagga.")
  coded = "Whosoever (h[=oo]`s[-o]*[e^]v\"[~e]r), pron.\n   Whatsoever person."
  assert encyclopedia._gcide_entry(coded) == "Whosoever, pron.\n   Whatsoever person."


def test_dictd_entries_are_read_once_each_in_file_order(tmp_path):
  data = b"first entry\nsecond entry\n"
  (tmp_path / "d.dict.dz").write_bytes(gzip.compress(data))
  # dictd offsets/lengths are base-64 numbers: "A"=0, "M"=12, "L"=11, "N"=13.
  (tmp_path / "d.index").write_text("00-database-url\tA\tB\nsecond\tM\tN\nfirst\tA\tL\nalias\tM\tN\n")
  assert encyclopedia._dictd_entries(tmp_path / "d.index", tmp_path / "d.dict.dz") == [
      "first entry", "second entry\n"]


def test_wordnet_glosses_of_physical_nouns_only(tmp_path):
  nouns = tmp_path / "usr/share/wordnet/data.noun"
  nouns.parent.mkdir(parents=True)
  nouns.write_text(
      "  1 This software and database is being provided to you\n"
      "02672371 06 n 03 accordion 0 piano_accordion 0 squeeze_box 0 001 @ 03614007 n 0000 | a portable "
      "box-shaped free-reed instrument\n"
      "05820620 09 n 01 idea 0 000 | the content of cognition\n"
      "02391049 05 n 01 zebra 0 000 | any of several fleet black-and-white striped African equines  \n",
      encoding="latin-1")
  fetched = Fetched(Package("deb", "wordnet-base"), "1:3.0-37", tmp_path)
  assert list(visual_description._physical_glosses(fetched)) == [
      "accordion, piano accordion, squeeze box: a portable box-shaped free-reed instrument",
      "zebra: any of several fleet black-and-white striped African equines"]


def test_sphinx_main_content_drops_navigation_and_footer():
  page = ('<html><body><nav>sidebar</nav><main class="bd-content" role="main"><div><h1>scipy.stats</h1>'
          "<p>Statistics.</p></div><!-- Previous / next buttons --><a>next</a></main><footer>f</footer>")
  assert academia._main_content(page) == "<div><h1>scipy.stats</h1><p>Statistics.</p></div>"


def test_moby_dick_files_skip_the_whole_book_copy_and_the_contents():
  names = ["chapter_1.txt", "chapter_135.txt", "etymology.txt", "data.txt", "contents.txt", "chapter_1.json"]
  assert [n for n in names if literature.MOBY_DICK_FILE.match(n)] == ["chapter_1.txt", "chapter_135.txt",
                                                                      "etymology.txt"]


def test_registry_knows_the_papers_sources_and_the_extras():
  assert set(registry.CORPUS_SOURCES) >= {"web-crawl", "arts", "visual-description"}
  assert set(registry.BUILTIN_SOURCES) <= set(registry.CORPUS_SOURCES)
  for source, builder in registry.BUILDERS.items():
    assert builder.source == source and builder.sub_sources
    assert len({sub.name for sub in builder.sub_sources}) == len(builder.sub_sources)
  assert pathlib.Path(registry.BUILDERS["code"].sub_sources[0].package.local_path).is_dir()
