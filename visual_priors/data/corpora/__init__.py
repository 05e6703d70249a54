"""Real text corpora per source, built offline from installable packages, plus users' own corpora.

Public API: `build_corpora`, `read_documents`, `corpus_manifest`, `summary_rows`, `built_sources`,
the source names (`CORPUS_SOURCES`, `BUILT_IN_SOURCES`, `EXTRA_SOURCES`) and `user_builder`.
"""

from visual_priors.data.corpora.build import build_corpora
from visual_priors.data.corpora.registry import (BUILT_IN_SOURCES, CORPUS_SOURCES, EXTRA_SOURCES,
                                                 NoOfflineBuilderError, builder_for, resolve_corpus_source)
from visual_priors.data.corpora.store import (SPLITS, built_sources, corpora_root, corpus_dir, corpus_manifest,
                                              read_documents, summary_rows)
from visual_priors.data.corpora.user import user_builder

__all__ = [
    "BUILT_IN_SOURCES", "CORPUS_SOURCES", "EXTRA_SOURCES", "NoOfflineBuilderError", "SPLITS",
    "build_corpora", "builder_for", "built_sources", "corpora_root", "corpus_dir", "corpus_manifest",
    "read_documents", "resolve_corpus_source", "summary_rows", "user_builder",
]
