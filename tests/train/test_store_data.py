"""Tests for visual_priors.train.store_data: pre-training on a mixture of the segment store."""

import json
import pathlib

import pytest

from visual_priors.train import pretrain, store_data


def test_pretrain_on_a_store_mixture_records_data_and_proportions(small_store, run_config):
  sources = small_store.sources[:2]
  data = store_data.mixture_data(small_store, f"{sources[0]}=0.7,{sources[1]}=0.3", batch_size=8, seq_len=32,
                                 eval_batch_size=8, seed=42)
  run_config.seq_len = 32
  run_config.model.vocab_size = data.vocab_size
  run_config.num_steps = 3
  run_config.eval_max_batches = 1
  pretrain.pretrain(run_config, train_data=data.train_data, eval_sets=data.eval_sets,
                    data_identity=data.identity, data_report=data.report)
  manifest = json.loads((pathlib.Path(run_config.work_dir) / "manifest.json").read_text())
  assert manifest["data"]["vocab_sha256"] == small_store.manifest["vocab"]["sha256"]
  assert [c["name"] for c in manifest["data"]["components"]] == sources
  rows = manifest["data_report"]["proportions"]
  assert [r["nominal"] for r in rows] == pytest.approx([0.7, 0.3])
  assert sum(r["realised"] for r in rows) == pytest.approx(1.0)
  assert sum(r["tokens"] for r in rows) > 3 * 8 * 32 * 0.8  # three steps of mostly non-padding tokens
  assert {f"eval/{s}/loss" for s in sources} <= set(manifest["final_metrics"])
