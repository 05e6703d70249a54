"""seqio as the front door of the pre-training data: Tasks and Mixtures over a segment store, and `seqio:NAME`.

Task names carry the store key so several stores can be registered in one process:
`vp.<key>.src.<source>`, `vp.<key>.cat.<category>`, `vp.<key>.cat.not-<category>` (hyphens become
underscores, as seqio names allow only word characters, '.', ':' and '#'). Tasks read the segment text
and tokenize on the fly with the store's SentencePiece vocabulary, appending EOS.

A mixture string `seqio:NAME` (data.mixture, `pretrain --mixture`) names a registered seqio Task or Mixture and
trains through the grain reader (`resolve`): a Task registered here maps back to its component of its store, so
the pre-tokenized store is its cache; any other Task (a user's, over any source, with a SentencePiece
vocabulary on "targets") is materialised once into a store of the same layout under
`<cache>/seqio/<task>-<content hash>` (one source per task, its "targets" cut into segments with EOS,
unlabelled), which training then reads. A Mixture's rates are seqio's: example rates.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from visual_priors import names as names_lib
from visual_priors.data import cache, categories, components, mixtures, segments, vocab

PREFIX = "seqio:"
CACHE_VERSION = 1
# What register_tasks / register_mixture registered, so `seqio:NAME` trains from the store itself.
_STORE_TASKS: dict[str, tuple[pathlib.Path, components.Component]] = {}
_STORE_MIXTURES: dict[str, tuple[pathlib.Path, mixtures.MixtureSpec, tuple[str, ...] | None]] = {}

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
    _STORE_TASKS.setdefault(name, (store.root, component))
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
  _STORE_TASKS[name] = (store.root, component)
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
  _STORE_MIXTURES[mixture_name] = (store.root, spec, tuple(pool) if pool else None)
  return mixture_name, plan



# --- `seqio:NAME`: a registered Task or Mixture as a store and a plan for the grain reader ------------------


def is_seqio(text: Any) -> bool:
  """Whether a mixture string is of the `seqio:NAME` form."""
  return isinstance(text, str) and text.strip().startswith(PREFIX)


def import_modules(modules: Sequence[str]) -> None:
  """Imports the Python modules that register a user's seqio Tasks and Mixtures (as t5x's
  MIXTURE_OR_TASK_MODULE does), so `seqio:NAME` finds them in this process."""
  import importlib  # pylint: disable=import-outside-toplevel
  for module in modules:
    try:
      importlib.import_module(module)
    except ImportError as error:
      raise ValueError(f"Cannot import the seqio task module {module!r}: {error}. It must be importable (on "
                       "PYTHONPATH or installed).") from None


def _name_of(text: str) -> str:
  name = text.strip().removeprefix(PREFIX).strip()
  if not name:
    raise ValueError(f"Mixture {text!r} names no seqio Task or Mixture; write seqio:NAME.")
  return name


@dataclasses.dataclass(frozen=True)
class _Found:
  """What a `seqio:` name stands for: a store and a plan of it (our tasks), or user Tasks and their rates."""
  store: segments.SegmentStore | None = None
  spec: mixtures.MixtureSpec | components.FixedComponents | None = None
  user: tuple[tuple[Any, float], ...] = ()  # (seqio Task, example rate)


def _store_at(root: pathlib.Path, store: segments.SegmentStore | None) -> segments.SegmentStore:
  if store is not None and store.root.resolve() == pathlib.Path(root).resolve():
    return store
  return segments.SegmentStore(root)


def _component_spec(component: components.Component, store: segments.SegmentStore):
  """The plain mixture a registered component is (so the plan is the one its mixture string gives)."""
  if not component.predicate and len(component.sources) == 1:
    return mixtures.SourceWeights({component.sources[0]: 1.0})
  if len(component.predicate) == 1 and set(component.sources) == set(store.sources):
    category, wanted = component.predicate[0]
    return mixtures.CategoryProportions({category: 1.0 if wanted else 0.0})
  return components.FixedComponents((dataclasses.replace(component, example_rate=1.0),))


def _store_mixture(mixture, pairs: Sequence[tuple[Any, float]], store) -> _Found:
  roots = {_STORE_TASKS[t.name][0] for t, _ in pairs}
  if len(roots) > 1:
    raise ValueError(f"seqio Mixture {mixture.name!r} mixes tasks of several segment stores "
                     f"({sorted(map(str, roots))}); the grain reader reads one store per run.")
  chosen, seen = [], set()
  for task, rate in pairs:
    component = _STORE_TASKS[task.name][1]
    name = component.name if component.name not in seen else task.name  # keep component names unique
    seen.add(name)
    chosen.append(dataclasses.replace(component, name=name, example_rate=rate))
  return _Found(_store_at(roots.pop(), store), components.FixedComponents(tuple(chosen)))


def _find(name: str, store: segments.SegmentStore | None) -> _Found:
  seqio = _seqio()
  if (store is not None and name.startswith(f"vp.{store_key(store)}.") and name not in _STORE_TASKS
      and name not in _STORE_MIXTURES):
    register_tasks(store)  # the store's own tasks are reachable by name from a fresh process
  if name in _STORE_MIXTURES:
    root, spec, pool = _STORE_MIXTURES[name]
    found = _store_at(root, store)
    if pool and set(pool) != set(found.sources):
      spec = components.FixedComponents(tuple(components.plan_components(found, spec, "train", pool)))
    return _Found(found, spec)
  if name in _STORE_TASKS:
    root, component = _STORE_TASKS[name]
    found = _store_at(root, store)
    return _Found(found, _component_spec(component, found))
  if name in seqio.MixtureRegistry.names():
    mixture = seqio.get_mixture_or_task(name)
    pairs = [(t, float(mixture.get_rate(t))) for t in mixture.tasks]
    pairs = [(t, r) for t, r in pairs if r > 0]
    if not pairs:
      raise ValueError(f"seqio Mixture {name!r} gives no task a positive rate.")
    ours = [t.name in _STORE_TASKS for t, _ in pairs]
    if all(ours):
      return _store_mixture(mixture, pairs, store)
    if any(ours):
      store_tasks = [t.name for (t, _), o in zip(pairs, ours) if o]
      other_tasks = [t.name for (t, _), o in zip(pairs, ours) if not o]
      raise ValueError(
          f"seqio Mixture {name!r} mixes tasks of a segment store ({store_tasks}) with other tasks ({other_tasks}); "
          "train from one kind: add the other sources to the segment store (data build), or register the store's "
          "text as your own seqio Task.")
    return _Found(user=tuple(pairs))
  if name in seqio.TaskRegistry.names():
    return _Found(user=((seqio.get_mixture_or_task(name), 1.0),))
  known = [*seqio.TaskRegistry.names(), *seqio.MixtureRegistry.names()]
  near = names_lib.closest(name, known)
  hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
  raise names_lib.UnknownNameError(
      f"Unknown seqio Task or Mixture {name!r}.{hint} {len(known)} are registered in this process; register yours "
      "with seqio.TaskRegistry.add / seqio.MixtureRegistry.add (in a module the run imports) before training.")


def _segment_config(store: segments.SegmentStore | None) -> segments.SegmentConfig:
  if store is None:
    return segments.SegmentConfig()
  fields = {f.name for f in dataclasses.fields(segments.SegmentConfig)}
  return segments.SegmentConfig(**{k: v for k, v in store.manifest["config"].items() if k in fields})


def _targets_vocabulary(task):
  """The task's "targets" SentencePiece vocabulary, or a clear error."""
  seqio = _seqio()
  feature = task.output_features.get("targets")
  if feature is None:
    raise ValueError(f"seqio Task {task.name!r} has no 'targets' output feature (it has "
                     f"{sorted(task.output_features)}); pre-training reads a task's text as its tokenised 'targets'.")
  vocabulary = feature.vocabulary
  if not isinstance(vocabulary, seqio.SentencePieceVocabulary):
    raise ValueError(f"seqio Task {task.name!r} tokenises 'targets' with {type(vocabulary).__name__}, not a "
                     "seqio.SentencePieceVocabulary; the segment store needs a SentencePiece model file.")
  if vocabulary.eos_id != vocab.EOS_ID:
    raise ValueError(f"seqio Task {task.name!r}: its SentencePiece model has EOS id {vocabulary.eos_id}; the store and "
                     f"the models use seqio's ids (pad {vocab.PAD_ID}, EOS {vocab.EOS_ID}). Train it with "
                     f"pad_id={vocab.PAD_ID}, eos_id={vocab.EOS_ID}.")
  missing = [s for s in segments.SPLITS if s not in task.splits]
  if missing:
    raise ValueError(f"seqio Task {task.name!r} has no {' or '.join(missing)} split (it has {sorted(task.splits)}); "
                     f"pre-training needs {' and '.join(segments.SPLITS)}.")
  return vocabulary


