"""The repository documents itself: no path reference leaves the checkout, and every markdown link resolves."""

from __future__ import annotations

import ast
import io
import json
import pathlib
import posixpath
import re
import subprocess
import tokenize
import urllib.parse

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SUFFIXES = (".md", ".py", ".ipynb", ".sh", ".toml")
# Never part of the project's own text (used when git cannot list the files).
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", "build", "dist", "runs", ".data",
             "node_modules"}

# A relative path: segments of path characters joined by "/", not glued to a preceding path, word or URL
# character (so "https://host/a/b" and the middle of "a/b/c" never start a match).
PATH_TOKEN = re.compile(r"(?<![\w.~/:@+-])((?:[\w.~@+-]+/)+[\w.~@+-]*)")
# A markdown file named in prose or code comments: "README.md", "docs/paper.md".
MD_NAME = re.compile(r"(?<![\w.~/:@+-])((?:[\w.~@+-]+/)*[\w.~@+-]*\w\.md)\b(?!/)")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HTML_LINK = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _listed_files(root: pathlib.Path) -> list[str] | None:
  """Tracked and untracked-but-not-ignored files, as git lists them; None when git cannot."""
  try:
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True, timeout=120).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return [name for name in out.decode("utf-8", "surrogateescape").split("\0") if name]


def _walked_files(root: pathlib.Path) -> list[str]:
  names = []
  for path in root.rglob("*"):
    parts = path.relative_to(root).parts
    if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in parts[:-1]):
      continue
    if path.is_file():
      names.append(path.relative_to(root).as_posix())
  return names


def _is_shell_script(path: pathlib.Path) -> bool:
  try:
    with path.open("rb") as f:
      first = f.readline(200)
  except OSError:
    return False
  return first.startswith(b"#!") and (b"sh" in first.split(b"/")[-1])


def text_files(root: pathlib.Path = REPO) -> list[pathlib.Path]:
  """The project's text files that carry documentation: markdown, Python, notebooks, shell, TOML."""
  names = _listed_files(root)
  if names is None:
    names = _walked_files(root)
  files = []
  for name in sorted(set(names)):
    path = root / name
    if not path.is_file() or any(part in SKIP_DIRS for part in pathlib.PurePosixPath(name).parts[:-1]):
      continue
    if name.endswith(SUFFIXES) or (pathlib.PurePosixPath(name).suffix == "" and _is_shell_script(path)):
      files.append(path)
  return files


def _rel(path: pathlib.Path, root: pathlib.Path) -> str:
  return path.relative_to(root).as_posix()


def _resolve(root: pathlib.Path, base_dir: str, target: str) -> str:
  """`target` relative to the repository-relative folder `base_dir`, normalised (leading ".." segments may remain)."""
  return posixpath.normpath(posixpath.join(base_dir, target))


def _escapes(relative: str) -> bool:
  return relative == ".." or relative.startswith("../")


# ------------------------------------------------------------------------------------------ documentation text


def _python_doc_text(source: str) -> list[tuple[int, str]]:
  """Comments and docstrings of a Python file, with their first line numbers."""
  pieces = []
  try:
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
      if token.type == tokenize.COMMENT:
        pieces.append((token.start[0], token.string))
  except (tokenize.TokenError, SyntaxError):
    return [(1, source)]
  try:
    tree = ast.parse(source)
  except SyntaxError:
    return [(1, source)]
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
      first = node.body[0]
      if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
          and isinstance(first.value.value, str)):
        pieces.append((first.lineno, first.value.value))
  return pieces


def _hash_comments(source: str) -> list[tuple[int, str]]:
  """What follows "#" on each line (shell and TOML comments; a "#" inside a string is read too)."""
  return [(n, line.split("#", 1)[1]) for n, line in enumerate(source.splitlines(), 1) if "#" in line]


def _notebook_markdown(source: str) -> list[tuple[int, str]]:
  try:
    cells = json.loads(source).get("cells", [])
  except (ValueError, AttributeError):
    return [(1, source)]
  out = []
  for index, cell in enumerate(cells):
    if cell.get("cell_type") == "markdown":
      text = cell.get("source", "")
      out.append((index + 1, "".join(text) if isinstance(text, list) else str(text)))
  return out


