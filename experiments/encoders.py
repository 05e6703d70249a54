"""Vision-encoder universality (docs/paper.md, section 3): the reasoning-comb. sweep's LMs (3B, 30B tokens,
0/25/50/75/100% reasoning) adapted with MetaCLIP-B/16 (the default), DINOv2-G and MAE-H; 15 runs.

Names "encoder/<encoder>-reasoning-<percent>", e.g. "encoder/dinov2-reasoning-50". Every run shares its
pre-training with category/reasoning-<percent> (same stage key), and the MetaCLIP runs are that run
stage for stage. The DINOv2/MAE runs load a big_vision-format .npz of that architecture
(`--set vision.checkpoint=/path/dinov2_g14.npz`; the released weights need converting, see
visual_priors/models/vision/README.md).

Launch:   python -m visual_priors grid --filter '^encoder/' --set ... (one: run encoder/mae-reasoning-75)
Cost:     adaptation only when the category sweep ran first: ~1.6e20 FLOPs, ~240 TPU-v5p-hours at MFU 0.4
          (the LM dominates; DINOv2-G adds ~2%); ~7.2e20 FLOPs, ~1,100 h with pre-training.
Local:    python -m visual_priors run encoders:encoder=dinov2,percent=50,local (trains the CPU-sized contrastive
          tower instead).
"""

from __future__ import annotations

from visual_priors import experiment
from visual_priors.names import lookup

ENCODERS = {"metaclip": "metaclip-b16-224", "dinov2": "dinov2-g14-224", "mae": "mae-h14-224"}
PERCENTS = (0, 25, 50, 75, 100)
DEFAULTS = {"encoder": "dinov2", "percent": 50}


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  encoder = lookup(ENCODERS, args["encoder"], "encoder")
  config = experiment.base_config()
  config.description = (f"category/reasoning-{args['percent']}'s LM adapted with the {encoder} encoder "
                        "(encoder universality).")
  config.data.mixture = f"cat:reasoning={args['percent'] / 100:g}"  # as category_sweep.py
  config.vision.encoder = encoder
  return config


def sweep(add):
  for short in ENCODERS:
    for percent in PERCENTS:
      add(f"encoder/{short}-reasoning-{percent}", f"encoder={short},percent={percent}")