def _read_bytes(path: str) -> bytes:
  with _tf().io.gfile.GFile(path, "rb") as f:  # local paths and gs:// alike
    return f.read()


def _describe(fn) -> Any:
  """A stable description of a preprocessor: qualified name, code and bound arguments (no object addresses)."""
  if isinstance(fn, functools.partial):
    bound = re.sub(r" at 0x[0-9a-f]+", "", repr((fn.args, sorted(fn.keywords.items()))))
    return {"fn": _describe(fn.func), "bound": bound}
  code = getattr(fn, "__code__", None)
  digest = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16] if code else ""
  return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}:{digest}"


def _update_with_example(digest, example: dict) -> None:
  for key in sorted(example):
    value = np.asarray(example[key])
    digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
    if value.dtype == object:
      for item in value.ravel():
        digest.update(item if isinstance(item, bytes) else repr(item).encode())
        digest.update(b"\0")
    else:
      digest.update(value.tobytes())


def _source_fingerprint(source, split: str) -> Any:
  """File sources: each file's name, size and mtime; any other source: a hash of its raw examples (read once)."""
  seqio, tf = _seqio(), _tf()
  if isinstance(source, seqio.FileDataSource):
    patterns = source._split_to_filepattern[split]  # pylint: disable=protected-access
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    return [(f, tf.io.gfile.stat(f).length, tf.io.gfile.stat(f).mtime_nsec) for f in files]
  digest = hashlib.sha256()
  for example in source.get_dataset(split=split, shuffle=False).as_numpy_iterator():
    _update_with_example(digest, example)
  return digest.hexdigest()


