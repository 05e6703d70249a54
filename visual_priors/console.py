"""What a user sees while work runs: progress with ETA, and the libraries' start-up noise kept out of the way.

`Progress` reports long work (training steps, documents labelled, replies decoded). On a terminal, when
nothing else prints meanwhile, it rewrites one line (`[=====>    ] 512/1000 (51%) loss 3.21 ETA 0:41`);
otherwise (CI logs, files, notebooks, or a `log` that other lines go to as well) it prints a plain line at
most every `every_seconds`, plus the first and the last, so a log shows the pace without a line per step.

`quiet_libraries()` (called by the command line unless `--verbose`) keeps TensorFlow's C++ start-up lines
(oneDNN, cudart, CPU-feature notes), which it prints to the process's stderr before any log setting applies,
out of the output: it filters exactly those lines from file descriptor 2 while `tensorflow` is first
imported, and lets everything else through. absl's Python log (orbax, seqio, grain) shows errors only.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import TextIO

# Set by the command line's --verbose: library logs and start-up lines are left alone.
VERBOSE_ENV = "VISUAL_PRIORS_VERBOSE"
# The lines TensorFlow's C++ runtime prints while it loads and first looks for devices, which no environment
# variable silences in TF >= 2.16 (they are written before absl's log is initialised), and the INFO line of the
# SentencePiece copy inside tensorflow-text for every identity-normalised vocabulary it loads.
LIBRARY_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard|cuda_\w+|gpu_device)\.cc:\d+\].*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."
    r"|normalizer\.cc\(\d+\) LOG\(INFO\) precompiled_charsmap is empty\. use identity normalization\.)$")


def interactive(stream: TextIO) -> bool:
  """True for a terminal, outside CI (where a rewritten line would be garbled into one long one)."""
  return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("CI")


def format_seconds(seconds: float) -> str:
  seconds = max(int(round(seconds)), 0)
  hours, rest = divmod(seconds, 3600)
  return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
  """Progress of `total` units of work named `label`, with the rate and an ETA measured after the first unit
  (whose time holds compilation). `update(done, message)` reports; `close()` ends the terminal line."""

  def __init__(self, total: int, label: str = "", *, stream: TextIO | None = None,
               log: Callable[[str], None] | None = None, every_seconds: float = 30.0, enabled: bool = True,
               bar_width: int = 24, clock: Callable[[], float] = time.monotonic):
    self.total = max(int(total), 0)
    self.label = label
    self.stream = stream or sys.stdout
    self.log = log  # where plain lines go when not on a terminal (default: the stream)
    self.every_seconds = every_seconds
    self.enabled = enabled
    # A bar only when nothing else writes lines in between: with a `log`, its lines would break the bar.
    self.terminal = interactive(self.stream) and log is None
    self.bar_width = bar_width
    self._clock = clock
    self._first: tuple[int, float] | None = None  # (done, time) at the first update
    self._last_line = -float("inf")
    self._last_done: int | None = None  # the count of the last plain line
    self._bar_open = False

  def eta_seconds(self, done: int) -> float | None:
    """Seconds left at the rate measured since the first update; None until two updates."""
    if self._first is None or done <= self._first[0]:
      return None
    rate = (done - self._first[0]) / max(self._clock() - self._first[1], 1e-9)
    return (self.total - done) / rate

  def text(self, done: int, message: str = "") -> str:
    percent = 100 * done / self.total if self.total else 100.0
    parts = [self.label] if self.label else []
    if self.terminal:
      filled = self.bar_width * min(done, self.total) // max(self.total, 1)
      parts.append("[" + "=" * filled + (">" if filled < self.bar_width else "")
                   + " " * max(self.bar_width - filled - 1, 0) + "]")
    parts.append(f"{done}/{self.total} ({percent:.0f}%)")
    if message:
      parts.append(message)
    eta = self.eta_seconds(done)
    if eta is not None and done < self.total:
      parts.append(f"ETA {format_seconds(eta)}")
    return " ".join(parts)

  def update(self, done: int, message: str = "") -> None:
    if not self.enabled:
      return
    now = self._clock()
    if self._first is None:
      self._first = (done, now)
    if self.terminal:
      self.stream.write("\r" + self.text(done, message) + "\033[K")
      self._bar_open = True
    elif done != self._last_done and (self._last_done is None or done >= self.total
                                      or now - self._last_line >= self.every_seconds):
      self._last_line, self._last_done = now, done
      if self.log is not None:
        self.log(self.text(done, message))
        return
      self.stream.write(self.text(done, message) + "\n")
    else:
      return
    self.stream.flush()

  def close(self) -> None:
    if self._bar_open:
      self.stream.write("\n")
      self.stream.flush()
      self._bar_open = False

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def verbose() -> bool:
  return bool(os.environ.get(VERBOSE_ENV))


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[str] = LIBRARY_NOISE) -> Iterator[None]:
  """Routes file descriptor 2 through a temporary file for the duration, then writes back every line that
  is not `noise`. Works for output of C/C++ code, which Python's sys.stderr never sees. Does nothing with
  --verbose."""
  if verbose():
    yield
    return
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError):  # no real descriptor 2 (some embedded interpreters): nothing to filter
    yield
    return
  with tempfile.TemporaryFile(mode="w+b") as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
              if not noise.match(line.rstrip("\n"))]
      if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` as usual, but executes its top-level module inside `filtered_stderr`."""

  def find_spec(self, fullname, path=None, target=None):
    if fullname != "tensorflow":
      return None
    sys.meta_path.remove(self)  # once: TensorFlow's loading lines come with its first import
    spec = importlib.machinery.PathFinder.find_spec(fullname, path)
    if spec is not None and spec.loader is not None:
      exec_module = spec.loader.exec_module

      def quiet_exec(module):
        with filtered_stderr():
          exec_module(module)

      spec.loader.exec_module = quiet_exec
    return spec


def leave_out_absent_tpus() -> None:
  """On a host without TPU chips whose environment holds libtpu (the `tpu` extra, for compile-only checks of TPU
  slices), JAX would probe for TPUs when it starts and print libtpu's discovery errors. There, unless
  JAX_PLATFORMS already says otherwise, JAX's platforms are the GPU plugins installed (if any) and the CPU."""
  if os.environ.get("JAX_PLATFORMS") or importlib.util.find_spec("libtpu") is None:
    return
  if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):  # TPU VMs expose their chips here
    return
  plugins = {entry.name for entry in importlib.metadata.entry_points(group="jax_plugins")}  # e.g. xla_cuda12
  gpus = [platform for platform in ("cuda", "rocm") if any(platform in name for name in plugins)]
  os.environ["JAX_PLATFORMS"] = ",".join([*gpus, "cpu"])


def quiet_libraries() -> None:
  """Keeps library start-up noise out of the command line's output (see the module docstring)."""
  if verbose():
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  absl_logging.set_verbosity(absl_logging.ERROR)  # orbax and seqio log their internals at INFO/WARNING
  if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowImport())
