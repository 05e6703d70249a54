"""Scale sweep (docs/paper.md, section 3): 5 LM sizes x 8 token budgets, all on web-crawl only; 40 runs.

Names "scale/<scale>-<budget>", e.g. "scale/3b-30b", "scale/340m-0b" (0B = an untrained LM). The
adaptation and evaluation are the paper's defaults (MetaCLIP-B/16 from a checkpoint, the paper's data).
scale/3b-30b is the paper's default setting: it shares every stage with source/web-crawl.

Launch:   python -m visual_priors grid --filter '^scale/'        (one: python -m visual_priors run scale/3b-30b)
Cost:     scale/13b-100b ~8.6e21 FLOPs, ~13,000 TPU-v5p-hours at MFU 0.4; scale/3b-30b ~7.2e20 FLOPs,
          ~1,100 h (`python -m visual_priors show NAME` prints the breakdown).
Local:    python -m visual_priors run scale_sweep:scale=1b,tokens=30,local (the CPU recipe: nano LM, minutes).
"""

from __future__ import annotations

from visual_priors import experiment

SCALES = ("340m", "1b", "3b", "7b", "13b")
BUDGETS_B = (0, 5, 10, 20, 30, 50, 70, 100)  # billions of tokens
DEFAULTS = {"scale": "3b", "tokens": 30}


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  config = experiment.base_config()
  config.description = f"{args['scale']} LM on {args['tokens']}B web-crawl tokens (scale sweep)."
  config.data.mixture = "web-crawl=1"
  config.pretrain.scale = args["scale"]
  config.pretrain.token_budget = int(args["tokens"] * 1_000_000_000)
  return config


def sweep(add):
  for scale in SCALES:
    for tokens in BUDGETS_B:
      add(f"scale/{scale}-{tokens}b", f"scale={scale},tokens={tokens}")
