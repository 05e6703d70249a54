"""Scale-up verification (docs/paper.md, section 3): mix0 vs mix6 at 7B on 1T tokens, full adaptation data;
2 runs.

The paper trained ~4.2M tokens/step (2048 sequences of 2048) for ~250k steps; here the budget is 1T
tokens at batch 2048, i.e. 238,419 steps. Names "scaleup/mix0-7b-1t", "scaleup/mix6-7b-1t".

Launch:   xmanager launch experiments/launch_xm.py -- --executor=tpu --tpu=NAME --zone=ZONE --tpu_type=v5p-128 \
              --experiment=scaleup/mix6-7b-1t --root=/shared/runs   (a pod; `run` works on any machine with room)
Cost:     each ~4.3e22 FLOPs, ~66,000 TPU-v5p-hours at MFU 0.4 (the paper: 128 A100s x ~32 days).
Local:    python -m visual_priors run scaleup:mix=mix6,local.
"""

from __future__ import annotations

from visual_priors import experiment

MIXES = ("mix0", "mix6")
DEFAULTS = {"mix": "mix6"}


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  config = experiment.base_config()
  config.description = f"7B LM on 1T tokens of {args['mix']} (scale-up verification)."
  config.data.mixture = args["mix"]
  config.pretrain.scale = "7b"
  config.pretrain.token_budget = 1_000_000_000_000
  config.pretrain.batch_size = 2048
  return config


def sweep(add):
  for mix in MIXES:
    add(f"scaleup/{mix}-7b-1t", f"mix={mix}")
