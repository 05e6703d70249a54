"""A runs root copied or moved elsewhere reads only its own files: damage in a copy is named, never hidden."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from visual_priors import cli


def _run(root: pathlib.Path, store: pathlib.Path, *flags: str) -> int:
  return cli.main(["run", "demo:mixture=mix6,reduced", "--root", str(root), "--set", f"data.store={store}",
                   "--set", "pretrain.token_budget=0", "--until", "pretrain", *flags])


@pytest.fixture
def original(tmp_path, small_store):
  assert _run(tmp_path / "original", small_store.root) == 0
  return tmp_path / "original"


def _checkpoints(root: pathlib.Path) -> pathlib.Path:
  [stage] = (root / "stages" / "pretrain").iterdir()
  return stage / "out" / "checkpoints"


def _export(root: pathlib.Path, out: pathlib.Path) -> int:
  [run] = (root / "runs").iterdir()
  return cli.main(["export", "hf", str(run), "--out", str(out)])


def test_damage_in_a_copy_is_named_and_never_read_around(original, tmp_path, capsys):
  copy = tmp_path / "copy"
  shutil.copytree(original, copy)
  shutil.rmtree(_checkpoints(copy))  # the copy lost its checkpoints; the original's are intact
  capsys.readouterr()
  assert _export(copy, tmp_path / "hf") != 0  # before the fix: exported the original's checkpoint
  error = capsys.readouterr().err
  assert str(copy) in error and str(original) not in error, error


def test_a_copy_outlives_its_original_and_a_moved_root_reuses_its_stages(original, tmp_path, small_store, capsys):
  copy = tmp_path / "copy"
  shutil.copytree(original, copy)
  moved = tmp_path / "moved"
  original.rename(moved)
  assert _run(moved, small_store.root) == 0 and "reused" in capsys.readouterr().out
  shutil.rmtree(moved)
  assert _export(copy, tmp_path / "hf") == 0
  assert (tmp_path / "hf" / "model.safetensors").is_file()
