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


def test_pretrain_on_a_users_seqio_task_reads_its_cache(register_user_task, user_texts, run_config):
  import numpy as np

  from visual_priors.data import vocab
  train, validation = user_texts(300, 11), user_texts(40, 12)
  name = register_user_task("user_notes_pretrain", train, validation)
  data = store_data.mixture_data(None, f"seqio:{name}", batch_size=8, seq_len=64, eval_batch_size=8, seed=0)
  assert data.store.manifest["seqio"]["task"] == name and data.identity["seqio"]["seqio"] == name
  assert list(data.eval_sets) == [name]
  processor = vocab.load_processor(data.store.vocab_path)
  batch = next(data.train_data())
  for row, ids in zip(batch["decoder_target_tokens"], batch["decoder_segment_ids"]):
    for segment in set(ids[ids > 0].tolist()):
      tokens = row[ids == segment].tolist()
      if tokens[-1] == vocab.EOS_ID:  # whole documents (not cut by the row's end) decode to a task text
        assert processor.decode(tokens[:-1]) in train
  again = store_data.mixture_data(None, f"seqio:{name}", batch_size=8, seq_len=64, eval_batch_size=8, seed=0)
  assert again.store.root == data.store.root  # the cache is reused

  run_config.seq_len, run_config.model.vocab_size = 64, data.vocab_size
  run_config.num_steps, run_config.eval_every_steps, run_config.checkpoint.every_steps = 12, 12, 12
  run_config.optimizer.peak_lr, run_config.eval_max_batches = 3e-3, 1
  pretrain.pretrain(run_config, train_data=data.train_data, eval_sets=data.eval_sets, data_identity=data.identity,
                    data_report=data.report)
  work = pathlib.Path(run_config.work_dir)
  losses = [row["loss"] for row in map(json.loads, (work / "metrics.jsonl").read_text().splitlines()) if "loss" in row]
  assert np.isfinite(losses).all() and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.5
  manifest = json.loads((work / "manifest.json").read_text())
  assert manifest["data"]["segment_store"] == str(data.store.root)
  assert manifest["data_report"]["proportions"][0]["component"] == name
