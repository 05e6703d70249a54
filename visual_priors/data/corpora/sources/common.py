"""Helpers shared by the built-in source readers: deterministic spread order and file reading."""

from __future__ import annotations

import hashlib
import pathlib
import tarfile
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def spread(items: Iterable[T], key: Callable[[T], str]) -> list[T]:
  """`items` in a fixed pseudo-random order (by the SHA-1 of `key(item)`).

  Reading files in this order instead of alphabetically makes a size-bounded corpus sample the whole
  package (all decades of speeches, all stdlib packages), and the order never depends on the machine.
  """
  return sorted(items, key=lambda item: hashlib.sha1(key(item).encode("utf-8")).hexdigest())


def read_text(path: pathlib.Path, encoding: str = "utf-8") -> str:
  """The file's text; undecodable bytes become U+FFFD (these packages are near-clean UTF-8/Latin-1)."""
  return path.read_bytes().decode(encoding, errors="replace")


def relative(path: pathlib.Path, root: pathlib.Path) -> str:
  return path.relative_to(root).as_posix()


def tar_member_text(archive: pathlib.Path, member: str, encoding: str) -> str:
  """The text of one file inside a .tar.gz (an sdist), read without unpacking the rest."""
  with tarfile.open(archive) as tar:
    handle = tar.extractfile(member)
    if handle is None:
      raise FileNotFoundError(f"{member!r} in {archive} is not a regular file.")
    return handle.read().decode(encoding, errors="replace")
