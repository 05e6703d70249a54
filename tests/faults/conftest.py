"""Fixtures of the fault-injection suite: a private copy of the shared segment store, safe to damage."""

import pathlib
import shutil

import pytest

from visual_priors.data import cache, segments


@pytest.fixture
def store_copy(tmp_path, small_store):
  """A private copy of the shared segment store (vocabulary copied beside it), safe to damage."""
  root = tmp_path / "segments" / small_store.root.name
  shutil.copytree(small_store.root, root)
  manifest = cache.read_json(root / "manifest.json")
  recorded = pathlib.Path(manifest["vocab"]["path"])
  vocab = tmp_path / "vocab" / recorded.parent.name / recorded.name
  vocab.parent.mkdir(parents=True)
  shutil.copy(recorded, vocab)
  manifest["vocab"]["path"] = str(vocab)
  cache.write_json_atomic(root / "manifest.json", manifest)
  return segments.SegmentStore(root)
