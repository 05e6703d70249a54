"""Tests for visual_priors.moved_paths: recorded paths found again after their tree moved or was copied."""

import pathlib

from visual_priors import moved_paths


def _touch(path: pathlib.Path) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("x")
  return path


def test_the_roots_of_a_move_are_the_directories_less_their_common_tail():
  assert moved_paths.moved_roots("/a/runs/stages/x/k", "/b/stages/x/k") == (pathlib.Path("/a/runs"), pathlib.Path("/b"))
  assert moved_paths.moved_roots("/a/run", "/b/other") == (pathlib.Path("/a/run"), pathlib.Path("/b/other"))
  assert moved_paths.moved_roots("/a/x", "/a/x") is None


def test_paths_under_the_old_root_point_into_the_new_one_only_where_the_file_is(tmp_path):
  new = tmp_path / "new"
  moved = _touch(new / "stages" / "sft" / "k1" / "out" / "checkpoints" / "5")
  outside = _touch(tmp_path / "cache" / "vocab.model")  # not in the moved tree: kept
  old = tmp_path / "old"
  tree = {"checkpoint_dir": str(old / "stages" / "sft" / "k1" / "out" / "checkpoints" / "5"),
          "nested": [{"gone": str(old / "stages" / "sft" / "k1" / "out" / "missing.json")}],
          "vocab": str(outside), "steps": 5, "name": "stages/sft"}
  rebased = moved_paths.rebased(tree, old / "stages" / "sft" / "k1", new / "stages" / "sft" / "k1")
  assert rebased["checkpoint_dir"] == str(moved)
  assert rebased["nested"][0]["gone"] == tree["nested"][0]["gone"]  # nowhere: left as recorded, for the error
  assert {k: rebased[k] for k in ("vocab", "steps", "name")} == {k: tree[k] for k in ("vocab", "steps", "name")}


def test_a_recorded_path_that_still_exists_is_kept(tmp_path):
  original, copy = _touch(tmp_path / "a" / "f"), _touch(tmp_path / "b" / "f")
  assert moved_paths.rebased({"f": str(original)}, tmp_path / "a", tmp_path / "b") == {"f": str(original)}
  assert moved_paths.relocated(original, copy) == original
  assert moved_paths.relocated(tmp_path / "gone", tmp_path / "nope", copy) == copy
  assert moved_paths.relocated(tmp_path / "gone", tmp_path / "nope") == tmp_path / "gone"
