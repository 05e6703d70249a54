"""A user's own corpus as a source: text files, JSONL, ArrayRecord or a prepared TFDS dataset.

A user corpus is declared as a ConfigDict and goes through the same clean / deduplicate / split /
manifest path as the built-in sources, landing in `<cache>/corpora/<name>/`, so everything downstream
reads it like any other source:

  import ml_collections
  from visual_priors.data.corpora import build_corpora, read_documents

  crawl = ml_collections.ConfigDict({
      "name": "my-crawl",                # corpus name: <cache>/corpora/my-crawl/
      "kind": "jsonl",                   # text | jsonl | array_record | tfds
      "paths": ["/data/crawl/shard-*.jsonl.gz", "gs://bucket/crawl/*.jsonl"],
      "text_field": "text",              # JSONL key / JSON-record key / TFDS feature
      "category": "web-crawl",           # which source of the study it plays
  })
  build_corpora(["my-crawl"], user_corpora=[crawl], max_mb_per_source=500)
  first = next(read_documents("my-crawl", "train"))

Kinds: "text" (one document per file), "jsonl" (one per line), "array_record" (one per record; a
record is UTF-8 text, or a JSON object when it starts with "{"), "tfds" (`dataset`, optional
`data_dir` and `split`; the dataset must already be prepared there). Paths are globs read through
`tf.io.gfile`, so gs:// and other TensorFlow file systems work; "*.gz" files are gunzipped. Optional:
`description`, `licence`, `prose` (False keeps indentation, for code), `encoding` (default "utf-8"; text is
decoded strictly: a byte sequence the encoding cannot read is an error naming the file and byte offset, never
silently replaced).
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import Iterator, Mapping
from typing import Any

from visual_priors.data.cache import parse_json, sha256_json
from visual_priors.data.corpora.fetch import Fetched, Package
from visual_priors.data.corpora.model import Document, SourceBuilder, SubSource
from visual_priors.data.corpora.registry import BUILDERS, CORPUS_SOURCES
from visual_priors.names import lookup

KINDS = ("text", "jsonl", "array_record", "tfds")
FIELDS = frozenset({"name", "kind", "paths", "text_field", "category", "dataset", "data_dir", "split",
                    "description", "licence", "prose", "encoding"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ARRAY_RECORD_BATCH = 1024
USER_FIX = "fix or replace the file, or leave it out of the corpus's paths"


def _gfile():
  # Imported here: TensorFlow costs seconds and ~700 MB and only user corpora need it.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def _fields(config: Any) -> dict[str, Any]:
  fields = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  for key in fields:
    lookup({f: f for f in FIELDS}, key, "user corpus field")
  for key in ("name", "kind", "category"):
    if not fields.get(key):
      raise ValueError(f"User corpus {fields.get('name', '?')!r} needs the field {key!r}.")
  name = fields["name"]
  if not _NAME.match(name):
    raise ValueError(f"User corpus name {name!r} must be letters, digits, '.', '_' or '-' "
                     "(it names a folder).")
  if name in BUILDERS:
    raise ValueError(f"User corpus name {name!r} is a built-in source; choose another name and set "
                     f"category={name!r} to have it play that source.")
  fields["kind"] = lookup({k: k for k in KINDS}, fields["kind"], "user corpus kind")
  fields["category"] = lookup({s: s for s in CORPUS_SOURCES}, fields["category"], "corpus source")
  if fields["kind"] == "tfds":
    if not fields.get("dataset"):
      raise ValueError(f"User corpus {name!r} of kind 'tfds' needs 'dataset' "
                       "(a TFDS name, e.g. 'my_ds:1.0.0').")
  elif not fields.get("paths") or isinstance(fields["paths"], str):
    raise ValueError(f"User corpus {name!r} needs 'paths': a list of file globs.")
  fields.setdefault("text_field", "text")
  if fields["kind"] == "tfds":
    fields.setdefault("split", "train")
  return fields


def _files(fields: Mapping[str, Any]) -> list[str]:
  gfile = _gfile()
  files = sorted({path for pattern in fields["paths"] for path in gfile.glob(pattern)})
  if not files:
    raise ValueError(f"User corpus {fields['name']!r} is empty: no file matches {list(fields['paths'])}.")
  return files


def _read_bytes(path: str) -> bytes:
  with _gfile().GFile(path, "rb") as f:
    data = f.read()
  return gzip.decompress(data) if path.endswith(".gz") else data


def _decode(data: bytes, encoding: str, where: str) -> str:
  """`data` decoded strictly; an undecodable byte is an error naming where it is and what to do."""
  try:
    return data.decode(encoding)
  except UnicodeDecodeError as error:
    bad = data[error.start:error.start + 8]
    raise ValueError(f"{where}: not valid {encoding} at byte {error.start} ({bad!r}); set 'encoding' in the user "
                     "corpus config (e.g. 'latin-1') or fix the file.") from None
  except LookupError:
    raise ValueError(f"Unknown encoding {encoding!r} in the user corpus config (e.g. 'utf-8', 'latin-1').") from None


def _encoding(fields: Mapping[str, Any]) -> str:
  return str(fields.get("encoding") or "utf-8")


def _field(record: Mapping[str, Any], field: str, where: str, encoding: str = "utf-8") -> str:
  if field not in record:
    raise ValueError(f"{where} has no field {field!r} (fields: {', '.join(sorted(record))}); "
                     "set 'text_field' in the user corpus config.")
  value = record[field]
  return _decode(value, encoding, where) if isinstance(value, bytes) else str(value)


def _text_files(files: list[str], fields: Mapping[str, Any], fetched: Fetched) -> Iterator[Document]:
  del fetched
  for path in files:
    yield Document(_decode(_read_bytes(path), _encoding(fields), path), f"{fields['name']}:{path}")


def _jsonl(files: list[str], fields: Mapping[str, Any], fetched: Fetched) -> Iterator[Document]:
  del fetched
  for path in files:
    for number, line in enumerate(_decode(_read_bytes(path), _encoding(fields), path).splitlines(), 1):
      if line.strip():
        where = f"{path} line {number}"
        text = _field(parse_json(line, where, USER_FIX), fields["text_field"], where)
        yield Document(text, f"{fields['name']}:{path}#{number}")


def _record_text(record: bytes, field: str, where: str, encoding: str = "utf-8") -> str:
  text = _decode(record, encoding, where)
  if not text.lstrip().startswith("{"):
    return text
  return _field(parse_json(text, where, USER_FIX), field, where, encoding)


def _array_records(files: list[str], fields: Mapping[str, Any], fetched: Fetched) -> Iterator[Document]:
  del fetched
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  for path in files:
    reader = array_record_module.ArrayRecordReader(path)
    try:
      count = reader.num_records()
      for start in range(0, count, _ARRAY_RECORD_BATCH):
        for offset, record in enumerate(reader.read(start, min(start + _ARRAY_RECORD_BATCH, count))):
          where = f"{path} record {start + offset}"
          yield Document(_record_text(record, fields["text_field"], where, _encoding(fields)),
                         f"{fields['name']}:{path}#{start + offset}")
    finally:
      reader.close()


def _tfds_builder(fields: Mapping[str, Any]):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(fields["dataset"], data_dir=fields.get("data_dir"))
  if not builder.is_prepared():
    raise ValueError(f"User corpus {fields['name']!r}: TFDS dataset {fields['dataset']!r} is not prepared in "
                     f"{builder.data_dir}; prepare it there first (this framework does not download it).")
  return builder


def _tfds(fields: Mapping[str, Any], fetched: Fetched) -> Iterator[Document]:
  del fetched
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _tfds_builder(fields)
  split = fields["split"]
  examples = tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))
  for index, example in enumerate(examples):
    text = _field(example, fields["text_field"], f"TFDS {fields['dataset']} {split} example {index}")
    yield Document(text, f"{fields['name']}:tfds/{builder.info.full_name}/{split}#{index}")


def user_builder(config: Any) -> SourceBuilder:
  """The SourceBuilder of a declared user corpus (see the module docstring)."""
  fields = _fields(config)
  kind = fields["kind"]
  if kind == "tfds":
    info = _tfds_builder(fields).info
    inputs = {"dataset": info.full_name, "split": fields["split"],
              "examples": info.splits[fields["split"]].num_examples}
    read = functools.partial(_tfds, fields)
  else:
    files = _files(fields)
    stats = [_gfile().stat(path) for path in files]
    inputs = {"files": [[path, stat.length, stat.mtime_nsec] for path, stat in zip(files, stats)]}
    reader = {"text": _text_files, "jsonl": _jsonl, "array_record": _array_records}[kind]
    read = functools.partial(reader, files, fields)
  package = Package("local", fields["name"], sha256_json(inputs)[:16])
  return SourceBuilder(
      source=fields["name"],
      version=1,
      description=fields.get("description") or f"User corpus ({kind}) playing {fields['category']!r}.",
      sub_sources=(SubSource(fields["name"], package, fields.get("licence", "unknown (user corpus)"), read,
                             prose=fields.get("prose", True)),),
      parameters={"user_corpus": fields},
      category=fields["category"],
  )
