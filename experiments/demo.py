"""The demo's nano ablation: two mixtures and an untrained control through the whole pipeline on a CPU; 3 runs per seed.

Every run is `visual_priors.experiment.apply_local` (nano LM, contrastive image tower, short align and SFT, the
generated benchmarks) with `DEMO_SETTINGS` on top (see there); the runs of one seed share the generated data and
the vision tower (same stage keys) and differ only in the LM:
  demo/mix0          the paper's language-favourable mix0
  demo/mix6          the paper's balanced mix6
  demo/untrained     the control: the same LM untrained (0 pre-training tokens, the scale sweep's 0B run),
                     adapted and evaluated like the others; the report compares every run with it
`python -m visual_priors demo` runs each of them once per seed (visual_priors/demo.py `SEEDS`, the grid's seed
axis), and its report states the comparisons fixed in visual_priors/analysis/comparison.py.
Every source named is one the local corpora build (visual_priors/data/corpora/README.md).
The configs list one alignment vision model ("self"); `python -m visual_priors demo` adds a second, a random-init
DINOv2-layout tower in Hugging Face format written from a seed (visual_priors/demo.py, `ALIGNMENT_TOWER`), as an
override, so these experiments keep their stage keys.

Launch:   python -m visual_priors demo      (builds the local data first; or: python -m visual_priors
          grid --filter '^demo/' --seeds 0,1 once a segment store exists)
Cost:     each ~3.2e12 FLOPs; minutes on two CPU cores (the demo reports measured times).
`reduced` (get_config("mixture=mix6,reduced")) is the CI-sized variant: far fewer steps and examples.
"""

from __future__ import annotations

from visual_priors import experiment
from visual_priors.names import lookup

MIXTURES = {"mix0": "mix0", "mix6": "mix6"}
# Tuning of the demo on top of experiment.LOCAL_SETTINGS (dotted config paths), chosen for learning, never for the
# size or sign of a difference between mixtures (issue 18's probes; colour accuracy with the image vs blind, the
# same model with the images withheld, on 200 held-out questions, untrained LM unless said):
# - one question task per benchmark group, answered with the option's text (a nano model does not learn to look a
#   letter up), and only image questions: every fifth item text-only gave their long answers most of the loss
#   (four tasks with them: 24.0 vs 23.0; two tasks without: 36.5 vs 27.0);
# - the vit-tiny tower on 32-pixel images, read at its patch embeddings (feature_layer 0): after its two blocks
#   the patch tokens of one image are nearly alike (the photo behind the shapes dominates them); 36.5 vs 27.0 became
#   57.0 vs 18.0;
# - all 64 patch tokens as visual tokens: with 16 averaged ones the pre-trained mix6 LM reached 37.0 vs 26.5, with
#   64 57.0 vs 18.0;
# - thousands of distinct instruction items (a few hundred per task are memorised, not learned), SFT at 3e-3
#   (6e-3: 45.5), 200 held-out questions per group (a 95% interval of about +-7 points), a small MLE-Bench;
# - within the 15-minute budget for two seeds of three experiments: 409,600 pre-training tokens (half the local
#   recipe's), SFT one epoch of 12,800 items in 800 steps at 144 tokens (at 176 tokens the demo took 21 minutes),
#   and no answer-likelihood scoring (23 s of each run's 34 s of evaluation; with it, 600 steps fit: 13.7 minutes,
#   and colour reached 33-47%; the 800-step trial at 176 tokens, 57%).
DEMO_SETTINGS: dict = {
    "pretrain.token_budget": 200 * 16 * 128,
    "vision.encoder": "vit-tiny",
    "adapt.data.generated.tasks": "colour,sides_total,chart_max,count",
    "adapt.data.generated.mc_answer": "text",
    "adapt.data.generated.text_only_every": 0,
    "adapt.data.generated.n_captions": 400,
    "adapt.data.generated.n_instruct": 12800,
    "adapt.data.generated.n_eval_per_benchmark": 200,
    "adapt.data.generated.n_mle_per_level": 32,
    "adapt.align.steps": 30,
    "adapt.align.batch_size": 32,
    "adapt.align.peak_lr": 2e-3,
    "adapt.align.feature_layer": 0,
    "adapt.align.num_visual_tokens": 64,
    "adapt.align.seq_len": 128,
    "adapt.sft.steps": 800,
    "adapt.sft.peak_lr": 3e-3,
    "adapt.sft.seq_len": 144,
    "eval.likelihood": False,
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
    "adapt.align.num_visual_tokens": 16,  # room in the reduced rows for the reduced data's longer spellings
    "adapt.sft.steps": 10,
    "adapt.sft.batch_size": 8,
    "eval.max_new_tokens": 4,
    "eval.alignment.k": 3,
    "eval.likelihood": True,  # keeps the answer-likelihood path under test
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
