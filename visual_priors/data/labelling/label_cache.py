"""A persistent, thread-safe sqlite cache of segment label masks keyed by sha256(prompt version, model, text)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterable


def segment_key(prompt_version: str, model: str, text: str) -> str:
  """sha256 over the prompt version, the model and the segment text (NUL-separated)."""
  return hashlib.sha256("\0".join((prompt_version, model, text)).encode("utf-8")).hexdigest()


def shared_connection(path: pathlib.Path, create_table: str) -> tuple[sqlite3.Connection, threading.Lock]:
  """A sqlite connection to `path` (WAL, so several processes can share the file; a busy timeout for their
  locks) that threads share under the returned lock, with `create_table` run once."""
  path.parent.mkdir(parents=True, exist_ok=True)
  lock = threading.Lock()
  db = sqlite3.connect(path, timeout=60.0, check_same_thread=False, isolation_level=None)
  with lock:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(create_table)
  return db, lock


class LabelCache:
  """Label masks by segment key in one sqlite file; one connection shared by threads under a lock.

  WAL journaling lets several processes share the file; sqlite's busy timeout covers their locks.
  """

  def __init__(self, path: str | os.PathLike[str]):
    self.path = pathlib.Path(path).expanduser()
    self._db, self._lock = shared_connection(self.path, (
        "CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, mask INTEGER NOT NULL, "
        "model TEXT NOT NULL, prompt_version TEXT NOT NULL, created REAL NOT NULL)"))

  def get_many(self, keys: Iterable[str]) -> dict[str, int]:
    """The cached masks of those `keys` that are present."""
    keys = list(dict.fromkeys(keys))
    found: dict[str, int] = {}
    with self._lock:
      for start in range(0, len(keys), 500):  # Stays under sqlite's bound-parameter limit.
        chunk = keys[start:start + 500]
        rows = self._db.execute(f"SELECT key, mask FROM labels WHERE key IN ({','.join('?' * len(chunk))})",
                                chunk)
        found.update(rows.fetchall())
    return found

  def put(self, key: str, mask: int, model: str, prompt_version: str) -> None:
    with self._lock:
      self._db.execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?)",
                       (key, mask, model, prompt_version, time.time()))

  def __len__(self) -> int:
    with self._lock:
      return self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]

  def close(self) -> None:
    with self._lock:
      self._db.close()
