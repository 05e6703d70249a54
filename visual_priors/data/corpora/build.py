"""Builds corpora: fetch packages, clean, deduplicate, interleave, bound, split, write atomically."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from visual_priors.data.cache import atomic_directory, read_json, sha256_file, write_json_atomic
from visual_priors.data.corpora import store
from visual_priors.data.corpora.fetch import Fetched, cached, downloads_root, fetch
from visual_priors.data.corpora.model import SourceBuilder, SubSource
from visual_priors.data.corpora.registry import builder_for, resolve_corpus_source
from visual_priors.data.corpora.text import normalise
from visual_priors.data.corpora.user import user_builder

# Bump when the shared cleaning, deduplication, ordering or split rules change: every corpus rebuilds.
PIPELINE_VERSION = 1
MIN_CHARS = 200  # Shorter documents (after normalisation) are dropped as near-empty.


@dataclasses.dataclass(frozen=True)
class _Record:
  id: str
  text: str
  origin: str
  sub_source: str
  bytes: int

  def json_line(self) -> str:
    return json.dumps({"id": self.id, "text": self.text, "origin": self.origin}, ensure_ascii=False) + "\n"


def build_corpora(sources: Sequence[str], cache_dir: str | os.PathLike[str] | None = None,
                  max_mb_per_source: float | None = None, validation_fraction: float = 0.02,
                  log: Callable[[str], None] = print,
                  downloads_dir: str | os.PathLike[str] | None = None,
                  user_corpora: Sequence[Any] = ()) -> dict[str, dict[str, Any]]:
  """Builds (or finds up to date) the corpus of each source; returns each source's manifest.

  Corpora land in `<cache>/corpora/<source>/` (cache: `cache_dir`, $VISUAL_PRIORS_CACHE or
  ~/.cache/visual_priors); packages are downloaded once into `downloads_dir` (default
  $VISUAL_PRIORS_DOWNLOADS or `<cache>/downloads`). `max_mb_per_source` bounds each corpus's UTF-8
  text (10^6 bytes per MB; the document that reaches the bound is the last one). `user_corpora` are
  ConfigDicts declaring the user's own corpora (see `visual_priors.data.corpora.user`), built when
  their name is among `sources`.
  """
  if not sources:
    raise ValueError("No sources to build: name at least one, e.g. --sources code,math.")
  if max_mb_per_source is not None and not max_mb_per_source > 0:
    raise ValueError(f"max_mb_per_source must be positive (or None for no bound), got {max_mb_per_source}.")
  if not 0.0 <= validation_fraction < 1.0:
    raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}.")
  declared = {str(config.get("name", "")): config for config in user_corpora}
  names = [resolve_corpus_source(name, declared) for name in dict.fromkeys(sources)]
  builders = [user_builder(declared[name]) if name in declared else builder_for(name) for name in names]
  downloads = downloads_root(downloads_dir, cache_dir)
  return {builder.source: build_source(builder, store.corpora_root(cache_dir), downloads,
                                       max_mb_per_source, validation_fraction, log)
          for builder in builders}


def build_source(builder: SourceBuilder, corpora: pathlib.Path, downloads: pathlib.Path,
                 max_mb: float | None, validation_fraction: float,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
  """Builds one source into `corpora/<source>/` unless its manifest shows it is up to date."""
  parameters = json.loads(json.dumps({"max_mb_per_source": max_mb, "validation_fraction": validation_fraction,
                                      "min_chars": MIN_CHARS, **builder.parameters}))
  target = corpora / builder.source
  previous = _previous_manifest(target)
  if previous is not None and _up_to_date(previous, builder, parameters, downloads, target):
    log(f"{builder.source}: up to date ({previous['documents']} documents, "
        f"{previous['bytes'] / store.BYTES_PER_MB:.2f} MB)")
    return previous
  fetched = {sub.name: fetch(sub.package, downloads, log) for sub in builder.sub_sources}
  log(f"{builder.source}: building" + (f" (bound {max_mb} MB)" if max_mb else " (no bound)"))
  max_bytes = None if max_mb is None else max_mb * store.BYTES_PER_MB
  records = list(_interleaved(builder, fetched, max_bytes))
  splits = _split(records, validation_fraction)
  with atomic_directory(target) as tmp:
    split_entries = {name: _write_split(tmp, name, chosen) for name, chosen in splits.items()}
    manifest = _manifest(builder, fetched, parameters, records, split_entries)
    write_json_atomic(tmp / store.MANIFEST, manifest)
  log(f"{builder.source}: {manifest['documents']} documents, {manifest['bytes'] / store.BYTES_PER_MB:.2f} MB "
      f"({split_entries['train']['documents']} train, {split_entries['validation']['documents']} validation)")
  return manifest


def _previous_manifest(target: pathlib.Path) -> dict[str, Any] | None:
  try:
    return read_json(target / store.MANIFEST)
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def _up_to_date(manifest: Mapping[str, Any], builder: SourceBuilder, parameters: Mapping[str, Any],
                downloads: pathlib.Path, target: pathlib.Path) -> bool:
  """Same pipeline and builder versions, parameters and package versions, and intact split files.

  A Debian package's version is only known once downloaded; if its download was deleted since, the
  recorded version is trusted rather than downloading it again just to compare.
  """
  if (manifest.get("pipeline_version"), manifest.get("builder_version"), manifest.get("parameters")) != (
      PIPELINE_VERSION, builder.version, parameters):
    return False
  recorded = manifest.get("sub_sources", {})
  if set(recorded) != {sub.name for sub in builder.sub_sources}:
    return False
  for sub in builder.sub_sources:
    entry = recorded[sub.name]
    current = cached(sub.package, downloads)
    version = current.version if current else sub.package.version
    if (entry.get("package"), entry.get("kind")) != (sub.package.name, sub.package.kind) or (
        version is not None and version != entry.get("version")):
      return False
  files = [(target / entry["file"], entry["file_bytes"]) for entry in manifest["splits"].values()]
  return all(path.is_file() and path.stat().st_size == size for path, size in files)


def _documents(builder: SourceBuilder, sub: SubSource, fetched: Fetched) -> Iterator[tuple[str, str]]:
  """(normalised text, origin) of one sub-source; failures name the source and the package."""
  where = f"{fetched.package.kind} package {fetched.package.name} {fetched.version}"
  try:
    for document in sub.read(fetched):
      yield normalise(document.text, sub.prose), document.origin
  except Exception as error:
    raise RuntimeError(f"Source {builder.source!r}: reading {sub.name!r} from {where} "
                       f"({fetched.path}) failed: {error}") from error


def _interleaved(builder: SourceBuilder, fetched: Mapping[str, Fetched],
                 max_bytes: float | None) -> Iterator[_Record]:
  """New (deduplicated, long enough) documents taken round-robin from the sub-sources, until the
  text reaches `max_bytes`. A sub-source that yields nothing at all is an error."""
  streams = {sub.name: (sub, _documents(builder, sub, fetched[sub.name])) for sub in builder.sub_sources}
  seen: set[str] = set()
  taken = dict.fromkeys(streams, 0)
  total = 0
  while streams:
    for name, (sub, stream) in list(streams.items()):
      if max_bytes is not None and total >= max_bytes:
        return
      record = _next_new(stream, sub, seen)
      if record is None:
        del streams[name]
        if not taken[name]:
          package = fetched[name]
          raise RuntimeError(
              f"Source {builder.source!r}: {name!r} produced no documents of at least {MIN_CHARS} "
              f"characters from {package.package.kind} package {package.package.name} {package.version} "
              f"({package.path}). The package's layout may have changed, or its download is incomplete: "
              "delete that download folder and build again.")
        continue
      seen.add(record.id)
      taken[name] += 1
      total += record.bytes
      yield record


def _next_new(stream: Iterator[tuple[str, str]], sub: SubSource, seen: set[str]) -> _Record | None:
  for text, origin in stream:
    if len(text) < MIN_CHARS:
      continue
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    if digest not in seen:
      return _Record(digest, text, origin, sub.name, len(text.encode("utf-8")))
  return None


def _split(records: Sequence[_Record], validation_fraction: float) -> dict[str, list[_Record]]:
  """Validation = documents whose hash falls below the fraction (at least one, and never all, when
  there are two or more documents and the fraction is positive); the order of `records` is kept."""
  validation = {r.id for r in records if int(r.id[:8], 16) < validation_fraction * 2**32}
  if validation_fraction > 0 and len(records) >= 2:
    if not validation:
      validation = {min(r.id for r in records)}
    elif len(validation) == len(records):
      validation.discard(max(validation))
  return {"train": [r for r in records if r.id not in validation],
          "validation": [r for r in records if r.id in validation]}


def _write_split(folder: pathlib.Path, split: str, records: Sequence[_Record]) -> dict[str, Any]:
  path = folder / f"{split}.jsonl"
  with open(path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(record.json_line())
  return {"file": path.name, "documents": len(records), "bytes": sum(r.bytes for r in records),
          "file_bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _manifest(builder: SourceBuilder, fetched: Mapping[str, Fetched], parameters: Mapping[str, Any],
              records: Sequence[_Record], splits: Mapping[str, Any]) -> dict[str, Any]:
  sub_sources = {}
  for sub in builder.sub_sources:
    mine = [r for r in records if r.sub_source == sub.name]
    sub_sources[sub.name] = {
        "package": sub.package.name, "kind": sub.package.kind, "version": fetched[sub.name].version,
        "licence": sub.licence, "documents": len(mine), "bytes": sum(r.bytes for r in mine)}
  return {
      "source": builder.source,
      "category": builder.category or builder.source,
      "description": builder.description,
      "stand_in": builder.stand_in,
      "pipeline_version": PIPELINE_VERSION,
      "builder_version": builder.version,
      "parameters": parameters,
      "documents": len(records),
      "bytes": sum(r.bytes for r in records),
      "sub_sources": sub_sources,
      "splits": dict(splits),
  }
