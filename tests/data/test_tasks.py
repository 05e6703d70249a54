"""Tests for visual_priors.data.tasks and the on-the-fly seqio pipeline."""

import numpy as np
import pytest

from visual_priors.data import components, mixtures, tasks


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


# --- `seqio:NAME` ---------------------------------------------------------------------------------------


def _texts_of(store, source, split):
  from visual_priors.data import vocab
  import grain
  processor = vocab.load_processor(store.vocab_path)
  records = grain.sources.ArrayRecordDataSource([str(store.path(source, split, "array_record"))])
  return [processor.decode(np.frombuffer(records[i], np.int32)[:-1].tolist()) for i in range(len(records))]


def test_a_user_task_is_cached_once_in_the_store_layout(register_user_task, user_vocab, user_texts, tmp_path):
  from visual_priors.data import vocab
  train, validation = user_texts(300, 1), user_texts(40, 2)
  name = register_user_task("user_notes_cache", train, validation)
  store, spec, identity = tasks.resolve(f"seqio:{name}", cache_dir=tmp_path, log=lambda _: None)
  assert store.root.parent == tmp_path / "seqio" and store.root.name.startswith(name + "-")
  assert store.sources == [name] and spec == mixtures.SourceWeights({name: 1.0})
  assert store.manifest["vocab"]["sha256"] == vocab.vocab_sha256(user_vocab)  # the task's model, copied in
  assert _texts_of(store, name, "train") == train and _texts_of(store, name, "validation") == validation
  assert not store.masks(name, "train").any()  # unlabelled
  store.verify(log=lambda _: None)
  assert identity["tasks"][name]["content_hash"].startswith(store.root.name.rsplit("-", 1)[1])
  assert tasks.mixture_identity(f"seqio:{name}") == identity

  stamp = (store.root / "manifest.json").stat().st_mtime_ns
  lines = []
  again = tasks.resolve(f"seqio:{name}", cache_dir=tmp_path, log=lines.append).store
  assert again.root == store.root and (again.root / "manifest.json").stat().st_mtime_ns == stamp
  assert lines == [f"seqio {name}: cache {store.root.name} up to date"]

  register_user_task(name, train[:-1], validation)  # the task changed: a new cache
  changed = tasks.resolve(f"seqio:{name}", cache_dir=tmp_path, log=lambda _: None).store
  assert changed.root != store.root and len(_texts_of(changed, name, "train")) == len(train) - 1


def test_a_mixture_of_user_tasks_weights_them_by_its_rates(register_user_task, user_texts, tmp_path):
  import seqio
  a = register_user_task("user_notes_a", user_texts(60, 3), user_texts(10, 4))
  b = register_user_task("user_notes_b", [t.upper() for t in user_texts(60, 5)], user_texts(10, 6))
  if "user_notes_ab" in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove("user_notes_ab")
  seqio.MixtureRegistry.add("user_notes_ab", [(a, 1.0), (b, 3.0)])
  store, spec, identity = tasks.resolve("seqio:user_notes_ab", cache_dir=tmp_path, log=lambda _: None)
  assert sorted(store.sources) == [a, b]
  plan = components.plan_components(store, spec)
  assert [c.name for c in plan] == [a, b]
  assert [c.example_rate for c in plan] == pytest.approx([0.25, 0.75])  # seqio rates sample examples
  assert sum(c.rate for c in plan) == pytest.approx(1.0)
  assert {t: v["rate"] for t, v in identity["tasks"].items()} == {a: 0.25, b: 0.75}
  store.verify(log=lambda _: None)  # its sources are the task caches' own files


def test_seqio_store_names_give_the_plain_mixture_plan(small_store):
  spec = mixtures.parse_spec("cat:reasoning=0.6,visual=0.15")
  name, _ = tasks.register_mixture(small_store, "test_vision_favourable", spec)
  store, got, identity = tasks.resolve(f"seqio:{name}", small_store)
  assert store is small_store and got == spec
  assert components.plan_components(store, got) == components.plan_components(small_store, spec)
  assert identity == {"seqio": name, "store": small_store.root.name,
                      "plan": {"categories": {"reasoning": 0.6, "visual": 0.15}}}
  # A store's own source and category tasks register themselves from their names.
  code = tasks.task_name(small_store, "src", "code")
  assert tasks.resolve(f"seqio:{code}", small_store).spec == mixtures.parse_spec("code=1")
  not_visual = tasks.task_name(small_store, "cat", "not-visual")
  assert (components.plan_components(small_store, tasks.resolve(f"seqio:{not_visual}", small_store).spec)
          == components.plan_components(small_store, mixtures.parse_spec("cat:visual=0")))


def test_a_seqio_mixture_over_store_tasks_uses_their_components(small_store):
  import seqio
  tasks.register_tasks(small_store)
  code, math = (tasks.task_name(small_store, "src", s) for s in ("code", "math"))
  if "test_store_code_math" in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove("test_store_code_math")
  seqio.MixtureRegistry.add("test_store_code_math", [(code, 1.0), (math, 1.0)])
  store, spec, _ = tasks.resolve("seqio:test_store_code_math", small_store)
  plan = components.plan_components(store, spec)
  assert store is small_store and [c.name for c in plan] == ["code", "math"]
  assert [c.example_rate for c in plan] == pytest.approx([0.5, 0.5])


def test_seqio_names_fail_clearly(register_user_task, user_texts, small_store, tmp_path):
  import seqio
  import tensorflow as tf
  from visual_priors.names import UnknownNameError
  name = register_user_task("user_notes_errors", user_texts(20, 7), user_texts(5, 8))
  with pytest.raises(UnknownNameError, match="Did you mean 'user_notes_errors'"):
    tasks.resolve("seqio:user_notes_erors", cache_dir=tmp_path)
  with pytest.raises(ValueError, match="names no seqio Task"):
    tasks.resolve("seqio:", cache_dir=tmp_path)
  with pytest.raises(ValueError, match="resolved against the seqio registry"):
    mixtures.parse_spec(f"seqio:{name}")
  empty = register_user_task("user_notes_empty", user_texts(20, 7), [])
  with pytest.raises(ValueError, match="yields no validation segment"):
    tasks.resolve(f"seqio:{empty}", cache_dir=tmp_path, log=lambda _: None)
  assert not list((tmp_path / "seqio").glob("user_notes_empty-*"))  # nothing half-written
  inputs = register_user_task("user_notes_inputs", ["x"], ["y"], output_features={
      "inputs": seqio.Feature(seqio.PassThroughVocabulary(10), dtype=tf.int32)})
  with pytest.raises(ValueError, match="no 'targets' output feature"):
    tasks.resolve(f"seqio:{inputs}", cache_dir=tmp_path)
  bytes_task = register_user_task("user_notes_bytes", ["x"], ["y"], output_features={
      "targets": seqio.Feature(seqio.ByteVocabulary(), dtype=tf.int32)})
  with pytest.raises(ValueError, match="not a seqio.SentencePieceVocabulary"):
    tasks.resolve(f"seqio:{bytes_task}", cache_dir=tmp_path)
  tasks.register_tasks(small_store)
  code = tasks.task_name(small_store, "src", "code")
  if "test_mixed_kinds" in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove("test_mixed_kinds")
  seqio.MixtureRegistry.add("test_mixed_kinds", [(code, 1.0), (name, 1.0)])
  with pytest.raises(ValueError, match="mixes tasks of a segment store"):
    tasks.resolve("seqio:test_mixed_kinds", small_store, cache_dir=tmp_path)
