"""The balanced interpolation mix0..mix10 (docs/paper.md, section 3): 3B LM on 50B tokens; 11 runs.

Names "mix/mix0" .. "mix/mix10"; mix0 is "language-favourable", mix6 the recommended "balanced" recipe.
Mixtures are the paper's source weights (data/mixtures.PAPER_MIXTURES; spec "mix6"). blind.py's runs
share these runs' pre-training and alignment.

Launch:   python -m visual_priors grid --filter '^mix/'           (one: python -m visual_priors run mix/mix6)
Cost:     each ~1.1e21 FLOPs, ~1,600 TPU-v5p-hours at MFU 0.4 (3B, 50B tokens, paper adaptation data).
Local:    python -m visual_priors run mixes:mix=mix6,local (the demo's demo/mix6 is that plus its own tuning).
"""

from __future__ import annotations

from visual_priors import experiment
from visual_priors.data.mixtures import PAPER_MIXTURES

DEFAULTS = {"mix": "mix6"}


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  config = experiment.base_config()
  config.description = f"3B LM on 50B tokens of the paper's {args['mix']} source mixture."
  config.data.mixture = args["mix"]
  config.pretrain.token_budget = 50_000_000_000
  return config


def sweep(add):
  for mix in PAPER_MIXTURES:
    add(f"mix/{mix}", f"mix={mix}")
