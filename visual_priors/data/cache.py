"""Where downloaded packages and built data live, and atomic writes into it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

CACHE_ENV = "VISUAL_PRIORS_CACHE"


def cache_root(override: str | os.PathLike[str] | None = None) -> pathlib.Path:
  """The data cache: `override`, else $VISUAL_PRIORS_CACHE, else ~/.cache/visual_priors."""
  if override:
    root = pathlib.Path(override)
  elif os.environ.get(CACHE_ENV):
    root = pathlib.Path(os.environ[CACHE_ENV])
  else:
    root = pathlib.Path.home() / ".cache" / "visual_priors"
  return root.expanduser().resolve()


@contextlib.contextmanager
def atomic_directory(final: pathlib.Path) -> Iterator[pathlib.Path]:
  """Yields an empty temporary sibling of `final`; on success it replaces `final` in one rename.

  On failure the temporary directory is removed and `final` is left exactly as it was.
  """
  final = pathlib.Path(final)
  final.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
  tmp.chmod(0o755)  # mkdtemp makes it private; the result is shared data
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  old = final.with_name(f".{final.name}.old-{os.getpid()}")
  if final.exists():
    final.rename(old)
  tmp.rename(final)
  shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: pathlib.Path, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is shared data
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def write_json_atomic(path: pathlib.Path, obj: Any) -> None:
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: pathlib.Path) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def sha256_file(path: pathlib.Path, chunk: int = 1 << 20) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      digest.update(block)
  return digest.hexdigest()


def sha256_json(obj: Any) -> str:
  """A stable hash of a JSON-serialisable object (keys sorted)."""
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
