"""A one-line progress bar for terminals; silent when the stream is not a TTY or under CI."""

from __future__ import annotations

import os
import sys
from typing import TextIO


def stream_is_interactive(stream: TextIO) -> bool:
  return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")


class ProgressBar:
  """Rewrites one `\\r` line: `[=====>     ] 512/1000 loss 3.21 12.3k tok/s`."""

  def __init__(self, total_steps: int, stream: TextIO | None = None, width: int = 30,
               enabled: bool | None = None):
    self.total_steps = total_steps
    self.stream = stream or sys.stderr
    self.width = width
    self.enabled = stream_is_interactive(self.stream) if enabled is None else enabled
    self._shown = False

  def update(self, step: int, message: str = "") -> None:
    if not self.enabled:
      return
    filled = self.width * min(step, self.total_steps) // max(self.total_steps, 1)
    bar = "=" * filled + (">" if filled < self.width else "") + " " * max(self.width - filled - 1, 0)
    self.stream.write(f"\r[{bar}] {step}/{self.total_steps} {message}\033[K")
    self.stream.flush()
    self._shown = True

  def close(self) -> None:
    if self.enabled and self._shown:
      self.stream.write("\n")
      self.stream.flush()