def doc_text(path: pathlib.Path, source: str) -> list[tuple[int, str]]:
  """The prose of a file: all of a markdown file, comments and docstrings of code, notebook markdown cells."""
  suffix = path.suffix
  if suffix == ".md":
    return [(1, source)]
  if suffix == ".py":
    return _python_doc_text(source)
  if suffix == ".ipynb":
    return _notebook_markdown(source)
  return _hash_comments(source)


def _line_of(text: str, offset: int, first_line: int) -> int:
  return first_line + text.count("\n", 0, offset)


# ------------------------------------------------------------------------------------------------- the checks


def outside_references(root: pathlib.Path = REPO) -> list[str]:
  """References that leave the repository, or that climb with ".." in prose to something that is not there."""
  problems = []
  for path in text_files(root):
    rel = _rel(path, root)
    base = posixpath.dirname(rel)
    source = path.read_text(encoding="utf-8", errors="replace")
    # Anywhere in the file, code included: a relative path that resolves outside the checkout.
    for match in PATH_TOKEN.finditer(source):
      token = match.group(1)
      if ".." in token.split("/") and _escapes(_resolve(root, base, token)):
        problems.append(f"{rel}:{_line_of(source, match.start(), 1)}: {token!r} leads outside the repository")
    # In prose: a ".." path must name something that exists, and a named markdown file must exist.
    for first_line, text in doc_text(path, source):
      for match in PATH_TOKEN.finditer(text):
        token = match.group(1)
        if ".." not in token.split("/"):
          continue
        target = _resolve(root, base, token)
        if not _escapes(target) and not (root / target).exists():
          problems.append(f"{rel}:{_line_of(text, match.start(), first_line)}: {token!r} names nothing "
                          f"in the repository ({target})")
      for match in MD_NAME.finditer(text):
        name = match.group(1)
        if not _markdown_name_exists(root, base, name):
          problems.append(f"{rel}:{_line_of(text, match.start(), first_line)}: {name!r} is not a file "
                          f"of the repository")
  return problems


def _markdown_files(root: pathlib.Path) -> list[pathlib.Path]:
  return [path for path in text_files(root) if path.suffix == ".md"]


def _markdown_name_exists(root: pathlib.Path, base: str, name: str) -> bool:
  """A mentioned markdown file: relative to the mentioning file, to the root, or (a bare name) anywhere."""
  for candidate in (_resolve(root, base, name), posixpath.normpath(name)):
    if not _escapes(candidate) and (root / candidate).is_file():
      return True
  if "/" not in name:
    return any(path.name == name for path in _markdown_files(root))
  return False


def _prose_lines(source: str) -> str:
  """The markdown with fenced code blocks blanked and inline code spans removed (line numbers kept)."""
  lines, fenced, fence = [], False, ""
  for line in source.split("\n"):
    match = FENCE.match(line)
    if match and (not fenced or match.group(1) == fence):
      fenced, fence = not fenced, match.group(1)
      lines.append("")
    elif fenced:
      lines.append("")
    else:
      lines.append(CODE_SPAN.sub("``", line))
  return "\n".join(lines)


def slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
  text = re.sub(r"[^\w\- ]", "", text.strip().lower())
  return text.replace(" ", "-")


def anchors(source: str) -> set[str]:
  """The anchors a markdown file defines: its headings (duplicates numbered as GitHub does), ids and names."""
  seen: dict[str, int] = {}
  found = set(HTML_ANCHOR.findall(source))
  fenced, fence = False, ""
  for line in source.split("\n"):
    match = FENCE.match(line)
    if match and (not fenced or match.group(1) == fence):
      fenced, fence = not fenced, match.group(1)
      continue
    heading = None if fenced else HEADING.match(line)
    if heading:
      base = slug(heading.group(1))
      count = seen.get(base, 0)
      found.add(base if count == 0 else f"{base}-{count}")
      seen[base] = count + 1
  return found


