"""Tests for visual_priors.console: progress with ETA on terminals and in logs, TensorFlow's start-up lines filtered."""

import io
import os
import subprocess
import sys

from visual_priors import console


class FakeTerminal(io.StringIO):
  def isatty(self):
    return True


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_terminal_bar_rewrites_one_line_with_eta(monkeypatch):
  monkeypatch.delenv("CI", raising=False)
  stream, clock = FakeTerminal(), Clock()
  progress = console.Progress(10, "train", stream=stream, bar_width=10, clock=clock)
  progress.update(1, "loss 2.0")  # the first unit (compile) starts the clock
  clock.now = 4.0
  progress.update(5, "loss 1.0")  # 4 units in 4 s: 5 left, 0:05
  clock.now = 9.0
  progress.update(10, "loss 0.5")
  progress.close()
  text = stream.getvalue()
  assert text.count("\r") == 3 and text.endswith("\n")
  assert "train [=====>    ] 5/10 (50%) loss 1.0 ETA 0:05" in text
  assert "train [==========] 10/10 (100%) loss 0.5\x1b[K" in text


def test_plain_lines_in_logs_at_most_every_interval_plus_first_and_last():
  stream, clock = io.StringIO(), Clock()
  progress = console.Progress(100, "step", stream=stream, every_seconds=30, clock=clock)
  for done in range(1, 101):
    clock.now = done  # one unit a second
    progress.update(done)
  progress.close()
  lines = stream.getvalue().splitlines()
  assert lines[0] == "step 1/100 (1%)"
  assert lines[1] == "step 31/100 (31%) ETA 1:09"
  assert lines[-1] == "step 100/100 (100%)"
  assert len(lines) == 5  # 1, 31, 61, 91, 100
  assert "\r" not in stream.getvalue()


def test_ci_and_disabled_progress(monkeypatch):
  monkeypatch.setenv("CI", "true")
  assert not console.Progress(10, stream=FakeTerminal()).terminal
  stream = io.StringIO()
  progress = console.Progress(10, stream=stream, enabled=False)
  progress.update(10)
  assert stream.getvalue() == ""


def test_format_seconds():
  assert console.format_seconds(59.6) == "1:00"
  assert console.format_seconds(3725) == "1:02:05"


def test_tensorflow_start_up_lines_are_filtered_but_other_stderr_passes():
  """A fresh interpreter: quiet_libraries, then importing TensorFlow prints none of its C++ start-up lines,
  while a line the process itself writes to descriptor 2 during the import still comes through."""
  code = ("import os, sys\n"
          "from visual_priors import console\n"
          "console.quiet_libraries()\n"
          "import tensorflow\n"
          "os.write(2, b'own line\\n')\n")
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", console.VERBOSE_ENV)}
  quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
  assert quiet.returncode == 0, quiet.stderr
  assert "own line" in quiet.stderr
  for noise in ("oneDNN", "cudart", "absl::InitializeLog"):
    assert noise not in quiet.stderr


def test_filtered_stderr_keeps_lines_that_are_not_noise():
  code = ("import os\n"
          "from visual_priors import console\n"
          "with console.filtered_stderr():\n"
          "  os.write(2, b'I0000 00:00:1796590706.683143    3662 port.cc:153] oneDNN custom operations are on.\\n')\n"
          "  os.write(2, b'a real error\\n')\n")
  env = {k: v for k, v in os.environ.items() if k != console.VERBOSE_ENV}
  result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
  assert result.stderr == "a real error\n"


def test_absent_tpus_are_left_out_of_jax_platforms(monkeypatch):
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  real_find_spec = console.importlib.util.find_spec
  monkeypatch.setattr(console.importlib.util, "find_spec",
                      lambda name, *args: object() if name == "libtpu" else real_find_spec(name, *args))
  monkeypatch.setattr(console.glob, "glob", lambda pattern: [])
  console.leave_out_absent_tpus()
  assert os.environ["JAX_PLATFORMS"] == "cpu"
  monkeypatch.setenv("JAX_PLATFORMS", "tpu")  # a user's choice is kept
  console.leave_out_absent_tpus()
  assert os.environ["JAX_PLATFORMS"] == "tpu"
  monkeypatch.delenv("JAX_PLATFORMS")
  monkeypatch.setattr(console.glob, "glob", lambda pattern: ["/dev/accel0"] if "accel" in pattern else [])
  console.leave_out_absent_tpus()  # a TPU VM: JAX finds its chips as usual
  assert "JAX_PLATFORMS" not in os.environ


def test_a_command_prints_no_tpu_discovery_errors_where_libtpu_is_installed_without_tpus():
  """With the `tpu` extra installed (the test extra holds it), a command that starts JAX on this TPU-less host
  prints none of libtpu's discovery errors."""
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", console.VERBOSE_ENV, "XLA_FLAGS")}
  result = subprocess.run([sys.executable, "-m", "visual_priors", "compile-check", "--scale", "nano", "--seq", "32"],
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  for noise in ("TPU", "InitGoogle", "common_lib.cc"):
    assert noise not in result.stderr
