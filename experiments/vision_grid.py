"""Vision-favourable grid (docs/paper.md, section 3): reasoning comb. 50..85% x visual comb. 5/10/15%, plus
reasoning 60% and 65% with visual 20/25/30%; 3B LM, 30B tokens; 30 runs.

Names "grid/r<reasoning>-v<visual>", e.g. "grid/r60-v15". Mixture "cat:reasoning=0.6,visual=0.15": both
marginals are met by iterative proportional fitting over the labelled pool (data/mixtures.py).

Launch:   python -m visual_priors grid --filter '^grid/'          (one: python -m visual_priors run grid/r60-v15)
Cost:     each ~7.2e20 FLOPs, ~1,100 TPU-v5p-hours at MFU 0.4.
Local:    python -m visual_priors run vision_grid:reasoning=60,visual=15,local.
"""

from __future__ import annotations

from visual_priors import experiment

CELLS = tuple((r, v) for r in (50, 55, 60, 65, 70, 75, 80, 85) for v in (5, 10, 15)) + tuple(
    (r, v) for r in (60, 65) for v in (20, 25, 30))
DEFAULTS = {"reasoning": 60, "visual": 15}


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  r, v = args["reasoning"], args["visual"]
  config = experiment.base_config()
  config.description = f"3B LM on 30B tokens with {r}% reasoning-comb. and {v}% visual-comb. segments."
  config.data.mixture = f"cat:reasoning={r / 100:g},visual={v / 100:g}"
  return config


def sweep(add):
  for r, v in CELLS:
    add(f"grid/r{r}-v{v}", f"reasoning={r},visual={v}")
