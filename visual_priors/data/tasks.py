"""seqio Tasks and Mixtures over a segment store: one Task per source, per category and its complement.

Task names carry the store key so several stores can be registered in one process:
`vp.<key>.src.<source>`, `vp.<key>.cat.<category>`, `vp.<key>.cat.not-<category>` (hyphens become
underscores, as seqio names allow only word characters, '.', ':' and '#'). Tasks read the segment text
and tokenize on the fly with the store's SentencePiece vocabulary, appending EOS.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from visual_priors.data import categories, components, mixtures, segments, vocab

def _tf():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf


def _seqio():
  import seqio  # pylint: disable=import-outside-toplevel
  return seqio


def store_key(store: segments.SegmentStore) -> str:
  return store.root.name.split("-")[-1][:8]


def _clean(name: str) -> str:
  return re.sub(r"[^\w.:#]", "_", name)


def task_name(store: segments.SegmentStore, kind: str, name: str) -> str:
  return _clean(f"vp.{store_key(store)}.{kind}.{name}")


def _features():
  tf = _tf()
  return {"text": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.FixedLenFeature([], tf.int64)}


def _parse(serialized):
  return _tf().io.parse_single_example(serialized, _features())


def _keeps(predicate):
  tf = _tf()

  def keep(example):
    ok = tf.constant(True)
    for category, wanted in predicate:
      bits = sum(1 << categories.LABELS.index(l) for l in categories.labels_of(category))
      member = tf.not_equal(tf.bitwise.bitwise_and(example["labels"], bits), 0)
      ok = tf.logical_and(ok, tf.equal(member, wanted))
    return ok
  return keep


def _component_dataset(store, component: components.Component, split: str, shuffle_files: bool,
                       seed: int | None):
  """Segments of the component, sources interleaved in proportion to their qualifying counts."""
  tf = _tf()
  per_source = components.component_indices(store, component, split)
  datasets, weights = [], []
  for source, indices in per_source.items():
    ds = tf.data.TFRecordDataset(str(store.path(source, split, "tfrecord"))).map(_parse)
    if component.predicate:
      ds = ds.filter(_keeps(component.predicate))
    datasets.append(ds)
    weights.append(float(indices.size))
  if len(datasets) == 1:
    return datasets[0]
  total = sum(weights)
  return tf.data.Dataset.sample_from_datasets(
      datasets, [w / total for w in weights], seed=seed, stop_on_empty_dataset=False)


def _register_task(store, name: str, component: components.Component) -> str:
  seqio = _seqio()
  if name in seqio.TaskRegistry.names():
    return name
  vocabulary = vocab.seqio_vocabulary(store.vocab_path)
  counts = {split: int(sum(ix.size for ix in components.component_indices(store, component, split).values()))
            for split in segments.SPLITS}
  if component.predicate or len(component.sources) > 1:
    source = seqio.FunctionDataSource(
        dataset_fn=lambda split, shuffle_files, seed=None: _component_dataset(
            store, component, split, shuffle_files, seed),
        splits=segments.SPLITS, num_input_examples=counts)
  else:  # a whole source: seqio's own file-based reader
    source = seqio.TFExampleDataSource(
        {split: str(store.path(component.sources[0], split, "tfrecord")) for split in segments.SPLITS},
        feature_description=_features(), num_input_examples=counts)
  seqio.TaskRegistry.add(
      name, source=source,
      output_features={"targets": seqio.Feature(vocabulary, add_eos=True, dtype=_tf().int32)},
      preprocessors=[functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text", "labels": "labels"}),
                     seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      shuffle_buffer_size=1000)
  return name


def register_tasks(store: segments.SegmentStore) -> list[str]:
  """Registers the per-source and per-category tasks of `store` (idempotent); returns their names."""
  store.check_vocab(store.vocab_path)
  names = []
  for source in store.sources:
    names.append(_register_task(store, task_name(store, "src", source),
                                components.Component(source, (source,), (), 1.0)))
  for category in categories.TABLE_CATEGORIES:
    for wanted in (True, False):
      predicate = ((category, wanted),)
      component = components.Component(components.predicate_name(predicate), tuple(store.sources),
                                        predicate, 1.0)
      try:
        names.append(_register_task(store, task_name(store, "cat", component.name), component))
      except ValueError:
        continue  # the local pool has no segment of this kind (e.g. every segment lacks the label)
  return names


def register_mixture(store: segments.SegmentStore, name: str, spec: mixtures.MixtureSpec,
                     pool: Sequence[str] | None = None) -> tuple[str, list[components.Component]]:
  """Registers `spec` over `store` as the seqio Mixture `vp.<key>.mix.<name>`; returns it and its plan."""
  seqio = _seqio()
  plan = components.plan_components(store, spec, "train", pool)
  tasks = []
  for component in plan:
    kind = "src" if not component.predicate else ("cat" if len(component.predicate) == 1 else "stratum")
    if component.predicate and set(component.sources) != set(store.sources):
      kind += "_pool_" + "_".join(sorted(component.sources))
    tasks.append((_register_task(store, task_name(store, kind, component.name), component),
                  component.example_rate))
  mixture_name = task_name(store, "mix", name)
  if mixture_name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(mixture_name)
  seqio.MixtureRegistry.add(mixture_name, tasks)
  return mixture_name, plan

