"""Single-source runs (docs/paper.md, section 3): one 3B LM per source on 30B tokens of it alone; 16 runs.

Names "source/<source>", e.g. "source/code", "source/web-crawl" (which equals scale/3b-30b stage for
stage). Locally built corpora cover academia, code, encyclopedia, literature, math and web-crawl (stand-ins,
see visual_priors/data/corpora/README.md); the other ten sources need your own corpus.

Launch:   python -m visual_priors grid --filter '^source/'        (one: python -m visual_priors run source/code)
Cost:     each ~7.2e20 FLOPs, ~1,100 TPU-v5p-hours at MFU 0.4 (3B, 30B tokens, paper adaptation data).
Local:    get_config("source=code,local").
"""

from __future__ import annotations

from visual_priors import config as config_lib
from visual_priors.data.categories import SOURCES

DEFAULTS = {"source": "web-crawl", "local": False}


def get_config(arg: str | None = None):
  args = config_lib.parse_arg(arg, DEFAULTS)
  config = config_lib.base_config()
  config.name = f"source/{args['source']}"
  config.description = f"3B LM on 30B tokens of {args['source']} only (single-source runs)."
  config.data.mixture = f"{args['source']}=1"
  config.meta.family = "source"
  if args["local"]:
    config = config_lib.apply_local(config)
    config.name += "-local"
  return config


def sweep(add):
  for source in SOURCES:
    add(f"source/{source}", f"source={source}")
