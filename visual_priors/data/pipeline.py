"""The pre-tokenized input pipeline: a mixture over a segment store -> packed (batch, length) int32 batches.

grain reads token ids from each source's ArrayRecord file, shuffles every component by seed (reshuffled each
epoch), repeats it, interleaves components by their rates (`MapDataset.mix`, deterministic), keeps this host's
slice, packs segments first-fit into rows of `seq_len`, and batches. Iterators support `get_state()` /
`set_state()`, so a checkpoint restores the exact next batch. Batches use seqio's decoder feature names;
`component_ids` (1 + the component index per token, 0 = padding) stays on the host for proportion logging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from visual_priors.data import components, mixtures, segments

DEVICE_FEATURES = ("decoder_input_tokens", "decoder_target_tokens", "decoder_segment_ids",
                   "decoder_positions", "decoder_loss_weights")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  batch_size: int  # global batch, in rows
  seq_len: int  # tokens per row
  split: str = "train"
  seed: int = 42
  packing_bins: int | None = None  # default: the host batch size
  shuffle: bool = True
  num_epochs: int | None = None  # None = repeat forever (training); 1 = one pass (evaluation)
  # Record reads: local ArrayRecord reads are cheap, and grain's read threads cost more than they save
  # on a small host (2 cores: 2.8M tokens/s with 0 threads, 1.0M with grain's default 16). Raise this
  # for remote storage (gs://).
  read_threads: int = 0
  read_prefetch: int = 0
  prefetch_batches: int = 2  # finished batches built ahead in a background thread (0 = none)

  def __post_init__(self):
    if self.batch_size <= 0 or self.seq_len <= 0:
      raise ValueError(f"batch_size={self.batch_size} and seq_len={self.seq_len} must be positive.")


class _SegmentReader:
  """Token ids of (source, record) pairs, read lazily from ArrayRecord (picklable for grain workers)."""

  def __init__(self, paths: Sequence[str]):
    self._paths = list(paths)
    self._sources = None

  def __call__(self, ref: np.ndarray) -> np.ndarray:
    if self._sources is None:
      import grain  # pylint: disable=import-outside-toplevel
      self._sources = [grain.sources.ArrayRecordDataSource([p]) for p in self._paths]
    return np.frombuffer(self._sources[ref[0]][int(ref[1])], np.int32)


def _component_dataset(store: segments.SegmentStore, component: components.Component, index: int,
                       config: PipelineConfig, max_len: int):
  import grain  # pylint: disable=import-outside-toplevel

  per_source = components.component_indices(store, component, config.split)
  sources = list(per_source)
  refs = np.concatenate([np.stack([np.full(ix.size, i, np.int64), ix], axis=1)
                         for i, ix in enumerate(per_source.values())])
  reader = _SegmentReader([str(store.path(s, config.split, "array_record")) for s in sources])
  tag = np.int32(index + 1)

  def load(ref):
    ids = reader(ref)[:max_len]
    return {"targets": ids, "component": np.full(ids.shape, tag, np.int32)}

  ds = grain.MapDataset.source(refs)
  if config.shuffle:
    ds = ds.shuffle(seed=config.seed + 7919 * index)
  return ds.repeat(config.num_epochs).map(load)


def _decoder_features(packed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  targets = packed["targets"].astype(np.int32)
  segment_ids = packed["targets_segment_ids"].astype(np.int32)
  inputs = np.zeros_like(targets)
  inputs[:, 1:] = targets[:, :-1]
  inputs[packed["targets_positions"] == 0] = 0  # each packed example starts from BOS = pad id 0
  return {
      "decoder_input_tokens": inputs,
      "decoder_target_tokens": targets,
      "decoder_segment_ids": segment_ids,
      "decoder_positions": packed["targets_positions"].astype(np.int32),
      "decoder_loss_weights": (segment_ids > 0).astype(np.int32),
      "component_ids": packed["component"].astype(np.int32),
  }


def host_batch_size(config: PipelineConfig, process_count: int) -> int:
  if config.batch_size % process_count:
    raise ValueError(f"Global batch {config.batch_size} is not divisible by {process_count} hosts.")
  return config.batch_size // process_count


def make_dataset(store: segments.SegmentStore, plan: Sequence[components.Component], config: PipelineConfig,
                 process_index: int = 0, process_count: int = 1):
  """A grain IterDataset of this host's packed batches for the planned mixture."""
  import grain  # pylint: disable=import-outside-toplevel

  if not plan:
    raise ValueError("The mixture plan has no components.")
  local_batch = host_batch_size(config, process_count)
  parts = [_component_dataset(store, c, i, config, config.seq_len) for i, c in enumerate(plan)]
  mixed = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, [c.example_rate for c in plan])
  mixed = mixed[process_index::process_count]
  packed = grain.experimental.FirstFitPackIterDataset(
      mixed.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                              prefetch_buffer_size=config.read_prefetch)),
      length_struct={"targets": config.seq_len, "component": config.seq_len},
      num_packing_bins=config.packing_bins or local_batch,
      seed=config.seed, shuffle_bins=config.shuffle, meta_features=("component",))
  batches = packed.batch(local_batch, drop_remainder=True).map(_decoder_features)
  if config.prefetch_batches:
    batches = grain.experimental.ThreadPrefetchIterDataset(batches, prefetch_buffer_size=config.prefetch_batches)
  return batches


