"""Tests for visual_priors.train.metrics: real TensorBoard event files and the JSONL log."""

import json

from tensorboard.backend.event_processing import event_accumulator

from visual_priors.train import metrics


def test_scalars_round_trip_through_tensorboard_and_jsonl(tmp_path):
  writer = metrics.MetricWriter(tmp_path)
  writer.write_scalars(1, {"loss": 2.5, "mfu": None, "learning_rate": 1e-4})
  writer.write_scalars(2, {"loss": 2.0, "mfu": 0.4, "grad_norm": float("nan")})
  writer.close()

  events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  assert [(e.step, round(e.value, 6)) for e in events.Scalars("loss")] == [(1, 2.5), (2, 2.0)]
  assert [e.step for e in events.Scalars("mfu")] == [2]  # None is skipped, not logged as a guess

  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows[0] == {"step": 1, "loss": 2.5, "mfu": None, "learning_rate": 1e-4}
  assert rows[1]["grad_norm"] is None and rows[1]["mfu"] == 0.4


def test_jsonl_appends_across_writers(tmp_path):
  for step in (1, 2):
    writer = metrics.JsonlWriter(tmp_path / "m.jsonl")
    writer.write_scalars(step, {"loss": float(step)})
    writer.close()
  assert [json.loads(line)["step"] for line in (tmp_path / "m.jsonl").read_text().splitlines()] == [1, 2]
