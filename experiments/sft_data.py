"""SFT-data ablation (docs/paper.md, section 3): the instruction data split into perception / reasoning /
other items (data/multimodal/sft_split.py), perception or reasoning items removed at 50% and 100%, plus
the full data; 5 runs.

The paper does not say which LM it ablated; we use the default setting (3B, 30B web-crawl tokens), so
sft_data/full is scale/3b-30b stage for stage and all five share its pre-training and alignment.
Names "sft_data/full", "sft_data/remove-perception-50", "sft_data/remove-perception-100",
"sft_data/remove-reasoning-50", "sft_data/remove-reasoning-100".

Launch:   python -m visual_priors grid --filter '^sft_data/'      (one: run sft_data/remove-perception-50)
Cost:     after scale/3b-30b: SFT only, at most ~1.3e20 FLOPs (~200 TPU-v5p-hours at MFU 0.4) each; with
          everything ~7.2e20 FLOPs, ~1,100 h.
Local:    python -m visual_priors run sft_data:remove=reasoning,fraction=1.0,local.
"""

from __future__ import annotations

from visual_priors import experiment

VARIANTS = (("none", 0.0), ("perception", 0.5), ("perception", 1.0), ("reasoning", 0.5), ("reasoning", 1.0))
DEFAULTS = {"remove": "none", "fraction": 0.0}


def _short(remove: str, fraction: float) -> str:
  return "full" if remove == "none" else f"remove-{remove}-{round(fraction * 100)}"


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  config = experiment.base_config()
  config.description = (f"Default setting (3B, 30B web-crawl) with SFT data "
                        f"{'complete' if args['remove'] == 'none' else _short(args['remove'], args['fraction'])}.")
  config.adapt.sft_data.remove = args["remove"]
  config.adapt.sft_data.fraction = float(args["fraction"])
  return config


def sweep(add):
  for remove, fraction in VARIANTS:
    add(f"sft_data/{_short(remove, fraction)}", f"remove={remove},fraction={fraction}")
