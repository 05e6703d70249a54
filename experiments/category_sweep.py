"""Category-proportion sweeps (docs/paper.md, section 3): 8 label categories x 0/25/50/75/100% of the 30B
tokens, the remainder drawn proportionally from the rest of the labelled pool; 3B LM; 40 runs.

Names "category/<category>-<percent>", e.g. "category/code-25", "category/reasoning-50",
"category/visual-concept-75"; categories as data/categories.py names them (code, math, science,
reasoning = reasoning comb., visual-concept, visual-attribute, visual-relationship, visual = visual comb.).
Mixture specs "cat:<category>=<fraction>" (data/mixtures.py). The reasoning runs' LMs are the ones the
encoder-universality runs adapt (encoders.py shares their stages).

Launch:   python -m visual_priors grid --filter '^category/'      (one family: --filter '^category/code-')
Cost:     each ~7.2e20 FLOPs, ~1,100 TPU-v5p-hours at MFU 0.4.
Local:    python -m visual_priors run category_sweep:category=reasoning,percent=75,local.
"""

from __future__ import annotations

from visual_priors import experiment

CATEGORIES = ("code", "math", "science", "reasoning", "visual-concept", "visual-attribute", "visual-relationship",
              "visual")
PERCENTS = (0, 25, 50, 75, 100)
DEFAULTS = {"category": "reasoning", "percent": 50}


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  config = experiment.base_config()
  config.description = (f"3B LM on 30B tokens, {args['percent']}% from segments labelled {args['category']}, "
                        "the rest proportionally from the pool (category sweep).")
  config.data.mixture = f"cat:{args['category']}={args['percent'] / 100:g}"
  return config


def sweep(add):
  for category in CATEGORIES:
    for percent in PERCENTS:
      add(f"category/{category}-{percent}", f"category={category},percent={percent}")
