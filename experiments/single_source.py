"""Single-source runs (docs/paper.md, section 3): one 3B LM per source on 30B tokens of it alone; 16 runs.

Names "source/<source>", e.g. "source/code", "source/web-crawl" (which equals scale/3b-30b stage for
stage). Locally built corpora cover academia, code, encyclopedia, literature, math and web-crawl (stand-ins,
see visual_priors/data/corpora/README.md); the other ten sources need your own corpus.

Launch:   python -m visual_priors grid --filter '^source/'        (one: python -m visual_priors run source/code)
Cost:     each ~7.2e20 FLOPs, ~1,100 TPU-v5p-hours at MFU 0.4 (3B, 30B tokens, paper adaptation data).
Local:    python -m visual_priors run single_source:source=code,local.
"""

from __future__ import annotations

from visual_priors import experiment
from visual_priors.data.categories import SOURCES

DEFAULTS = {"source": "web-crawl"}


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  config = experiment.base_config()
  config.description = f"3B LM on 30B tokens of {args['source']} only (single-source runs)."
  config.data.mixture = f"{args['source']}=1"
  return config


def sweep(add):
  for source in SOURCES:
    add(f"source/{source}", f"source={source}")
