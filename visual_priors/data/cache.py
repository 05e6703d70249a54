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


# What a reader's error tells a user to do about a damaged file; readers of user-supplied data pass their own.
REBUILD = "delete it and rerun the command that wrote it"


def _damaged(where: str, problem: str, fix: str) -> ValueError:
  return ValueError(f"{where}: {problem}; the file is damaged or truncated: {fix}.")


def _what(error: json.JSONDecodeError) -> str:
  return error.msg.removesuffix(" starting at")  # "Unterminated string starting at": the place is given apart


def read_json(path: str | os.PathLike[str], fix: str = REBUILD) -> Any:
  """The JSON value in `path`; a ValueError naming the file, line and column when it is not valid JSON."""
  path = pathlib.Path(path)
  try:
    text = path.read_text(encoding="utf-8")
  except UnicodeDecodeError as error:
    raise _damaged(f"{path} byte {error.start}", "not UTF-8 text", fix) from None
  if not text.strip():
    raise _damaged(str(path), "empty", fix)
  try:
    return json.loads(text)
  except json.JSONDecodeError as error:
    where = f"{path} line {error.lineno} column {error.colno}"
    raise _damaged(where, f"invalid JSON ({_what(error)})", fix) from None


def parse_json(text: str | bytes, where: str, fix: str = REBUILD) -> Any:
  """The JSON value of one line or record, `where` naming it ("FILE line N"), or a ValueError saying so."""
  try:
    return json.loads(text.rstrip())  # a line's newline would put the end of a truncated line on the next one
  except json.JSONDecodeError as error:
    column = f"column {error.colno}" if error.lineno == 1 else f"line {error.lineno} column {error.colno}"
    raise _damaged(where, f"invalid JSON ({_what(error)} at {column})", fix) from None


def iter_jsonl(path: str | os.PathLike[str], fix: str = REBUILD) -> Iterator[Any]:
  """The JSON value of each non-blank line of a JSONL file, read lazily; errors name the file and line."""
  path = pathlib.Path(path)
  number = 0
  with open(path, encoding="utf-8") as f:
    try:
      for number, line in enumerate(f, 1):
        if line.strip():
          yield parse_json(line, f"{path} line {number}", fix)
    except UnicodeDecodeError:
      raise _damaged(f"{path} near line {number + 1}", "not UTF-8 text", fix) from None


def read_jsonl(path: str | os.PathLike[str], fix: str = REBUILD) -> list[Any]:
  """Every line's JSON value of a JSONL file (blank lines skipped); errors name the file and line."""
  return list(iter_jsonl(path, fix))


def sha256_file(path: pathlib.Path, chunk: int = 1 << 20) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      digest.update(block)
  return digest.hexdigest()


def sha256_json(obj: Any) -> str:
  """A stable hash of a JSON-serialisable object (keys sorted)."""
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
