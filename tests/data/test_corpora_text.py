"""Text normalisation, cutting into documents, and markup (HTML, wikitext, e-mail) to text."""

from __future__ import annotations

import re

from visual_priors.data.corpora.markup import email_to_text, html_to_text, wikitext_to_text
from visual_priors.data.corpora.text import chunk_paragraphs, group, normalise, split_before


def test_normalise_keeps_code_indentation_and_collapses_prose():
  code = "def f(x):\r\n    if x:  \r\n\t\treturn 1\x00\n\n\n\n\nclass A:\n  pass\n\n"
  assert normalise(code, prose=False) == "def f(x):\n    if x:\n\t\treturn 1\n\nclass A:\n  pass"
  prose = "\ufeff   Call  me\u00a0 Ishmael.   \n\n\n\n   Some years ago\t\tnever mind.  "
  assert normalise(prose, prose=True) == "Call me Ishmael.\n\nSome years ago never mind."


def test_normalise_composes_unicode():
  assert normalise("cafe\u0301 " * 3, prose=True) == "caf\u00e9 caf\u00e9 caf\u00e9"


def test_chunk_paragraphs_cuts_at_blank_lines_and_keeps_every_line():
  paragraphs = [f"Paragraph {i} " + "word " * 30 for i in range(20)]
  text = "\n\n".join(paragraphs)
  pieces = chunk_paragraphs(text, 500)
  assert "\n\n".join(pieces) == text
  assert all(len(p) >= 500 for p in pieces[:-1]) and all(len(p) < 500 + 200 for p in pieces)


def test_chunk_paragraphs_cuts_long_verse_between_lines():
  verse = "\r\n".join(f"Line {i} of a long book of verse without blank lines" for i in range(400))
  pieces = chunk_paragraphs(verse, 2000)
  assert len(pieces) > 5 and max(map(len, pieces)) < 2100
  assert "\n".join(pieces) == verse.replace("\r\n", "\n")


def test_split_before_headings_merges_short_sections():
  text = "intro\n\\section{A}\nshort\n\\section{B}\n" + "long " * 100 + "\n\\section{C}\nend"
  pieces = split_before(text, re.compile(r"^\\section", re.M), min_chars=50)
  assert "".join(pieces) == text
  assert pieces[0].startswith("intro") and "\\section{B}" in pieces[0]  # A and B merged into the intro.
  assert pieces[-1] == "\\section{C}\nend"


def test_group_joins_until_target():
  assert list(group(["aa", "bb", "cc", "d"], 5, "+")) == ["aa+bb", "cc+d"]


def test_html_to_text_keeps_visible_text_and_preformatted_code():
  page = """<html><head><title>T</title><style>p {color: red}</style></head><body>
  <nav><a href="/">Home</a></nav>
  <h1>Optimization<a class="headerlink" href="#x">\u00b6</a></h1>
  <p>The <code>minimize</code>   function &amp; friends.</p>
  <dl><dt><strong>x0</strong><span class="classifier">ndarray</span></dt><dd><p>Initial guess.</p></dd></dl>
  <pre>def f(x):
    return x**2</pre><script>alert(1)</script><table><tr><td>a</td><td>b</td></tr></table></body></html>"""
  assert html_to_text(page) == (
      "Optimization\n\nThe minimize function & friends.\n\nx0 : ndarray\n\nInitial guess.\n\n"
      "def f(x):\n    return x**2\n\na b")


def test_wikitext_to_text_removes_markup_and_keeps_prose():
  markup = """{{Infobox person|name={{nested|x}}|image=a.jpg}}
'''Ada Lovelace''' was an [[England|English]] [[mathematician]].<ref name="a">A source.</ref><ref name="b"/>
[[File:Ada.jpg|thumb|A portrait with a [[link]] inside]]
== Early life ==
She was born in [[London]] ({{birth date|1815|12|10}}) and studied with [http://example.com Mary Somerville].
{| class="wikitable"
| cell || cell
|}
* First item
<!-- a hidden comment -->
[[Category:Mathematicians]]
== References ==
{{reflist}}"""
  assert wikitext_to_text(markup) == (
      "Ada Lovelace was an English mathematician.\n\nEarly life\n"
      "She was born in London and studied with Mary Somerville.\n\n- First item")


def test_email_to_text_keeps_subject_and_body_only():
  raw = (
      "From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: =?utf-8?q?Caf=C3=A9_plans?=\n"
      "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=XX\n\n--XX\n"
      "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
      "Meet at the caf=C3=A9, or write to carol@example.net (mailto:dave@example.com).\n--XX\n"
      "Content-Type: text/html\n\n<p>HTML copy</p>\n--XX--\n")
  assert email_to_text(raw) == "Subject: Caf\u00e9 plans\n\nMeet at the caf\u00e9, or write to."


def test_email_html_only_messages_become_text():
  raw = "Subject: Offer\nContent-Type: text/html\n\n<html><body><p>Buy <b>now</b></p><p>Today</p></body></html>"
  assert email_to_text(raw) == "Subject: Offer\n\nBuy now\n\nToday"
