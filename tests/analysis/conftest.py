"""Synthetic but realistic results for the analysis tests: the paper's grid of runs with seeded scores.

Scores come from a seeded formula (test-only): a capacity term from model size and tokens, a perception
term (broad/visual text) driving General and OCR & Chart, a reasoning term (reasoning share) driving
Knowledge and Vision-Centric, plus noise; so the perception/reasoning split is present in the data.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from visual_priors.analysis.results import ResultsStore

BENCHMARKS = {
    "General": ("gqa", "mme", "mmbench", "seed"),
    "Knowledge": ("scienceqa", "mmmu", "ai2d", "mathvista"),
    "OCR & Chart": ("textvqa", "chartqa", "ocrbench"),
    "Vision-Centric": ("realworldqa", "blink", "cvbench_coco", "cvbench_ade", "cvbench_omni3d"),
}
SCALES = (("340m", 340e6), ("1b", 1e9), ("3b", 3e9), ("7b", 7e9), ("13b", 13e9))
TOKENS_B = (0, 5, 10, 20, 30, 50, 70, 100)
SOURCES = ("academia", "arts", "biology", "code", "computer-science", "economics", "encyclopedia", "food", "law",
           "literature", "math", "medicine", "philosophy", "politics", "q-a-forum", "web-crawl")
# (reasoning comb., visual comb.) fractions; the six published sources, the rest invented for the formula.
PUBLISHED = {"web-crawl": (0.100, 0.269), "encyclopedia": (0.034, 0.124), "academia": (0.833, 0.053),
             "literature": (0.091, 0.335), "math": (0.929, 0.080), "code": (0.973, 0.037)}
CATEGORIES = ("code", "math", "science", "reasoning", "visual-concept", "visual-attribute", "visual-relationship",
              "visual")
MIXES = {
    "mix0": (50.0, 2.5, 2.5, 20.0, 5.0, 20.0), "mix1": (48.3, 3.4, 2.9, 17.0, 5.8, 22.5),
    "mix2": (46.7, 4.3, 3.3, 14.0, 6.7, 25.0), "mix3": (45.0, 5.2, 3.8, 11.0, 7.5, 27.5),
    "mix4": (43.3, 6.1, 4.2, 8.0, 8.3, 30.0), "mix5": (41.7, 7.1, 4.6, 5.0, 9.2, 32.5),
    "mix6": (40.0, 8.0, 5.0, 2.0, 10.0, 35.0), "mix7": (36.5, 7.0, 7.5, 2.0, 11.5, 35.5),
    "mix8": (33.0, 6.5, 9.5, 2.0, 12.0, 37.0), "mix9": (29.5, 6.0, 11.5, 2.0, 12.5, 38.5),
    "mix10": (26.0, 5.5, 12.5, 2.0, 13.0, 41.0),
}
MIX_SOURCES = ("web-crawl", "encyclopedia", "academia", "literature", "math", "code")
MLE_COUNTS = {"accuracy_small": 732, "accuracy_medium": 698, "accuracy_large": 431}
VISION_MODELS = ("dinov2", "clip", "mae")


def _mix_shares(weights):
  total = sum(weights)
  reasoning = sum(w / total * PUBLISHED[s][0] for s, w in zip(MIX_SOURCES, weights))
  visual = sum(w / total * PUBLISHED[s][1] for s, w in zip(MIX_SOURCES, weights))
  return reasoning, visual


def run_specs(rng: np.random.Generator) -> list[dict]:
  """Metadata of every synthetic run (the paper's families), each with its own formula inputs."""
  specs = []

  def add(name, family, *, scale="3b", params=3e9, tokens_b=30, reasoning=None, visual=None, **meta):
    r = reasoning if reasoning is not None else float(rng.uniform(0.05, 0.9))
    v = visual if visual is not None else float(rng.uniform(0.03, 0.35))
    specs.append({"meta": {"name": name, "family": family, "scale": scale, "params": int(params),
                           "tokens": int(tokens_b * 1e9), "reasoning_share": reasoning, "visual_share": visual,
                           **meta},
                  "r": r, "v": v, "params": params, "tokens_b": tokens_b})

  wr, wv = PUBLISHED["web-crawl"]
  for scale, params in SCALES:
    for tokens_b in TOKENS_B:
      add(f"scale/{scale}-{tokens_b}b", "scale", scale=scale, params=params, tokens_b=tokens_b, reasoning=wr,
          visual=wv, mixture="web-crawl=1", source="web-crawl")
  for source in SOURCES:
    r, v = PUBLISHED.get(source, (None, None))
    add(f"source/{source}", "source", reasoning=r, visual=v, mixture=f"{source}=1", source=source)
  for category in CATEGORIES:
    for proportion in (0.0, 0.25, 0.5, 0.75, 1.0):
      is_reasoning = not category.startswith("visual")
      r = 0.2 + 0.8 * proportion if is_reasoning else 0.2 * (1 - proportion)
      v = 0.15 * (1 - proportion) if is_reasoning else 0.15 + 0.85 * proportion
      add(f"category/{category}-{int(proportion * 100)}", "category", reasoning=r, visual=v,
          mixture=f"cat:{category}={proportion}", category=category, proportion=proportion)
  cells = [(r, v) for r in range(50, 90, 5) for v in (5, 10, 15)] + [(r, v) for r in (60, 65) for v in (20, 25, 30)]
  for r, v in cells:
    add(f"grid/r{r}-v{v}", "grid", reasoning=r / 100, visual=v / 100,
        mixture=f"cat:reasoning={r / 100},visual={v / 100}")
  for mix, weights in MIXES.items():
    r, v = _mix_shares(weights)
    add(f"mix/{mix}", "mix", tokens_b=50, reasoning=r, visual=v, mixture=mix)
  for mix in ("mix0", "mix6"):
    r, v = _mix_shares(MIXES[mix])
    add(f"blind/{mix}", "blind", tokens_b=50, reasoning=r, visual=v, mixture=mix, blind=True)
    add(f"scaleup/{mix}-7b-1t", "scaleup", scale="7b", params=7e9, tokens_b=1000, reasoning=r, visual=v,
        mixture=mix)
  for variant in ("full", "remove-perception-50", "remove-perception-100", "remove-reasoning-50",
                  "remove-reasoning-100"):
    add(f"sft_data/{variant}", "sft_data", reasoning=0.5, visual=0.15, mixture="mix6", sft_variant=variant)
  return specs


def run_id(name: str) -> str:
  return name.replace("/", "-") + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]


