"""The on-the-fly seqio input pipeline: a registered Mixture, tokenized and packed by seqio, as host batches.

Same batch layout as `pipeline` (seqio's decoder feature names). The iterator's state is the number of
batches consumed: the dataset is deterministic for a seed, so `set_state` rebuilds it and skips ahead
(exact, at the cost of re-reading what was skipped). Prefer the pre-tokenized grain path for training;
this path is for seqio-based tooling and as the reference the fast path is measured against.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from visual_priors import console


class SeqioBatches:
  """Iterator over packed host batches of a seqio Task or Mixture, with get_state()/set_state()."""

  def __init__(self, name: str, seq_len: int, batch_size: int, split: str = "train", seed: int = 42,
               shuffle: bool = True, num_epochs: int | None = None, process_index: int = 0,
               process_count: int = 1):
    if batch_size % process_count:
      raise ValueError(f"Global batch {batch_size} is not divisible by {process_count} hosts.")
    self._args = dict(name=name, seq_len=seq_len, batch=batch_size // process_count, split=split, seed=seed,
                      shuffle=shuffle, num_epochs=num_epochs, index=process_index, count=process_count)
    self._consumed = 0
    self._iterator = self._build(0)
    self._fresh = True  # the first batch of a new pipeline creates its ops, which log (console.LIBRARY_NOISE)

  def _build(self, skip: int):
    import seqio  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    a = self._args
    ds = seqio.get_dataset(
        a["name"], task_feature_lengths={"targets": a["seq_len"]},
        feature_converter=seqio.DecoderFeatureConverter(pack=True), dataset_split=a["split"],
        shuffle=a["shuffle"], num_epochs=a["num_epochs"], seed=a["seed"],
        shard_info=seqio.ShardInfo(a["index"], a["count"]), verbose=False)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options).batch(a["batch"], drop_remainder=True).skip(skip)
    return ds.as_numpy_iterator()

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._fresh:
      self._fresh = False
      with console.filtered_stderr():
        batch = next(self._iterator)
    else:
      batch = next(self._iterator)
    self._consumed += 1
    return {k: np.asarray(v, np.int32) for k, v in batch.items()}

  def get_state(self) -> dict:
    return {"batches_consumed": self._consumed, "args": dict(self._args)}

  def set_state(self, state: Mapping) -> None:
    if dict(state["args"]) != self._args:
      raise ValueError(f"Iterator state was saved for {state['args']}, not {self._args}.")
    self._consumed = int(state["batches_consumed"])
    self._iterator = self._build(self._consumed)
    self._fresh = True
