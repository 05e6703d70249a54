"""Blind visual instruction tuning (docs/paper.md, section 3): a text-only pass over the instruction data
(images withheld) before normal SFT, on mix0 and mix6 (3B LM, 50B tokens); 2 runs.

Names "blind/mix0", "blind/mix6". Each shares pre-training, vision and alignment with mix/mix0 / mix/mix6.

Launch:   python -m visual_priors grid --filter '^blind/'         (one: python -m visual_priors run blind/mix6)
Cost:     after mix/mixN: blind + SFT, ~2.7e20 FLOPs (~400 TPU-v5p-hours at MFU 0.4) each.
Local:    python -m visual_priors run blind:mix=mix6,local.
"""

from __future__ import annotations

from visual_priors import experiment

MIXES = ("mix0", "mix6")
DEFAULTS = {"mix": "mix6"}


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  config = experiment.base_config()
  config.description = f"mix/{args['mix']} with a blind (text-only) instruction pass before SFT."
  config.data.mixture = args["mix"]  # as mixes.py
  config.pretrain.token_budget = 50_000_000_000
  config.adapt.blind = True
  return config


def sweep(add):
  for mix in MIXES:
    add(f"blind/{mix}", f"mix={mix}")
