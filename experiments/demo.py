"""The demo's nano ablation: four mixtures and an untrained control through the whole pipeline on a CPU; 5 runs.

Every run is `visual_priors.experiment.apply_local` (nano LM, contrastive image tower, short align and SFT, the
generated benchmarks) with `DEMO_SETTINGS` on top (a vit-tiny tower on 32-pixel images, one question task per
benchmark group answered with the option's text, 16k instruction items, 200 questions per group); the runs
share the vision tower and the generated data (same stage keys) and differ only in the LM:
  demo/mix0          the paper's language-favourable mix0
  demo/mix6          the paper's balanced mix6
  demo/code-heavy    70% code, the rest math, academia, web-crawl
  demo/visual-heavy  visual descriptions and literature first (the extra local source visual-description)
  demo/untrained     the control: the same LM untrained (0 pre-training tokens, the scale sweep's 0B run),
                     adapted and evaluated like the others; the report compares every run with it
Every source named is one the local corpora build (visual_priors/data/corpora/README.md).
The configs list one alignment vision model ("self"); `python -m visual_priors demo` adds a second, a random-init
DINOv2-layout tower in Hugging Face format written from a seed (visual_priors/demo.py, `ALIGNMENT_TOWER`), as an
override, so these experiments keep their stage keys.

Launch:   python -m visual_priors demo      (builds the local data first; or: python -m visual_priors
          grid --filter '^demo/' once a segment store exists)
Cost:     each ~3.2e12 FLOPs; minutes on two CPU cores (the demo reports measured times).
`reduced` (get_config("mixture=mix6,reduced")) is the CI-sized variant: far fewer steps and examples.
"""

from __future__ import annotations

from visual_priors import experiment
from visual_priors.names import lookup

MIXTURES = {
    "mix0": "mix0",
    "mix6": "mix6",
    "code-heavy": "code=0.7,math=0.1,academia=0.1,web-crawl=0.1",
    "visual-heavy": "visual-description=0.4,literature=0.3,web-crawl=0.2,encyclopedia=0.1",
}
# Tuning of the demo on top of experiment.LOCAL_SETTINGS (dotted config paths). One question task per benchmark
# group (mixing many dilutes what each teaches), answered with the option's text (a nano model does not learn to
# look a letter up), thousands of distinct instruction items (a few hundred per task are memorised, not learned),
# the 32-pixel vit-tiny (vit-nano sees 16 pixels), 200 held-out questions per group (a 95% interval of about +-7
# points) and a small MLE-Bench.
DEMO_SETTINGS: dict = {
    "vision.encoder": "vit-tiny",
    "adapt.data.generated.tasks": "colour,sides_total,chart_max,count",
    "adapt.data.generated.mc_answer": "text",
    "adapt.data.generated.n_captions": 400,
    "adapt.data.generated.n_instruct": 16000,
    "adapt.data.generated.n_eval_per_benchmark": 200,
    "adapt.data.generated.n_mle_per_level": 32,
    "adapt.align.steps": 30,
    "adapt.align.batch_size": 32,
    "adapt.align.peak_lr": 2e-3,
    "adapt.sft.steps": 800,  # 1200 learned a little more and ran over the demo's 15-minute budget
    "adapt.sft.peak_lr": 3e-3,
}
REDUCED_SETTINGS = {
    "pretrain.token_budget": 40 * 8 * 64,
    "pretrain.batch_size": 8,
    "pretrain.seq_len": 64,
    "pretrain.warmup_steps": 4,
    "vision.contrastive.steps": 10,
    "vision.contrastive.batch_size": 16,
    "adapt.data.generated.n_captions": 32,
    "adapt.data.generated.n_instruct": 48,
    "adapt.data.generated.n_eval_per_benchmark": 4,
    "adapt.data.generated.n_mle_per_level": 4,
    "adapt.align.steps": 8,
    "adapt.align.batch_size": 8,
    "adapt.sft.steps": 10,
    "adapt.sft.batch_size": 8,
    "eval.max_new_tokens": 4,
    "eval.alignment.k": 3,
}
DEFAULTS = {"mixture": "mix6", "reduced": False, "untrained": False}


def get_config(arg: str | None = None):
  args = experiment.parse_arg(arg, DEFAULTS)
  mixture = lookup(MIXTURES, args["mixture"], "demo mixture")
  config = experiment.base_config()
  name = "untrained" if args["untrained"] else args["mixture"]
  config.name = f"demo/{name}" + ("-reduced" if args["reduced"] else "")
  config.description = ("Untrained-LM control of the demo (0 pre-training tokens)." if args["untrained"] else
                        f"Nano ablation of the demo: mixture {mixture}.")
  config.data.mixture = mixture
  config.meta.family = "demo"
  config = experiment.apply_local(config, {**DEMO_SETTINGS, **(REDUCED_SETTINGS if args["reduced"] else {})})
  if args["untrained"]:
    config.pretrain.token_budget = 0
  return config


def sweep(add):
  for name in MIXTURES:
    add(f"demo/{name}", f"mixture={name}")
  add("demo/untrained", "untrained=True")
