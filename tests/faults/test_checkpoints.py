"""Faults in the trainer's own checkpoints: a damaged latest step falls back to the newest intact one."""

import shutil

import pytest

from visual_priors import cli
from visual_priors.data import cache

STEPS = ["--set", "checkpoint.every_steps=2", "--set", "checkpoint.async_save=False"]


def _pretrain(store, work_dir):
  return cli.main(["pretrain", "--scale", "nano", "--steps", "4", "--batch", "8", "--seq", "32", "--eval-batch", "8",
                   "--set", "model.attention_impl='xla'", "--set", "eval_max_batches=1", *STEPS,
                   "--store", str(store.root), "--work-dir", str(work_dir)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_store):
  work_dir = tmp_path_factory.mktemp("trained") / "lm"
  assert _pretrain(small_store, work_dir) == 0
  assert sorted(p.name for p in (work_dir / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
  return work_dir


def _truncate(step_dir):
  for path in (step_dir / "state").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(step_dir):
  for path in (step_dir / "state").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      data = bytearray(path.read_bytes())
      for i in range(len(data) // 4, len(data), max(1, len(data) // 16)):
        data[i] ^= 0xFF
      path.write_bytes(bytes(data))


def _delete_item(step_dir):
  shutil.rmtree(step_dir / "data")


@pytest.mark.parametrize("damage", [_truncate, _flip, _delete_item], ids=["truncated", "flipped", "deleted"])
def test_a_damaged_latest_step_resumes_from_the_previous_intact_step_with_a_notice(
    tmp_path, trained, small_store, damage, capsys):
  work_dir = tmp_path / "lm"
  shutil.copytree(trained, work_dir)
  (work_dir / "manifest.json").unlink()
  checkpoints = work_dir / "checkpoints"
  damage(checkpoints / "4")
  capsys.readouterr()
  assert _pretrain(small_store, work_dir) == 0, capsys.readouterr().err
  out = capsys.readouterr().out
  notices = [line for line in out.splitlines() if "step 4" in line and "damaged" in line]
  assert len(notices) == 1 and "step 2" in notices[0], out
  assert cache.read_json(work_dir / "manifest.json")["step"] == 4
  assert (checkpoints / "4" / "state").is_dir() and (checkpoints / "4" / "data").is_dir()  # step 4 written anew
  assert any(work_dir.glob("checkpoints.damaged/4*"))  # the damaged step is kept aside, not deleted
