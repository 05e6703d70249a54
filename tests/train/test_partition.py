"""Tests for visual_priors.train.partition: parameter paths and the trainable/frozen split."""

import numpy as np
import pytest

from visual_priors.train import partition

PARAMS = {
    "embedder": {"embedding": np.zeros((4, 2))},
    "layers": {0: {"mlp": {"up": {"kernel": np.zeros((2, 3))}}, "attn_norm": {"scale": np.zeros(2)}},
               1: {"mlp": {"up": {"kernel": np.zeros((2, 3))}}, "attn_norm": {"scale": np.zeros(2)}}},
    "final_norm": {"scale": np.zeros(2)},
}


def test_flatten_paths_joins_keys_with_slashes():
  assert sorted(partition.flatten_paths(PARAMS)) == [
      "embedder/embedding", "final_norm/scale", "layers/0/attn_norm/scale", "layers/0/mlp/up/kernel",
      "layers/1/attn_norm/scale", "layers/1/mlp/up/kernel"]


def test_split_trainable_by_full_match_with_frozen_exceptions():
  trainable, frozen = partition.split_trainable(PARAMS, r"layers/.*", r"layers/0/.*")
  assert sorted(partition.flatten_paths(trainable)) == ["layers/1/attn_norm/scale", "layers/1/mlp/up/kernel"]
  assert "layers/0/mlp/up/kernel" in partition.flatten_paths(frozen)
  assert "embedder/embedding" in partition.flatten_paths(frozen)
  # A partial match does not count: "norm" alone matches no full path.
  with pytest.raises(ValueError, match="No parameter is trainable.*embedder/embedding"):
    partition.split_trainable(PARAMS, "norm")


def test_merge_trees_inverts_the_split():
  trainable, frozen = partition.split_trainable(PARAMS, r".*scale")
  merged = partition.merge_trees(trainable, frozen)
  assert partition.flatten_paths(merged).keys() == partition.flatten_paths(PARAMS).keys()
  with pytest.raises(ValueError, match="disjoint"):
    partition.merge_trees(trainable, trainable)


def test_path_mask_and_bad_regex():
  mask = partition.flatten_paths(partition.path_mask(PARAMS, r".*kernel", "decay"))
  assert [path for path, keep in mask.items() if keep] == ["layers/0/mlp/up/kernel", "layers/1/mlp/up/kernel"]
  with pytest.raises(ValueError, match="trainable regex '\\(' is not a valid"):
    partition.split_trainable(PARAMS, "(")
