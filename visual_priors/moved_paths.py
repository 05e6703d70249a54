"""Absolute paths that manifests recorded, found again after the tree holding them was moved or copied.

Manifests record absolute paths. A runs root or data cache copied elsewhere (to another machine, or from
a bucket to disk) keeps its layout, so a reader that knows where the recording file now is, or where the
file would sit beside it, can find what a stale path named. A recorded path that still exists is always
kept; one that exists nowhere is returned as recorded, so the error that follows names it.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any


def relocated(recorded: str | os.PathLike[str], *moved: pathlib.Path) -> pathlib.Path:
  """`recorded` if it exists, else the first of `moved` (where it would now be) that exists, else `recorded`."""
  path = pathlib.Path(recorded)
  if path.exists():
    return path
  return next((candidate for candidate in moved if candidate.exists()), path)


def moved_roots(recorded_dir: str | os.PathLike[str],
                actual_dir: str | os.PathLike[str]) -> tuple[pathlib.Path, pathlib.Path] | None:
  """(old root, new root) of a directory recorded at `recorded_dir` and now at `actual_dir`: both less
  their common trailing parts (/a/runs/stages/x -> /b/stages/x gives /a/runs, /b); None if it did not move."""
  old, new = pathlib.Path(recorded_dir).parts, pathlib.Path(actual_dir).parts
  if old == new:
    return None
  common = 0
  while common < min(len(old), len(new)) - 1 and old[-1 - common] == new[-1 - common]:
    common += 1
  return pathlib.Path(*old[:len(old) - common]), pathlib.Path(*new[:len(new) - common])


def rebased(tree: Any, recorded_dir: str | os.PathLike[str], actual_dir: str | os.PathLike[str]) -> Any:
  """A JSON-like `tree` whose absolute path strings under the moved tree's old root that no longer exist
  are pointed at their counterparts under its new root, where those exist."""
  roots = moved_roots(recorded_dir, actual_dir)
  if roots is None:
    return tree
  old_root, new_root = roots

  def visit(value: Any) -> Any:
    if isinstance(value, dict):
      return {key: visit(item) for key, item in value.items()}
    if isinstance(value, list):
      return [visit(item) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
      path = pathlib.Path(value)
      if path.is_relative_to(old_root) and not path.exists():
        counterpart = new_root / path.relative_to(old_root)
        if counterpart.exists():
          return str(counterpart)
    return value

  return visit(tree)
