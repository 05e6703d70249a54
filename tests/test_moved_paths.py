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
  assert rebased["nested"][0]["gone"] == str(new / "stages" / "sft" / "k1" / "out" / "missing.json")  # the error names
  # the current tree's file
  assert {k: rebased[k] for k in ("vocab", "steps", "name")} == {k: tree[k] for k in ("vocab", "steps", "name")}


def test_a_copy_reads_only_its_own_files_and_a_moved_tree_falls_back_to_what_exists(tmp_path):
  original, copy = _touch(tmp_path / "a" / "f"), _touch(tmp_path / "b" / "f")
  assert moved_paths.rebased({"f": str(original)}, tmp_path / "a", tmp_path / "b") == {"f": str(copy)}
  copy.unlink()  # damage in the copy: named, never hidden by the original
  assert moved_paths.rebased({"f": str(original)}, tmp_path / "a", tmp_path / "b") == {"f": str(copy)}
  # Moved (the recording directory is gone), a recorded path that still exists outside the new tree is used.
  assert moved_paths.rebased({"f": str(original)}, tmp_path / "a" / "gone", tmp_path / "b" / "gone") == {
      "f": str(original)}


def test_a_runs_root_named_alike_ends_above_its_stages(tmp_path):
  assert moved_paths.moved_roots("/x/runs/stages/sft/k/out", "/y/runs/stages/sft/k/out") == (
      pathlib.Path("/x/runs"), pathlib.Path("/y/runs"))
  store = _touch(tmp_path / "x" / "cache" / "store")  # beside the runs root, not in it: kept even for a copy
  (tmp_path / "x" / "runs" / "stages" / "sft" / "k").mkdir(parents=True)
  assert moved_paths.rebased({"s": str(store)}, tmp_path / "x" / "runs" / "stages" / "sft" / "k",
                             tmp_path / "y" / "runs" / "stages" / "sft" / "k") == {"s": str(store)}


def test_relocated_keeps_what_exists_unless_the_candidates_are_the_readers_own(tmp_path):
  original, copy = _touch(tmp_path / "a" / "f"), _touch(tmp_path / "b" / "f")
  assert moved_paths.relocated(original, copy) == original
  assert moved_paths.relocated(original, copy, own_first=True) == copy
  assert moved_paths.relocated(tmp_path / "gone", tmp_path / "nope", copy) == copy
  assert moved_paths.relocated(tmp_path / "gone", tmp_path / "nope") == tmp_path / "gone"
