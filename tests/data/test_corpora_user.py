"""User corpora declared as ConfigDicts: text files, JSONL and ArrayRecord round-trip through the build."""

from __future__ import annotations

import gzip
import json

import ml_collections
import pytest
from array_record.python import array_record_module

from visual_priors.data import corpora
from visual_priors.names import UnknownNameError


def _text(index: int) -> str:
  return " ".join([f"Document {index}: the red barn stands beside the slow brown river."] * 5)


def _build(tmp_path, config, **kwargs):
  lines = []
  manifests = corpora.build_corpora([config["name"]], cache_dir=tmp_path / "cache", user_corpora=[config],
                                    log=lines.append, **kwargs)
  return manifests, lines


def _texts(tmp_path, name):
  return sorted(d["text"] for split in corpora.SPLITS
                for d in corpora.read_documents(name, split, cache_dir=tmp_path / "cache"))


def test_jsonl_corpus_with_plain_and_gzipped_shards(tmp_path):
  texts = [_text(i) for i in range(8)]
  (tmp_path / "a.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in texts[:4]))
  with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
    for text in [*texts[4:], texts[0], "too short"]:  # A duplicate and a near-empty document.
      f.write(json.dumps({"body": text, "url": "http://example.com"}) + "\n")
  config = ml_collections.ConfigDict({
      "name": "my-crawl", "kind": "jsonl", "text_field": "body", "category": "web-crawl",
      "paths": [str(tmp_path / "*.jsonl"), str(tmp_path / "*.jsonl.gz")]})
  manifests, _ = _build(tmp_path, config)
  manifest = manifests["my-crawl"]
  assert _texts(tmp_path, "my-crawl") == sorted(texts)
  assert manifest["category"] == "web-crawl" and manifest["source"] == "my-crawl"
  assert manifest["splits"]["validation"]["documents"] >= 1
  assert manifest == corpora.corpus_manifest("my-crawl", cache_dir=tmp_path / "cache")
  origins = {d["origin"] for d in corpora.read_documents("my-crawl", "train", cache_dir=tmp_path / "cache")}
  assert all(o.startswith("my-crawl:") for o in origins)
  _, lines = _build(tmp_path, config)
  assert "up to date" in lines[-1]


def test_text_files_are_one_document_each_and_a_changed_file_rebuilds(tmp_path):
  (tmp_path / "docs").mkdir()
  for i in range(3):
    (tmp_path / "docs" / f"{i}.txt").write_text(_text(i) + "\n")
  with gzip.open(tmp_path / "docs" / "3.txt.gz", "wt", encoding="utf-8") as f:
    f.write(_text(3))
  config = {"name": "notes", "kind": "text", "paths": [str(tmp_path / "docs" / "*")], "category": "literature"}
  _build(tmp_path, config)
  assert _texts(tmp_path, "notes") == sorted(_text(i) for i in range(4))
  (tmp_path / "docs" / "0.txt").write_text(_text(10))
  _, lines = _build(tmp_path, config)
  assert not any("up to date" in line for line in lines)
  assert _texts(tmp_path, "notes") == sorted(_text(i) for i in (10, 1, 2, 3))


def test_array_record_records_may_be_text_or_json(tmp_path):
  writer = array_record_module.ArrayRecordWriter(str(tmp_path / "shard.array_record"), "group_size:1")
  writer.write(_text(0).encode("utf-8"))
  writer.write(json.dumps({"text": _text(1)}).encode("utf-8"))
  writer.write(_text(2).encode("utf-8"))
  writer.close()
  config = ml_collections.ConfigDict({"name": "records", "kind": "array_record", "category": "encyclopedia",
                                      "paths": [str(tmp_path / "*.array_record")]})
  _build(tmp_path, config)
  assert _texts(tmp_path, "records") == sorted(_text(i) for i in range(3))


def test_user_corpus_respects_the_bound(tmp_path):
  (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": _text(i)}) + "\n" for i in range(50)))
  config = {"name": "bounded", "kind": "jsonl", "paths": [str(tmp_path / "a.jsonl")], "category": "code"}
  manifests, _ = _build(tmp_path, config, max_mb_per_source=0.001)
  assert 1000 <= manifests["bounded"]["bytes"] < 1000 + len(_text(10))


def test_empty_user_corpus_fails_clearly(tmp_path):
  config = {"name": "nothing", "kind": "jsonl", "paths": [str(tmp_path / "*.jsonl")], "category": "law"}
  with pytest.raises(ValueError, match="'nothing' is empty: no file matches"):
    _build(tmp_path, config)
  (tmp_path / "a.jsonl").write_text(json.dumps({"text": "tiny"}) + "\n")
  with pytest.raises(RuntimeError, match="'nothing'.*produced no documents"):
    _build(tmp_path, config)


def test_missing_text_field_names_the_field_and_the_file(tmp_path):
  (tmp_path / "a.jsonl").write_text(json.dumps({"content": _text(0)}) + "\n")
  config = {"name": "wrong-field", "kind": "jsonl", "paths": [str(tmp_path / "a.jsonl")], "category": "law"}
  with pytest.raises(RuntimeError, match="a.jsonl line 1 has no field 'text'.*text_field"):
    _build(tmp_path, config)


@pytest.mark.parametrize("change, error, message", [
    ({"text_feild": "body"}, UnknownNameError, "'text_field'"),
    ({"category": "web-crawling"}, UnknownNameError, "'web-crawl'"),
    ({"kind": "jsonlines"}, UnknownNameError, "'jsonl'"),
    ({"name": "code"}, ValueError, "built-in source"),
    ({"name": "my crawl"}, ValueError, "names a folder"),
    ({"paths": "/data/*.jsonl"}, ValueError, "list of file globs"),
    ({"category": None}, ValueError, "needs the field 'category'"),
])
def test_bad_declarations_fail_before_reading(tmp_path, change, error, message):
  config = {"name": "mine", "kind": "jsonl", "paths": [str(tmp_path / "*.jsonl")], "category": "web-crawl"}
  config.update(change)
  with pytest.raises(error, match=message):
    corpora.user_builder(config)


def test_a_user_corpus_can_stand_for_a_paper_source_without_builder(tmp_path):
  (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": _text(i)}) + "\n" for i in range(3)))
  config = {"name": "arts", "kind": "jsonl", "paths": [str(tmp_path / "a.jsonl")], "category": "arts"}
  manifests, _ = _build(tmp_path, config)
  assert manifests["arts"]["documents"] == 3


def test_non_utf8_text_is_an_error_naming_the_file_unless_its_encoding_is_declared(tmp_path):
  """Bytes the encoding cannot read are never silently replaced by U+FFFD."""
  (tmp_path / "docs").mkdir()
  latin = _text(1).replace("barn", "grange à blé") + " Café crème."
  (tmp_path / "docs" / "0.txt").write_bytes(latin.encode("latin-1"))
  config = {"name": "latin", "kind": "text", "paths": [str(tmp_path / "docs" / "*")], "category": "literature"}
  with pytest.raises(RuntimeError, match=r"0\.txt: not valid utf-8 at byte \d+ .*set .encoding."):
    _build(tmp_path, config)
  _build(tmp_path, {**config, "encoding": "latin-1"})
  [text] = _texts(tmp_path, "latin")
  assert "grange à blé" in text and "\ufffd" not in text
  with pytest.raises(RuntimeError, match="Unknown encoding .klingon."):
    _build(tmp_path, {**config, "name": "latin2", "encoding": "klingon"})
