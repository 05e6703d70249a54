"""Markup to plain text: HTML pages, MediaWiki wikitext and raw e-mail messages."""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.policy
import html
import html.parser
import itertools
import re

_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "caption", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "ol",
    "p", "pre", "section", "table", "tbody", "thead", "tr", "ul", "center", "form",
})
_LINE_TAGS = frozenset({"br"})
_CELL_TAGS = frozenset({"td", "th"})
_SKIPPED_TAGS = frozenset({"script", "style", "head", "nav", "noscript", "template", "svg"})


class _HtmlText(html.parser.HTMLParser):
  """Collects visible text: block elements become paragraphs, <pre> keeps its layout."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.segments: list[tuple[str, bool]] = []  # (text, verbatim)
    self._skip_depth = 0
    self._pre_depth = 0

  def handle_starttag(self, tag, attrs):
    if tag == "span" and "classifier" in (dict(attrs).get("class") or ""):
      self.segments.append((" : ", False))  # Sphinx draws "name : type" with CSS; keep the colon.
    if tag in _SKIPPED_TAGS:
      self._skip_depth += 1
    elif tag == "pre":
      self._pre_depth += 1
    self._boundary(tag)

  def handle_endtag(self, tag):
    if tag in _SKIPPED_TAGS and self._skip_depth:
      self._skip_depth -= 1
    elif tag == "pre" and self._pre_depth:
      self._pre_depth -= 1
    self._boundary(tag)

  def handle_startendtag(self, tag, attrs):
    self._boundary(tag)

  def handle_data(self, data):
    if self._skip_depth:
      return
    if self._pre_depth:
      self.segments.append((data, True))
    else:
      self.segments.append((re.sub(r"\s+", " ", data), False))

  def _boundary(self, tag: str) -> None:
    if tag in _BLOCK_TAGS:
      self.segments.append(("\n\n", False))
    elif tag in _LINE_TAGS:
      self.segments.append(("\n", False))
    elif tag in _CELL_TAGS:
      self.segments.append((" ", False))


def html_to_text(markup: str) -> str:
  """Visible text of an HTML page or fragment; scripts, styles, <nav> and the <head> are dropped."""
  parser = _HtmlText()
  parser.feed(markup)
  parser.close()
  pieces = []
  for verbatim, run in itertools.groupby(parser.segments, key=lambda segment: segment[1]):
    text = "".join(piece for piece, _ in run)
    pieces.append(text if verbatim else re.sub(r" *\n *", "\n", re.sub(r"  +", " ", text)))
  text = "".join(pieces).replace("\u00b6", "")  # Sphinx permalink pilcrows.
  return re.sub(r"[ \t]*\n[ \t]*\n\s*", "\n\n", text).strip()


def _drop_balanced(text: str, start: re.Pattern[str], opening: str, closing: str) -> str:
  """Removes each span that starts at a match of `start` and ends where its brackets balance.

  An unbalanced span (a stray opening bracket) is kept as it is rather than eating the rest.
  """
  token = re.compile(f"{re.escape(opening)}|{re.escape(closing)}")
  out, pos = [], 0
  while match := start.search(text, pos):
    out.append(text[pos:match.start()])
    depth, end = 0, None
    for bracket in token.finditer(text, match.start()):
      depth += 1 if bracket.group() == opening else -1
      if depth == 0:
        end = bracket.end()
        break
    if end is None:
      out.append(text[match.start():])
      return "".join(out)
    pos = end
  out.append(text[pos:])
  return "".join(out)


_TEMPLATE = re.compile(r"\{\{")
_TABLE = re.compile(r"\{\|")
_NON_TEXT_LINK = re.compile(r"\[\[(?:[Ff]ile|[Ii]mage|[Mm]edia|[Cc]ategory|[a-z]{2,3}(?:-[a-z]+)?):")
_NON_TEXT_ELEMENTS = re.compile(
    r"<(gallery|math|timeline|imagemap|score|syntaxhighlight|source|references)\b[^>]*>.*?</\1\s*>",
    re.S | re.I)


_APPENDIX = re.compile(
    r"^=+ *(?:See also|Notes|References|Further reading|External links|Bibliography|Sources|Citations"
    r"|Footnotes) *=+ *$", re.M | re.I)


def wikitext_to_text(markup: str) -> str:
  """Article text of MediaWiki markup: templates, references, tables, files, categories and the
  appendix sections (See also, References, ...) removed, links replaced by their label, headings and
  list items kept as lines."""
  text = _APPENDIX.split(markup, maxsplit=1)[0]
  text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
  text = re.sub(r"<ref\b[^>]*/>", "", text, flags=re.I)
  text = re.sub(r"<ref\b[^>]*>.*?</ref\s*>", "", text, flags=re.S | re.I)
  text = _NON_TEXT_ELEMENTS.sub("", text)
  text = _drop_balanced(text, _TEMPLATE, "{{", "}}")
  text = _drop_balanced(text, _TABLE, "{|", "|}")
  text = _drop_balanced(text, _NON_TEXT_LINK, "[[", "]]")
  text = re.sub(r"\[\[(?:[^\[\]|]*\|)?([^\[\]|]*)\]\]", r"\1", text)
  text = re.sub(r"\[(?:https?|ftp)://[^\s\]]+ *([^\]]*)\]", r"\1", text)
  text = re.sub(r"'{2,}", "", text)
  text = re.sub(r"^(=+) *(.*?) *\1 *$", r"\2", text, flags=re.M)
  text = re.sub(r"^[*#]+ *", "- ", text, flags=re.M)
  text = re.sub(r"^[:;]+ *", "", text, flags=re.M)
  text = re.sub(r"__[A-Z]+__", "", text)
  text = re.sub(r"<[^<>]+>", "", text)
  text = html.unescape(text)
  text = re.sub(r"\( *[,;]? *\)", "", text)  # Parentheses emptied by removed templates.
  text = re.sub(r"[ \t]{2,}", " ", text)
  text = re.sub(r"[ \t]+([,.;:])", r"\1", text)
  text = re.sub(r"^- *$", "", text, flags=re.M)  # List items whose content was all markup.
  return text.strip()


_ADDRESS = re.compile(r"<?(?:mailto:)?[\w.+%-]+@[\w-]+(?:\.[\w-]+)+>?")


def _payload_text(part: email.message.Message) -> str:
  payload = part.get_payload(decode=True) or b""
  charset = part.get_content_charset() or "latin-1"
  try:
    return payload.decode(charset, errors="replace")
  except LookupError:  # A charset name Python does not know.
    return payload.decode("latin-1")


def _header_text(value: str | None) -> str:
  if not value:
    return ""
  try:
    return str(email.header.make_header(email.header.decode_header(value)))
  except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError):
    return value


def email_to_text(raw: str) -> str:
  """Subject and body of a raw e-mail message: other headers dropped, HTML parts converted to text
  (only when the message has no plain-text part), every e-mail address removed."""
  message = email.message_from_string(raw, policy=email.policy.compat32)
  plain, rich = [], []
  for part in message.walk():
    if part.is_multipart():
      continue
    if part.get_content_type() == "text/plain":
      plain.append(_payload_text(part))
    elif part.get_content_type() == "text/html":
      rich.append(html_to_text(_payload_text(part)))
  body = "\n\n".join(plain or rich)
  subject = " ".join(_header_text(message.get("Subject")).split())
  text = _ADDRESS.sub("", f"Subject: {subject}\n\n{body}" if subject else body)
  text = re.sub(r"\( *\)|\[ *\]|< *>", "", text)  # Brackets that held only an address.
  text = re.sub(r"(?<=\S) {2,}", " ", text)
  return re.sub(r"(?<=\S) +(?=[,.;:](?:\s|$))", "", text).strip()
