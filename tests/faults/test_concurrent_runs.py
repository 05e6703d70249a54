"""Two real processes on one runs root, with and without --force: nothing lost, no record overwritten."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from visual_priors.data import cache

SCRIPT = pathlib.Path(__file__).with_name("fake_run.py")


def _start(tmp_path: pathlib.Path, name: str, *flags: str) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path / "root"), name, *flags], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
  output, _ = process.communicate(timeout=120)
  return process.returncode, output


def _events(tmp_path: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]


def _run_json(tmp_path: pathlib.Path) -> dict:
  [run_dir] = (tmp_path / "root" / "runs").iterdir()
  return cache.read_json(run_dir / "run.json")


def _attempts_by_pid(run_json: dict) -> dict[int, dict]:
  return {int(attempt.split("-")[-2]): record for attempt, record in run_json.get("attempts", {}).items()}


def test_a_forced_rebuild_waits_for_the_process_reading_the_stage(tmp_path):
  first = _start(tmp_path, "first")
  second = _start(tmp_path, "second", "--force-from", "align", "--after", str(tmp_path / "first.sft.started"))
  (first_rc, first_out), (second_rc, second_out) = _finish(first), _finish(second)
  assert first_rc == 0, first_out  # before the fix: "sft read align: .../align/<key>/out/done.txt is gone"
  assert second_rc == 0, second_out
  events = [(e["process"], e["stage"], e["event"]) for e in _events(tmp_path)]
  # The second's rebuild of align starts only once the first's sft (reading align) is done.
  assert events.index(("second", "align", "started")) > events.index(("first", "sft", "done"))
  assert [e for e in events if e[0] == "second"] == [("second", s, w) for s in ("align", "sft") for w in
                                                     ("started", "done")]
  attempts = _attempts_by_pid(_run_json(tmp_path))
  assert sorted(attempts) == sorted([first.pid, second.pid])
  assert attempts[first.pid]["status"] == attempts[second.pid]["status"] == "partial"
  assert attempts[second.pid]["forced"] == ["align", "sft"] and attempts[first.pid]["forced"] == []
  assert {s["status"] for s in attempts[second.pid]["stages"].values()} == {"cached", "done"}


def test_two_processes_share_stages_and_keep_their_own_records(tmp_path):
  first = _start(tmp_path, "first", "--fail", "sft")
  second = _start(tmp_path, "second", "--after", str(tmp_path / "first.align.started"))
  (first_rc, first_out), (second_rc, second_out) = _finish(first), _finish(second)
  assert first_rc == 1 and "first failed sft on purpose" in first_out, first_out
  assert second_rc == 0, second_out
  done = [(e["process"], e["stage"]) for e in _events(tmp_path) if e["event"] == "done"]
  # Every stage was built once (the second waited for the first's, then reused them), sft by the second.
  assert sorted(stage for _, stage in done) == sorted(["pretrain", "mmdata", "vision", "align", "sft"])
  assert ("second", "sft") in done
  run_json = _run_json(tmp_path)
  attempts = _attempts_by_pid(run_json)
  assert sorted(attempts) == sorted([first.pid, second.pid])
  failed = attempts[first.pid]  # not overwritten by the second's success
  assert failed["status"] == "failed" and "first failed sft on purpose" in failed["error"]
  assert failed["stages"]["sft"]["status"] == "failed"
  assert attempts[second.pid]["status"] == "partial" and attempts[second.pid]["stages"]["sft"]["status"] == "done"
  assert run_json["attempt"] in run_json["attempts"]  # the top level is the attempt that wrote last
