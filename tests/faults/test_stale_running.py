"""A run killed by SIGKILL while a stage runs: its run.json still says "running", readers show it interrupted."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time

from visual_priors import cli
from visual_priors.data import cache
from visual_priors.experiment import directories

SCRIPT = pathlib.Path(__file__).with_name("fake_run.py")


def _wait_for(path: pathlib.Path, process: subprocess.Popen, seconds: float = 120) -> None:
  deadline = time.monotonic() + seconds
  while not path.exists():
    assert process.poll() is None, process.communicate()[0]
    assert time.monotonic() < deadline, f"{path} never appeared"
    time.sleep(0.02)


def test_a_killed_run_reads_as_interrupted_while_a_live_one_reads_as_running(tmp_path, capsys):
  root = tmp_path / "root"
  process = subprocess.Popen([sys.executable, str(SCRIPT), str(root), "killed", "--sft-seconds", "120"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    _wait_for(tmp_path / "killed.sft.started", process)
    [run_dir] = (root / "runs").iterdir()
    live = directories.read_run(run_dir)
    assert live["status"] == "running" and live["stages"]["sft"]["status"] == "running"
    assert live["process"]["pid"] == process.pid  # before the fix: run.json named no process
  finally:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
  assert cache.read_json(run_dir / "run.json")["status"] == "running"  # what the killed process left
  record = directories.read_run(run_dir)
  assert record["status"] == "interrupted" and record["stages"]["sft"]["status"] == "interrupted"
  assert record["stages"]["align"]["status"] == "done" and f"process {process.pid}" in record["error"]
  [attempt] = record["attempts"].values()
  assert attempt["status"] == "interrupted"

  capsys.readouterr()
  assert cli.main(["runs", "--root", str(root)]) == 0
  [row] = [line for line in capsys.readouterr().out.splitlines() if run_dir.name in line]
  assert "| interrupted |" in row and "| sft |" in row, row


def test_a_record_from_another_host_or_a_reused_pid_is_told_apart():
  me = directories.process_record()
  assert not directories.process_gone(me)  # this process is running
  assert not directories.process_gone({**me, "host": "elsewhere"})  # cannot tell: shown as it says
  assert directories.process_gone({**me, "start_ticks": me["start_ticks"] + 1})  # the pid now names another process
