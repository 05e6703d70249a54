"""Pre-training data from a built segment store: the mixture's train iterator and per-component eval sets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax

from visual_priors.data import cache, components, mixtures, pipeline, segments, tasks, vocab
from visual_priors.train import trainer


@dataclasses.dataclass(frozen=True)
class MixtureData:
  train_data: Callable[[], trainer.DataIterator]
  eval_sets: trainer.EvalSets  # one per mixture component, on the validation split
  identity: dict[str, Any]  # what the manifest records about the data
  vocab_size: int
  meter: pipeline.ProportionMeter  # realised token shares of what train_data() yielded in this process
  store: segments.SegmentStore | None = None  # the store read: a `seqio:` user task's is its cache store

  def report(self) -> dict[str, Any]:
    """Nominal vs realised token share per mixture component, for the run manifest."""
    return {"proportions": self.meter.report()}


def _validation_set(store: segments.SegmentStore, component: components.Component,
                    config: pipeline.PipelineConfig) -> Callable[[], Any]:
  def batches():
    single = dataclasses.replace(component, rate=1.0)
    return iter(pipeline.make_dataset(store, [single], config, jax.process_index(), jax.process_count()))

  return batches


def mixture_data(store: segments.SegmentStore | None, mixture: str, *, batch_size: int, seq_len: int,
                 eval_batch_size: int, seed: int, cache_dir=None) -> MixtureData:
  """`mixture` is anything `mixtures.parse_spec` reads (a paper mix, NAME=W,... or cat:CATEGORY=P) or
  `seqio:NAME`, a registered seqio Task or Mixture (`tasks.resolve`: our tasks read `store`, a user's Task reads
  its cache store, built on first use; `store` may then be None).

  The store is verified first (`SegmentStore.verify`: its vocabulary and data files against its manifest), so
  a wrong vocabulary or a damaged file fails before any compute."""
  seqio_identity = None
  if tasks.is_seqio(mixture):
    store, spec, seqio_identity = tasks.resolve(mixture, store, cache_dir=cache_dir)
  elif store is None:
    raise ValueError(f"Mixture {mixture!r} reads a segment store; none was given.")
  else:
    spec = mixtures.parse_spec(mixture, known_sources=store.sources)
  store.verify()
  train_config = pipeline.PipelineConfig(batch_size=batch_size, seq_len=seq_len, seed=seed)
  eval_config = pipeline.PipelineConfig(batch_size=eval_batch_size, seq_len=seq_len, split="validation",
                                        seed=seed, shuffle=False, num_epochs=1)
  plan = components.plan_components(store, spec, "train")

  meter = pipeline.ProportionMeter(plan)

  def train_data() -> trainer.DataIterator:
    iterator, _ = pipeline.mixture_iterator(store, spec, train_config)
    return pipeline.MeteredIterator(iterator, meter)

  eval_sets = {component.name: _validation_set(store, component, eval_config)
               for component in components.plan_components(store, spec, "validation")}
  identity = {
      "segment_store": str(store.root),
      "segment_store_manifest_sha256": cache.sha256_file(store.root / "manifest.json"),
      "vocab_sha256": vocab.vocab_sha256(store.vocab_path),  # the file used (verified to be the store's)
      "mixture": mixture,
      "components": [{"name": c.name, "rate": c.rate, "example_rate": c.example_rate,
                      "sources": list(c.sources)} for c in plan],
  }
  if seqio_identity is not None:
    identity["seqio"] = seqio_identity
  vocab_size = vocab.load_processor(store.vocab_path).get_piece_size()
  return MixtureData(train_data=train_data, eval_sets=eval_sets, identity=identity, vocab_size=vocab_size,
                     meter=meter, store=store)


def split_trackable(eval_sets: Mapping[str, Callable[[], Iterable]]) -> tuple[dict[str, Callable[[], Iterable]],
                                                                           list[str]]:
  """(the validation sets holding at least one full eval batch, the names of those that hold none)."""
  kept, skipped = {}, []
  for name, make_batches in eval_sets.items():
    if next(iter(make_batches()), None) is None:
      skipped.append(name)
    else:
      kept[name] = make_batches
  return kept, skipped


def skipped_line(skipped: Sequence[str], eval_batch_size: int) -> str:
  return (f"validation loss not tracked for {', '.join(skipped)}: less than one batch of {eval_batch_size} rows "
          "in its validation split")

