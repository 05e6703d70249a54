"""Tests for visual_priors.data.tasks and the on-the-fly seqio pipeline."""

import numpy as np
import pytest

from visual_priors.data import mixtures, pipeline, seqio_pipeline, tasks


def test_tasks_per_source_and_category_are_registered(small_store):
  import seqio
  names = tasks.register_tasks(small_store)
  for source in small_store.sources:
    assert tasks.task_name(small_store, "src", source) in names
  assert tasks.task_name(small_store, "cat", "reasoning") in names
  assert tasks.task_name(small_store, "cat", "not-reasoning") in names
  task = seqio.get_mixture_or_task(tasks.task_name(small_store, "src", "code"))
  example = next(iter(task.get_dataset({"targets": 64}, split="validation", shuffle=False)))
  assert example["targets"].dtype.name == "int32" and example["targets"][-1] == 1  # EOS


def test_category_task_only_yields_segments_with_the_label(small_store):
  import seqio
  tasks.register_tasks(small_store)
  code_bit = 1 << 0
  for name, want in (("code", True), ("not-code", False)):
    task = seqio.get_mixture_or_task(tasks.task_name(small_store, "cat", name))
    ds = task.source.get_dataset(split="train", shuffle=False).take(50)
    assert all(((int(ex["labels"]) & code_bit) != 0) == want for ex in ds.as_numpy_iterator())


def test_seqio_mixture_batches_and_resume(small_store):
  spec = mixtures.CategoryProportions({"reasoning": 0.5})
  name, plan = tasks.register_mixture(small_store, "test_half_reasoning", spec)
  assert [round(c.rate, 6) for c in plan] == [0.5, 0.5]
  batches = seqio_pipeline.SeqioBatches(name, seq_len=128, batch_size=4, seed=3)
  next(batches)
  state = batches.get_state()
  want = next(batches)
  resumed = seqio_pipeline.SeqioBatches(name, seq_len=128, batch_size=4, seed=3)
  resumed.set_state(state)
  got = next(resumed)
  assert set(want) >= set(pipeline.DEVICE_FEATURES)
  for key in pipeline.DEVICE_FEATURES:
    np.testing.assert_array_equal(got[key], want[key])


def test_seqio_state_from_another_mixture_is_refused(small_store):
  name, _ = tasks.register_mixture(small_store, "test_code_only", mixtures.SourceWeights.from_mapping({"code": 1}))
  batches = seqio_pipeline.SeqioBatches(name, seq_len=64, batch_size=2)
  state = batches.get_state()
  other = seqio_pipeline.SeqioBatches(name, seq_len=128, batch_size=2)
  with pytest.raises(ValueError, match="was saved for"):
    other.set_state(state)