def _clip(x):
  return float(np.clip(x, 0.0, 100.0))


def eval_rows(spec: dict, rng: np.random.Generator) -> list[dict]:
  """The eval rows of one run, as the eval suite would write them."""
  capacity = (0.3 + 0.7 * math.log10(spec["params"] / 1e8) / 2.2) * (math.log1p(spec["tokens_b"]) / math.log1p(100))
  capacity = min(capacity, 1.3)
  perception = capacity * (0.4 + 0.6 * (1 - spec["r"]) + 0.8 * min(spec["v"], 0.2))
  reasoning = capacity * (0.3 + 0.9 * min(spec["r"], 0.8))
  if spec["meta"].get("sft_variant", "").startswith("remove-perception"):
    perception *= 0.8
  base = {"General": 30 + 35 * perception, "OCR & Chart": 12 + 40 * perception,
          "Knowledge": 25 + 30 * reasoning, "Vision-Centric": 35 + 22 * reasoning}
  rows, values = [], {}
  skip = {"mmmu"} if spec["meta"]["name"] == "category/code-50" else set()
  for group, names in BENCHMARKS.items():
    for i, benchmark in enumerate(names):
      if benchmark in skip:
        continue
      value = _clip(base[group] + 3 * (i - 1.5) + rng.normal(0, 1.5))
      values[benchmark] = (group, value)
      rows.append({"benchmark": benchmark, "group": group, "metric": "accuracy", "value": value, "count": 500})
      if spec["meta"].get("blind"):
        rows.append({"benchmark": benchmark, "group": group, "metric": "accuracy_blind",
                     "value": _clip(value * 0.6), "count": 500})
  cv = {split: values[f"cvbench_{split}"][1] for split in ("coco", "ade", "omni3d")}
  rows.append({"benchmark": "cvbench", "group": None, "metric": "accuracy",
               "value": float(np.mean([(cv["coco"] + cv["ade"]) / 2, cv["omni3d"]])), "count": 1500})
  for group in BENCHMARKS:
    mean = float(np.mean([v for g, v in values.values() if g == group]))
    rows.append({"benchmark": f"group/{group}", "group": group, "metric": "accuracy", "value": mean, "count": None})
  rows.append({"benchmark": "overall", "group": None, "metric": "accuracy",
               "value": float(np.mean([v for _, v in values.values()])), "count": None})
  if spec["meta"]["family"] != "sft_data":
    levels = {m: _clip(20 + 45 * perception * f + rng.normal(0, 1))
              for m, f in zip(MLE_COUNTS, (0.7, 1.0, 1.2))}
    rows += [{"benchmark": "mle_bench", "group": None, "metric": m, "value": v, "count": MLE_COUNTS[m]}
             for m, v in levels.items()]
    weighted = sum(levels[m] * n for m, n in MLE_COUNTS.items()) / sum(MLE_COUNTS.values())
    rows += [{"benchmark": "mle_bench", "group": None, "metric": "overall_weighted", "value": weighted,
              "count": sum(MLE_COUNTS.values())},
             {"benchmark": "mle_bench", "group": None, "metric": "overall_unweighted",
              "value": float(np.mean(list(levels.values()))), "count": sum(MLE_COUNTS.values())}]
  ppl = {b: 15 + 400 / (1 + 8 * capacity) + rng.normal(0, 0.5) for b in ("wikitext", "lambada")}
  zero_shot = {t: _clip(35 + 30 * capacity + rng.normal(0, 1)) for t in ("piqa", "hellaswag", "arc_easy")}
  rows += [{"benchmark": b, "group": None, "metric": "perplexity", "value": v, "count": None} for b, v in ppl.items()]
  for task, value in zero_shot.items():
    rows += [{"benchmark": task, "group": None, "metric": "accuracy", "value": value, "count": 1000},
             {"benchmark": task, "group": None, "metric": "accuracy_norm", "value": _clip(value + 2), "count": 1000}]
  rows += [{"benchmark": "language", "group": None, "metric": "perplexity_mean",
            "value": float(np.mean(list(ppl.values()))), "count": None},
           {"benchmark": "language", "group": None, "metric": "zero_shot_mean",
            "value": float(np.mean(list(zero_shot.values()))), "count": None}]
  knn = {m: float(np.clip(0.05 + 0.2 * reasoning + rng.normal(0, 0.01), 0, 1)) for m in VISION_MODELS}
  rows += [{"benchmark": f"alignment/{m}", "group": None, "metric": "mutual_knn", "value": v, "count": 1024}
           for m, v in knn.items()]
  rows.append({"benchmark": "alignment", "group": None, "metric": "mutual_knn",
               "value": float(np.mean(list(knn.values()))), "count": 1024})
  for benchmark, group, shift in (("reasoning_probe", None, 0), ("reasoning_probe/Knowledge", "Knowledge", 3),
                                  ("reasoning_probe/Vision-Centric", "Vision-Centric", -3)):
    rows += [{"benchmark": benchmark, "group": group, "metric": "logical_soundness",
              "value": _clip(40 + 40 * reasoning + shift), "count": 200},
             {"benchmark": benchmark, "group": group, "metric": "reasoning_depth",
              "value": 20 + 60 * reasoning + shift, "count": 200}]
  return rows


def build_fixture_results(root, *, seed: int = 0, families=None) -> ResultsStore:
  """Writes the synthetic grid (optionally only some families) into a ResultsStore at `root`."""
  rng = np.random.default_rng(seed)
  store = ResultsStore(root)
  for spec in run_specs(rng):
    if families is not None and spec["meta"]["family"] not in families:
      continue
    run = run_id(spec["meta"]["name"])
    store.put_run(run, spec["meta"])
    store.put(run, "eval", eval_rows(spec, rng))
  return store


@pytest.fixture(scope="session")
def fixture_store(tmp_path_factory) -> ResultsStore:
  """The whole synthetic grid (~146 runs), built once per session; tests must not write to it."""
  return build_fixture_results(tmp_path_factory.mktemp("results"))


@pytest.fixture
def build_results():
  return build_fixture_results
