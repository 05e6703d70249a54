"""Built corpora on disk: where they live, their manifests, reading documents, and a size summary."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

from visual_priors.data.cache import cache_root, iter_jsonl, read_json
from visual_priors.data.corpora.registry import CORPUS_SOURCES
from visual_priors.names import closest, lookup

SPLITS: tuple[str, ...] = ("train", "validation")
MANIFEST = "manifest.json"
BYTES_PER_MB = 1_000_000


def corpora_root(cache_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
  return cache_root(cache_dir) / "corpora"


def corpus_dir(source: str, cache_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
  return corpora_root(cache_dir) / source


def built_sources(cache_dir: str | os.PathLike[str] | None = None) -> list[str]:
  """Names of the corpora (built-in or user) that have a manifest in the cache."""
  root = corpora_root(cache_dir)
  return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}")) if root.is_dir() else []


def corpus_manifest(source: str, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
  """The manifest of a built corpus; FileNotFoundError with the build command when there is none."""
  path = corpus_dir(source, cache_dir) / MANIFEST
  if not path.is_file():
    near = closest(source, {*CORPUS_SOURCES, *built_sources(cache_dir)})
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near and source not in near else ""
    raise FileNotFoundError(
        f"No corpus {source!r} in {corpora_root(cache_dir)}.{hint} Build it with `python -m "
        f"visual_priors data build --sources {source}` (the cache is $VISUAL_PRIORS_CACHE or "
        "~/.cache/visual_priors).")
  return read_json(path, _rebuild(source))


def _rebuild(source: str) -> str:
  return f"delete the corpus folder and rebuild it (python -m visual_priors data build --sources {source})"


def read_documents(source: str, split: str,
                   cache_dir: str | os.PathLike[str] | None = None) -> Iterator[dict[str, str]]:
  """The documents of one split of a built corpus: dicts with "id", "text" and "origin"."""
  split = lookup({s: s for s in SPLITS}, split, "corpus split")
  manifest = corpus_manifest(source, cache_dir)
  yield from iter_jsonl(corpus_dir(source, cache_dir) / manifest["splits"][split]["file"], _rebuild(source))


def summary_rows(manifests: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
  """One row per corpus: documents, MB (10^6 bytes of UTF-8 text), split sizes and packages."""
  return [{
      "source": source,
      "documents": manifest["documents"],
      "mb": round(manifest["bytes"] / BYTES_PER_MB, 2),
      "train_documents": manifest["splits"]["train"]["documents"],
      "validation_documents": manifest["splits"]["validation"]["documents"],
      "packages": ", ".join(f"{sub['package']} {sub['version']}" for sub in manifest["sub_sources"].values()),
  } for source, manifest in manifests.items()]


def format_summary(manifests: Mapping[str, Mapping[str, Any]]) -> str:
  """`summary_rows` as an aligned text table with a total line."""
  rows = summary_rows(manifests)
  header = ("source", "documents", "MB", "train", "validation", "packages")
  table = [header] + [(r["source"], str(r["documents"]), f"{r['mb']:.2f}", str(r["train_documents"]),
                       str(r["validation_documents"]), r["packages"]) for r in rows]
  table.append(("total", str(sum(r["documents"] for r in rows)),
                f"{sum(m['bytes'] for m in manifests.values()) / BYTES_PER_MB:.2f}",
                str(sum(r["train_documents"] for r in rows)),
                str(sum(r["validation_documents"] for r in rows)), ""))
  widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
  return "\n".join("  ".join([*(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                                 enumerate(zip(line, widths))), line[-1]]).rstrip() for line in table)
