"""Real text corpora per source, built offline from installable packages, plus users' own corpora.

Public API: `build_corpora`, `read_documents`, `corpus_manifest`, `summary_rows`, `format_summary`,
`built_sources`, the source names (`CORPUS_SOURCES`, `BUILTIN_SOURCES`, `EXTRA_SOURCES`) and
`user_builder`. See README.md in this folder.
"""

from visual_priors.data.corpora.build import build_corpora
from visual_priors.data.corpora.registry import (BUILTIN_SOURCES, CORPUS_SOURCES, EXTRA_SOURCES,
                                                 NoOfflineBuilderError, builder_for, resolve_corpus_source)
from visual_priors.data.corpora.store import (SPLITS, built_sources, corpora_root, corpus_dir,
                                              corpus_manifest, format_summary, read_documents, summary_rows)
from visual_priors.data.corpora.user import user_builder

__all__ = [
    "BUILTIN_SOURCES", "CORPUS_SOURCES", "EXTRA_SOURCES", "NoOfflineBuilderError", "SPLITS",
    "build_corpora", "builder_for", "built_sources", "corpora_root", "corpus_dir", "corpus_manifest",
    "format_summary", "read_documents", "resolve_corpus_source", "summary_rows", "user_builder",
]