def broken_links(root: pathlib.Path = REPO) -> list[str]:
  """Relative links of the markdown files that do not resolve to a file (and anchor) of the repository."""
  problems = []
  for path in _markdown_files(root):
    rel = _rel(path, root)
    base = posixpath.dirname(rel)
    source = path.read_text(encoding="utf-8", errors="replace")
    prose = _prose_lines(source)
    found = [(m.start(), m.group(1)) for pattern in (INLINE_LINK, REFERENCE_LINK, HTML_LINK)
             for m in pattern.finditer(prose)]
    for offset, target in sorted(found):
      where = f"{rel}:{_line_of(prose, offset, 1)}: link {target!r}"
      if SCHEME.match(target) or target.startswith("//"):
        continue
      address, _, fragment = target.partition("#")
      address = urllib.parse.unquote(address.split("?", 1)[0])
      if not address:
        resolved = rel
      elif address.startswith("/"):
        resolved = posixpath.normpath(address.lstrip("/"))
      else:
        resolved = _resolve(root, base, address)
      if _escapes(resolved):
        problems.append(f"{where} leads outside the repository")
        continue
      if not (root / resolved).exists():
        problems.append(f"{where}: {resolved} does not exist")
        continue
      if fragment and resolved.endswith(".md") and (root / resolved).is_file():
        defined = anchors((root / resolved).read_text(encoding="utf-8", errors="replace"))
        if urllib.parse.unquote(fragment).lower() not in defined:
          problems.append(f"{where}: {resolved} has no heading for #{fragment}")
  return problems


# ------------------------------------------------------------------------------------------------------ tests


def test_the_checked_files_include_the_documentation():
  names = {_rel(path, REPO) for path in text_files()}
  assert {"README.md", "docs/paper.md", "docs/design.md", "pyproject.toml", "tests/test_docs.py"} <= names
  assert not any(name.startswith((".venv/", ".git/")) for name in names)


def test_no_reference_leaves_the_repository():
  problems = outside_references()
  assert not problems, "References outside the repository:\n" + "\n".join(problems)


def test_markdown_links_resolve():
  problems = broken_links()
  assert not problems, "Broken markdown links:\n" + "\n".join(problems)


UP = ".." + "/"  # built, so this file's own text holds no such path


@pytest.fixture
def fake_repo(tmp_path):
  root = tmp_path / "repo"
  (root / "docs").mkdir(parents=True)
  (root / "pkg").mkdir()
  (root / "docs" / "paper.md").write_text("# Paper\n\n## 4. Adaptation: text LM to MLLM\n\ntext\n")
  (root / "pkg" / "__init__.py").write_text('"""A package."""\n')
  return root


def test_checks_catch_links_and_paths_outside(fake_repo):
  (fake_repo / "README.md").write_text(
      f"See [notes]({UP}notes/FACTS.md) and [paper](docs/paper.md#4-adaptation-text-lm-to-mllm).\n"
      f"[missing](docs/none.md), [bad anchor](docs/paper.md#nope), [web](https://example.org/{UP}x).\n"
      "```\n[in code]({UP}{UP}x)\n```\n")
  (fake_repo / "pkg" / "mod.py").write_text(
      f'"""Numbers from {UP}notes/FACTS.md section 2 and PRIVATE_NOTES.md."""\n\nX = "{UP}x"  # see docs/paper.md\n')
  links = broken_links(fake_repo)
  assert any("notes/FACTS.md" in p and "outside" in p for p in links)
  assert any("docs/none.md" in p for p in links)
  assert any("#nope" in p for p in links)
  assert not any("example.org" in p or "in code" in p or "#4-adaptation" in p for p in links)
  outside = outside_references(fake_repo)
  assert any(p.startswith("README.md:1:") and "outside" in p for p in outside)
  assert any(p.startswith("pkg/mod.py:1:") and "notes/FACTS.md" in p and "names nothing" in p for p in outside)
  assert any("PRIVATE_NOTES.md" in p for p in outside)
  assert not any("pkg/mod.py:3:" in p for p in outside)  # X climbs from pkg/ to the root only; docs/paper.md exists


def test_prose_paths_must_exist_but_code_strings_may_not(fake_repo):
  (fake_repo / "pkg" / "sub").mkdir()
  (fake_repo / "pkg" / "sub" / "mod.py").write_text(
      f'"""See {UP}{UP}docs/paper.md and {UP}shared/X.md."""\n\nBAD = "{UP}evil"\n')
  problems = outside_references(fake_repo)
  assert any("shared/X.md" in p and "names nothing" in p for p in problems)
  assert not any("docs/paper.md" in p for p in problems)
  assert not any("evil" in p for p in problems)


def test_slug_follows_github():
  assert slug("4. Adaptation: text LM to multimodal LM") == "4-adaptation-text-lm-to-multimodal-lm"
  assert slug("5.1 VQA benchmarks") == "51-vqa-benchmarks"
  assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}