def task_content_hash(task, config: segments.SegmentConfig = segments.SegmentConfig()) -> str:
  """What a user Task's cache holds, hashed: its name, source data, preprocessors, vocabulary and the segment
  settings. A changed source, preprocessor or vocabulary gives a new cache."""
  vocabulary = _targets_vocabulary(task)
  feature = task.output_features["targets"]
  return cache.sha256_json({
      "version": CACHE_VERSION, "task": task.name, "segments": dataclasses.asdict(config),
      "vocab": hashlib.sha256(_read_bytes(vocabulary.sentencepiece_model_file)).hexdigest(),
      "add_eos": bool(feature.add_eos), "preprocessors": [_describe(p) for p in task.preprocessors],
      "source": {split: _source_fingerprint(task.source, split) for split in segments.SPLITS},
  })


def _cache_vocab(model: bytes, cache_dir) -> pathlib.Path:
  """The task's SentencePiece model, copied into the data cache's vocab/ (content-addressed), so the cache
  store carries its own vocabulary (and a gs:// model is read once)."""
  sha = hashlib.sha256(model).hexdigest()
  out = cache.cache_root(cache_dir) / "vocab" / f"seqio-{sha[:12]}"
  if not (out / "spm.model").is_file() or vocab.vocab_sha256(out / "spm.model") != sha:
    with cache.atomic_directory(out) as tmp:
      (tmp / "spm.model").write_bytes(model)
  return out / "spm.model"