def mixture_iterator(store: segments.SegmentStore, spec: mixtures.MixtureSpec, config: PipelineConfig,
                     pool: Sequence[str] | None = None, process_index: int | None = None,
                     process_count: int | None = None):
  """(iterator, plan) for a mixture spec; the iterator has get_state()/set_state()."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel
    process_index, process_count = jax.process_index(), jax.process_count()
  plan = components.plan_components(store, spec, config.split, pool)
  return iter(make_dataset(store, plan, config, process_index, process_count)), plan


class ProportionMeter:
  """Realised token share of each component, to compare with the nominal rates."""

  def __init__(self, plan: Sequence[components.Component]):
    self.plan = list(plan)
    self.tokens = np.zeros(len(plan), np.int64)

  def update(self, batch: Mapping[str, np.ndarray]) -> None:
    counts = np.bincount(batch["component_ids"].ravel(), minlength=len(self.plan) + 1)
    self.tokens += counts[1:len(self.plan) + 1]

  def report(self) -> list[dict]:
    total = max(int(self.tokens.sum()), 1)
    return [{"component": c.name, "nominal": c.rate, "realised": float(t) / total, "tokens": int(t)}
            for c, t in zip(self.plan, self.tokens)]

  def max_abs_error(self) -> float:
    return max(abs(r["realised"] - r["nominal"]) for r in self.report())


class MeteredIterator:
  """Passes batches through while a ProportionMeter counts them; keeps get_state()/set_state().

  Its state holds the meter's counts beside the inner iterator's, so a run resumed from a checkpoint counts
  every batch of the whole run exactly once (the ones before the checkpoint restored, the rest counted anew).
  """

  def __init__(self, iterator, meter: ProportionMeter):
    self._iterator, self.meter = iterator, meter

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._iterator)
    self.meter.update(batch)
    return batch

  def get_state(self):
    return {"iterator": self._iterator.get_state(), "meter_tokens": self.meter.tokens.tolist()}

  def set_state(self, state) -> None:
    if not (isinstance(state, dict) and set(state) == {"iterator", "meter_tokens"}):
      self._iterator.set_state(state)  # saved before the counts were kept: only the batches from here on count
      return
    tokens = np.asarray(state["meter_tokens"], np.int64)
    if tokens.shape != self.meter.tokens.shape:
      raise ValueError(f"The saved data state counts {tokens.size} mixture components, this mixture has "
                       f"{self.meter.tokens.size}; resume with the mixture the run was started with.")
    self._iterator.set_state(state["iterator"])
    self.meter.tokens = tokens


def format_proportions(rows: Sequence[dict]) -> str:
  lines = [f"{'component':<32} {'nominal':>8} {'realised':>9} {'tokens':>12}"]
  lines += [f"{r['component']:<32} {r['nominal']:>8.2%} {r['realised']:>9.2%} {r['tokens']:>12,}" for r in rows]
  return "\n".join(lines)


def to_global_batch(batch: Mapping[str, np.ndarray], mesh, data_axes: Sequence[str] = ("data", "fsdp"),
                    features: Sequence[str] = DEVICE_FEATURES):
  """This host's batch as global jax Arrays, rows sharded over the mesh's data axes (other keys dropped)."""
  import jax  # pylint: disable=import-outside-toplevel
  from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=import-outside-toplevel

  axes = tuple(a for a in data_axes if a in mesh.axis_names)
  sharding = NamedSharding(mesh, PartitionSpec(axes or None))
  out = {}
  for name in features:
    local = np.asarray(batch[name])
    global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    out[name] = jax.make_array_from_process_local_data(sharding, local, global_shape)
  return out

