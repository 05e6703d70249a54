"""Absolute paths that manifests recorded, found again after the tree holding them was moved or copied.

Manifests record absolute paths. A runs root or data cache copied elsewhere (to another machine, or from
a bucket to disk) keeps its layout, so a reader that knows where the recording file now is, or where the
file would sit beside it, can find what a stale path named. A moved or copied tree reads only its own files:
a path inside the tree is always read at its place in the current tree (missing there, the error that follows
names the current tree's file); the recorded place is used only when the recording tree is gone (moved, not
copied), so damage in a copy is never hidden by the original and a copy survives the original's deletion.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

RUNS_LAYOUT = "stages"  # `<runs root>/stages/<stage>/<key>/...`: the tree a stage directory belongs to


def relocated(recorded: str | os.PathLike[str], *moved: pathlib.Path, own_first: bool = False) -> pathlib.Path:
  """`recorded` if it exists, else the first of `moved` (where it would now be) that exists, else `recorded`;
  with `own_first` (the `moved` candidates lie in the reader's own tree, e.g. a cache's `latest` pointer and
  its `segments/`), the first existing candidate wins over `recorded`, so a copied tree reads its own file."""
  path = pathlib.Path(recorded)
  candidate = next((candidate for candidate in moved if candidate.exists()), None)
  if candidate is not None and (own_first or not path.exists()):
    return candidate
  return path


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
  if RUNS_LAYOUT in old[len(old) - common:]:  # a runs root ends above its innermost `stages`: /a/runs -> /b/runs
    common = old[::-1].index(RUNS_LAYOUT) + 1
  return pathlib.Path(*old[:len(old) - common]), pathlib.Path(*new[:len(new) - common])


def rebased(tree: Any, recorded_dir: str | os.PathLike[str], actual_dir: str | os.PathLike[str]) -> Any:
  """A JSON-like `tree` whose absolute path strings under the moved or copied tree's old root point at their
  counterparts under its new root: always where the counterpart exists or the recording tree still does (a
  copy never reads the original); the recorded path only where the counterpart is missing, the recording
  directory is gone (the tree was moved) and the recorded path still exists."""
  roots = moved_roots(recorded_dir, actual_dir)
  if roots is None:
    return tree
  old_root, new_root = roots
  copied = pathlib.Path(recorded_dir).exists()

  def visit(value: Any) -> Any:
    if isinstance(value, dict):
      return {key: visit(item) for key, item in value.items()}
    if isinstance(value, list):
      return [visit(item) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
      path = pathlib.Path(value)
      if path.is_relative_to(old_root):
        counterpart = new_root / path.relative_to(old_root)
        if counterpart.exists() or copied or not path.exists():
          return str(counterpart)
    return value

  return visit(tree)