class _Unlabelled:
  """The labeller of a task cache: no labels (mask 0), so category mixtures do not apply to user tasks."""
  name = "none (seqio task)"

  def label(self, texts: Sequence[str]) -> list[tuple[str, ...]]:
    return [() for _ in texts]


def _task_segments(task, processor, config: segments.SegmentConfig, split: str, eos: int,
                   batch: int = 256) -> Iterator[tuple[str, list[int]]]:
  """(text, ids with EOS) of each segment of the task's tokenised targets, in the task's order."""
  dataset = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1, use_cached=False,
                             try_in_mem_cache=False)
  pending: list[list[int]] = []
  for example in dataset.as_numpy_iterator():
    ids = np.asarray(example["targets"]).tolist()
    if ids and ids[-1] == eos:
      ids = ids[:-1]
    for piece in segments._cut(ids, config.segment_length - 1, config.min_tokens):  # pylint: disable=protected-access
      pending.append(piece)
      if len(pending) >= batch:
        yield from zip(processor.decode(pending), (p + [eos] for p in pending))
        pending = []
  if pending:
    yield from zip(processor.decode(pending), (p + [eos] for p in pending))


def cache_dir_of(task_name: str, content_hash: str, cache_dir=None) -> pathlib.Path:
  return cache.cache_root(cache_dir) / "seqio" / f"{_clean(task_name)}-{content_hash[:12]}"


def materialise(task, config: segments.SegmentConfig = segments.SegmentConfig(), cache_dir=None,
                log: Callable[[str], None] = print, content_hash: str | None = None) -> segments.SegmentStore:
  """The segment store caching a user Task (one source named after the task); built once, atomically."""
  content_hash = content_hash or task_content_hash(task, config)
  out = cache_dir_of(task.name, content_hash, cache_dir)
  if (out / "manifest.json").exists():
    log(f"seqio {task.name}: cache {out.name} up to date")
    return segments.SegmentStore(out)
  vocabulary = _targets_vocabulary(task)
  model_path = _cache_vocab(_read_bytes(vocabulary.sentencepiece_model_file), cache_dir)
  processor = vocab.load_processor(model_path)
  source = _clean(task.name)
  with cache.atomic_directory(out) as tmp:
    (tmp / source).mkdir()
    splits = {}
    for split in segments.SPLITS:
      splits[split] = segments._write_split(  # pylint: disable=protected-access
          tmp / source, split, _task_segments(task, processor, config, split, vocabulary.eos_id), _Unlabelled(), 256)
      if splits[split]["segments"] == 0:
        raise ValueError(f"seqio Task {task.name!r} yields no {split} segment (its {split} split is empty or every "
                         f"example is shorter than min_tokens={config.min_tokens} tokens).")
    cache.write_json_atomic(tmp / "manifest.json", {
        "version": segments.STORE_VERSION, "config": dataclasses.asdict(config),
        "vocab": {"path": str(model_path), "sha256": vocab.vocab_sha256(model_path),
                  "size": processor.get_piece_size()},
        "labeller": _Unlabelled.name, "seqio": {"task": task.name, "content_hash": content_hash},
        "sources": {source: {"splits": splits}},
    })
  log(f"seqio {task.name}: cached " + ", ".join(f"{s} {v['segments']} segments / {v['tokens']:,} tokens"
                                                for s, v in splits.items()) + f" in {out}")
  return segments.SegmentStore(out)


