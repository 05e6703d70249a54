"""Corpus source names: the paper's 16 sources plus local extras, and the offline builders for them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from visual_priors.data.categories import EXTRA_SOURCES, SOURCES
from visual_priors.data.corpora.model import SourceBuilder
from visual_priors.data.corpora.sources import (academia, code, encyclopedia, literature, mathematics,
                                                visual_description, web_crawl)
from visual_priors.names import lookup

CORPUS_SOURCES: tuple[str, ...] = (*SOURCES, *EXTRA_SOURCES)
BUILDERS: Mapping[str, SourceBuilder] = {
    builder.source: builder
    for builder in (code.BUILDER, mathematics.BUILDER, academia.BUILDER, literature.BUILDER,
                    encyclopedia.BUILDER, web_crawl.BUILDER, visual_description.BUILDER)
}
BUILTIN_SOURCES: tuple[str, ...] = tuple(BUILDERS)


class NoOfflineBuilderError(ValueError):
  """A source of the study for which no installable package ships text."""


def resolve_corpus_source(name: str, extra_names: Iterable[str] = ()) -> str:
  """`name` if it is a corpus source (the paper's 16, an extra, or one of `extra_names`, e.g. the
  declared user corpora), else an UnknownNameError listing the closest valid names."""
  return lookup({s: s for s in (*CORPUS_SOURCES, *extra_names)}, name, "corpus source")


def builder_for(name: str) -> SourceBuilder:
  """The built-in builder of `name`; a paper source without one fails with how to use one's own corpus."""
  name = resolve_corpus_source(name)
  if name not in BUILDERS:
    raise NoOfflineBuilderError(
        f"No offline builder exists for source {name!r}: no package these machines can install ships "
        f"{name} text (built-in: {', '.join(BUILTIN_SOURCES)}). Point the framework at your own "
        f"corpus instead by declaring it as a user corpus, e.g. ml_collections.ConfigDict({{'name': "
        f"'my-{name}', 'kind': 'jsonl', 'paths': ['/data/{name}/*.jsonl.gz'], 'text_field': 'text', "
        f"'category': {name!r}}}), and building it with visual_priors.data.corpora.build_corpora("
        f"['my-{name}'], user_corpora=[config]); see visual_priors/data/corpora/README.md.")
  return BUILDERS[name]
