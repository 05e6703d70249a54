"""Tests for visual_priors.data.pipeline (pre-tokenized grain path) and global batches on the CPU mesh."""

import jax
import numpy as np
import pytest

from visual_priors.data import mixtures, pipeline

SEQ = 128


def _config(**kw):
  return pipeline.PipelineConfig(**{"batch_size": 8, "seq_len": SEQ, **kw})


def test_batches_are_packed_int32_with_consistent_features(small_store):
  spec = mixtures.SourceWeights.from_mapping({s: 1.0 for s in small_store.sources}, normalize=True)
  iterator, plan = pipeline.mixture_iterator(small_store, spec, _config(), process_index=0, process_count=1)
  batch = next(iterator)
  for name in pipeline.DEVICE_FEATURES:
    assert batch[name].shape == (8, SEQ) and batch[name].dtype == np.int32
  seg, pos = batch["decoder_segment_ids"], batch["decoder_positions"]
  tgt, inp = batch["decoder_target_tokens"], batch["decoder_input_tokens"]
  assert (batch["decoder_loss_weights"] == (seg > 0)).all()
  # Inputs are targets shifted right inside each packed example, starting from 0 at position 0.
  same = (pos[:, 1:] > 0)
  assert (inp[:, 1:][same] == tgt[:, :-1][same]).all()
  assert (inp[pos == 0] == 0).all()
  assert (tgt[seg == 0] == 0).all()
  assert (seg > 0).mean() > 0.8  # packing leaves little padding


def test_realised_proportions_match_nominal(small_store):
  sources = small_store.sources[:3]
  spec = mixtures.SourceWeights.from_mapping(dict(zip(sources, (0.6, 0.3, 0.1))))
  iterator, plan = pipeline.mixture_iterator(small_store, spec, _config(), process_index=0, process_count=1)
  meter = pipeline.ProportionMeter(plan)
  for _ in range(60):
    meter.update(next(iterator))
  # Token shares follow example rates up to segment-length variation: 3 points over ~60k tokens.
  assert meter.max_abs_error() < 0.03, pipeline.format_proportions(meter.report())


def test_category_mixture_realises_the_category_share(small_store):
  spec = mixtures.CategoryProportions({"reasoning": 0.75})
  iterator, plan = pipeline.mixture_iterator(small_store, spec, _config(), process_index=0, process_count=1)
  assert {c.name for c in plan} == {"reasoning", "not-reasoning"}
  meter = pipeline.ProportionMeter(plan)
  for _ in range(60):
    meter.update(next(iterator))
  assert meter.max_abs_error() < 0.03, pipeline.format_proportions(meter.report())


def test_iterator_resume_reproduces_exact_next_batches(small_store):
  spec = mixtures.PAPER_MIXTURES["mix6"] if set(mixtures.PAPER_MIXTURES["mix6"].weights) <= set(
      small_store.sources) else mixtures.CategoryProportions({"visual": 0.25})
  config = _config()
  first, _ = pipeline.mixture_iterator(small_store, spec, config, process_index=0, process_count=1)
  for _ in range(5):
    next(first)
  state = first.get_state()
  expected = [next(first) for _ in range(4)]
  resumed, _ = pipeline.mixture_iterator(small_store, spec, config, process_index=0, process_count=1)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for name in want:
      np.testing.assert_array_equal(got[name], want[name])


def test_hosts_read_disjoint_slices(small_store):
  spec = mixtures.SourceWeights.from_mapping({small_store.sources[0]: 1.0})
  config = _config(shuffle=False)
  a, _ = pipeline.mixture_iterator(small_store, spec, config, process_index=0, process_count=2)
  b, _ = pipeline.mixture_iterator(small_store, spec, config, process_index=1, process_count=2)
  ba, bb = next(a), next(b)
  assert ba["decoder_target_tokens"].shape == (4, SEQ)
  assert not np.array_equal(ba["decoder_target_tokens"], bb["decoder_target_tokens"])


def test_global_batch_is_sharded_over_data_axes(small_store):
  spec = mixtures.SourceWeights.from_mapping({small_store.sources[0]: 1.0})
  iterator, _ = pipeline.mixture_iterator(small_store, spec, _config(), process_index=0, process_count=1)
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"))
  batch = pipeline.to_global_batch(next(iterator), mesh)
  assert set(batch) == set(pipeline.DEVICE_FEATURES)
  tokens = batch["decoder_target_tokens"]
  assert tokens.shape == (8, SEQ)
  assert tokens.sharding.spec[0] == ("data", "fsdp")
  assert {s.data.shape for s in tokens.addressable_shards} == {(2, SEQ)}


def test_bad_batch_geometry_fails_before_reading(small_store):
  spec = mixtures.SourceWeights.from_mapping({small_store.sources[0]: 1.0})
  with pytest.raises(ValueError, match="not divisible by 3 hosts"):
    pipeline.mixture_iterator(small_store, spec, _config(), process_index=0, process_count=3)
  with pytest.raises(ValueError, match="must be positive"):
    pipeline.PipelineConfig(batch_size=0, seq_len=SEQ)


def test_mixture_over_missing_source_fails(small_store):
  spec = mixtures.SourceWeights.from_mapping({"law": 1.0})
  with pytest.raises(ValueError, match="does not hold"):
    pipeline.mixture_iterator(small_store, spec, _config(), process_index=0, process_count=1)