def _user_store(name: str, stores: Sequence[segments.SegmentStore], hashes: Sequence[str],
                cache_dir) -> segments.SegmentStore:
  """One store over several task caches (a Mixture of user Tasks): a manifest and links to their sources."""
  if len(stores) == 1:
    return stores[0]
  shas = {s.manifest["vocab"]["sha256"] for s in stores}
  if len(shas) > 1:
    raise ValueError(f"The tasks of seqio Mixture {name!r} use different SentencePiece models; one run trains one "
                     "vocabulary.")
  out = cache_dir_of(name, cache.sha256_json(sorted(hashes)), cache_dir)
  if not (out / "manifest.json").exists():
    with cache.atomic_directory(out) as tmp:
      entries = {}
      for store in stores:
        for source, entry in store.manifest["sources"].items():
          (tmp / source).symlink_to(pathlib.Path("..") / store.root.name / source)
          entries[source] = entry
      cache.write_json_atomic(tmp / "manifest.json", {**stores[0].manifest, "sources": entries,
                                                      "seqio": {"mixture": name, "content_hashes": list(hashes)}})
  return segments.SegmentStore(out)


def _canonical(spec) -> dict[str, Any]:
  if isinstance(spec, mixtures.SourceWeights):
    return {"sources": {s: round(w, 9) for s, w in spec.weights.items()}}
  if isinstance(spec, mixtures.CategoryProportions):
    return {"categories": {c: round(float(p), 9) for c, p in spec.proportions.items()}}
  return {"components": [{"name": c.name, "sources": list(c.sources), "predicate": [list(p) for p in c.predicate],
                          "example_rate": round(c.example_rate, 9)} for c in spec.components]}


class Resolved(NamedTuple):
  store: segments.SegmentStore  # what the grain reader reads: the registering store, or a user task's cache
  spec: Any  # mixtures.MixtureSpec | components.FixedComponents, for components.plan_components
  identity: dict[str, Any]  # mixture_identity(text, store)


def _identity(name: str, found: _Found, config: segments.SegmentConfig, hashes: Sequence[str]) -> dict[str, Any]:
  if found.store is not None:
    return {"seqio": name, "store": found.store.root.name, "plan": _canonical(found.spec)}
  total = sum(r for _, r in found.user)
  return {"seqio": name, "segments": dataclasses.asdict(config),
          "tasks": {t.name: {"content_hash": h, "rate": round(r / total, 9)} for (t, r), h in zip(found.user, hashes)}}


def resolve(text: str, store: segments.SegmentStore | None = None, *, cache_dir=None,
            log: Callable[[str], None] = print) -> Resolved:
  """(store, spec, identity) of `seqio:NAME`: the store the grain reader reads and the spec of its plan. `store`
  (data.store; may be None for user tasks) sets the segment settings of user-task caches and lets the
  `vp.<its key>.*` names register themselves. User tasks are materialised here on first use."""
  name = _name_of(text)
  found = _find(name, store)
  config = _segment_config(store)
  if found.store is not None:
    return Resolved(found.store, found.spec, _identity(name, found, config, ()))
  hashes = [task_content_hash(task, config) for task, _ in found.user]
  built = [materialise(task, config, cache_dir, log, h) for (task, _), h in zip(found.user, hashes)]
  merged = _user_store(name, built, hashes, cache_dir)
  if len(found.user) == 1:
    spec = mixtures.SourceWeights({_clean(found.user[0][0].name): 1.0})
  else:
    spec = components.FixedComponents(tuple(
        components.Component(_clean(t.name), (_clean(t.name),), (), 0.0, example_rate=r) for t, r in found.user))
  return Resolved(merged, spec, _identity(name, found, config, hashes))


def mixture_identity(text: str, store: segments.SegmentStore | None = None) -> dict[str, Any]:
  """What a stage key should hash for `seqio:NAME`, building nothing: for our tasks the store's directory name
  and the plan; for user tasks the segment settings and each task's content hash (what its cache holds) and rate."""
  name = _name_of(text)
  found = _find(name, store)
  config = _segment_config(store)
  return _identity(name, found, config, [task_content_hash(t, config) for t, _ in found.user])
