"""`code`: the CPython standard library of the running interpreter and the Go 1.19 standard library."""

from __future__ import annotations

import platform
import re
import sysconfig
from collections.abc import Iterator

from visual_priors.data.corpora.fetch import Fetched, Package
from visual_priors.data.corpora.model import Document, SourceBuilder, SubSource
from visual_priors.data.corpora.sources.common import relative, spread

_NOT_STDLIB = frozenset({"site-packages", "dist-packages", "__pycache__"})
GO_ROOT = "usr/share/go-1.19/src"
# Go's marker of machine-generated files (syscall tables, tables of Unicode data, ...).
_GO_GENERATED = re.compile(r"^// Code generated .* DO NOT EDIT\.$", re.M)


def _python_files(fetched: Fetched) -> Iterator[Document]:
  root = fetched.path
  files = [p for p in root.rglob("*.py") if p.is_file() and not _NOT_STDLIB & set(p.relative_to(root).parts)]
  for path in spread(files, key=lambda p: relative(p, root)):
    try:
      text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:  # CPython's own tests keep a few deliberately mis-encoded modules.
      continue
    yield Document(text, f"cpython:Lib/{relative(path, root)}")


def _go_files(fetched: Fetched) -> Iterator[Document]:
  root = fetched.path / GO_ROOT
  files = [p for p in root.rglob("*.go")
           if p.is_file() and not p.name.endswith("_test.go") and "testdata" not in p.relative_to(root).parts]
  for path in spread(files, key=lambda p: relative(p, root)):
    text = path.read_bytes().decode("utf-8", errors="replace")
    if not _GO_GENERATED.search(text):
      yield Document(text, f"golang-1.19-src:{GO_ROOT}/{relative(path, root)}")


BUILDER = SourceBuilder(
    source="code",
    version=1,
    description=("Source code: the standard library of the running CPython (tests included) and the Go "
                 "1.19 standard library (tests, testdata and generated files excluded); one document per "
                 "file."),
    sub_sources=(
        SubSource("cpython-stdlib",
                  Package("local", "cpython", platform.python_version(), sysconfig.get_paths()["stdlib"]),
                  "PSF-2.0", _python_files, prose=False),
        SubSource("go-stdlib", Package("deb", "golang-1.19-src"), "BSD-3-Clause", _go_files, prose=False),
    ),
)
