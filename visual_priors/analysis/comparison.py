"""The comparisons a grid states before it runs: per VQA group, whether each run learned from the images (above
chance and its blind control), whether pre-training helped (against the untrained control) and whether mixtures
differ, pooled over seeds with paired intervals.

The decision rules are fixed here, not chosen after seeing the numbers:
  learned     the run's 95% interval on the group lies above chance and above the interval of its blind control
              (the same questions asked with the images withheld); the table shows each group's parse rate, and
              `parse_ok` whether at least `MIN_PARSE_RATE` of all the run's replies parse to an answer;
  helped      a pre-trained experiment minus the untrained (0-token) control of the same scale, on the same
              questions, seed by seed, pooled over the seeds both ran: 95% interval above 0 ("hurt": below 0);
  differ      two pre-trained experiments against each other, the same way, at the Bonferroni-corrected level
              1 - 0.05 / (number of pairs); the mixtures differ in a group when any pair's interval excludes 0.
Otherwise the answer is "cannot tell", and the report says so.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from visual_priors.analysis import correlations, uncertainty
from visual_priors.analysis.results import Results, seed_groups

GROUPS = correlations.VQA_GROUPS
LEVEL = 0.95
MIN_PARSE_RATE = 90.0  # percent of replies that parse to an answer
LEARNED, NOT_LEARNED = "learned", "not learned"
HELPED, HURT, DIFFER, UNDECIDED = "helped", "hurt", "differ", "cannot tell"


def group_scores(results: Results, run: str, group: str, *, blind: bool = False) -> uncertainty.Scores:
  """benchmark -> question id -> score of `run`'s questions in one VQA group (images withheld when `blind`)."""
  items = results.items[(results.items["run"] == run) & (results.items["blind"].astype(bool) == blind)
                        & (results.items["group"] == group)]
  scores: dict[str, dict[str, float]] = {}
  for benchmark, item_id, score in zip(items["benchmark"], items["id"], items["score"]):
    scores.setdefault(benchmark, {})[item_id] = float(score)
  return scores


def _stored(results: Results, run: str, group: str, metric: str) -> float:
  frame = results.frame
  rows = frame[(frame["run"] == run) & (frame["benchmark"] == f"group/{group}") & (frame["metric"] == metric)]
  return float(rows["value"].iloc[0]) if len(rows) else math.nan


def run_label(results: Results, run: str) -> str:
  meta = results.runs.set_index("run")
  if run not in meta.index:
    return run
  name, seed = meta.loc[run, "name"], meta.loc[run, "seed"]
  return f"{name or run} (seed {seed})" if seed is not None and not pd.isna(seed) else str(name or run)


def learning_table(results: Results) -> pd.DataFrame:
  """One row per (run, group) with per-question scores: accuracy [95% interval] with the images and without,
  chance, the group's parse rate and the verdict of the `learned` rule."""
  rows = []
  scored = sorted(set(results.items["run"]), key=lambda run: run_label(results, run))
  for run in scored:
    for group in GROUPS:
      image, blind = group_scores(results, run, group), group_scores(results, run, group, blind=True)
      if not image:
        continue
      image_values = {m: list(scores.values()) for m, scores in image.items()}
      value = uncertainty.mean_of_means(image_values)
      low, high = uncertainty.bootstrap_interval(image_values, level=LEVEL)
      chance, parsed = _stored(results, run, group, "accuracy_chance"), _stored(results, run, group, "parse_rate")
      row = {"run": run_label(results, run), "group": group, "accuracy": uncertainty.format_interval(value, (low, high)),
             "blind": "missing", "chance": f"{chance:.1f}", "parsed %": f"{parsed:.1f}"}
      blind_high = math.inf
      if blind:
        blind_values = {m: list(scores.values()) for m, scores in blind.items()}
        blind_value = uncertainty.mean_of_means(blind_values)
        blind_interval = uncertainty.bootstrap_interval(blind_values, level=LEVEL)
        row["blind"] = uncertainty.format_interval(blind_value, blind_interval)
        blind_high = blind_interval[1]
      learned = low > chance and low > blind_high
      row["verdict"] = LEARNED if learned else NOT_LEARNED
      rows.append(row)
  return pd.DataFrame(rows)


def parse_ok(results: Results, run: str) -> bool:
  """Whether at least MIN_PARSE_RATE percent of the run's generated replies (all grouped VQA questions) parse."""
  rate = results.frame[(results.frame["run"] == run) & (results.frame["benchmark"] == "overall")
                       & (results.frame["metric"] == "parse_rate")]["value"]
  return bool(len(rate)) and float(rate.iloc[0]) >= MIN_PARSE_RATE


def _by_seed(results: Results) -> dict[str, dict[int, str]]:
  """Experiment name -> seed -> run, for the runs with per-question scores."""
  scored = set(results.items["run"])
  return {name: {seed: run for seed, run in runs.items() if run in scored}
          for name, runs in seed_groups(results).items()}


def seed_difference(results: Results, a: dict[int, str], b: dict[int, str], group: str,
                    level: float = LEVEL) -> uncertainty.Difference:
  """Experiment a minus experiment b (seed -> run each) on one group, paired by seed and question."""
  seeds = sorted(set(a) & set(b))
  if not seeds:
    raise ValueError("The two experiments share no seed: a seed-paired difference needs the same seeds.")
  return uncertainty.seed_paired_difference(
      [(group_scores(results, a[s], group), group_scores(results, b[s], group)) for s in seeds], level=level)


def _verdict(difference: uncertainty.Difference, positive: str, negative: str) -> str:
  if difference.low > 0:
    return positive
  if difference.high < 0:
    return negative
  return UNDECIDED


def _experiments(results: Results) -> tuple[dict[str, dict[int, str]], dict[str, dict[int, str]]]:
  """(untrained controls, pre-trained experiments): experiment name -> seed -> run, by pre-training tokens."""
  meta = results.runs.set_index("run")
  controls, trained = {}, {}
  for name, runs in _by_seed(results).items():
    if not runs:
      continue
    tokens = meta.loc[next(iter(runs.values())), "tokens"]
    (controls if tokens == 0 else trained)[name] = runs
  return controls, trained


def _scale(results: Results, runs: dict[int, str]):
  return results.runs.set_index("run").loc[next(iter(runs.values())), "scale"]


def pretraining_table(results: Results) -> pd.DataFrame:
  """Each pre-trained experiment minus the untrained control of its scale, per group: seed-pooled paired
  difference (points) [95% interval] and the verdict."""
  controls, trained = _experiments(results)
  by_scale = {_scale(results, runs): name for name, runs in controls.items()}
  table = {}
  for name, runs in trained.items():
    control = by_scale.get(_scale(results, runs))
    if control is None:
      continue
    cells = _difference_cells(results, runs, controls[control], HELPED, HURT)
    if cells:
      table[f"{name} - {control}"] = cells
  return pd.DataFrame.from_dict(table, orient="index")


def _difference_cells(results: Results, runs_a: dict[int, str], runs_b: dict[int, str], above: str, below: str,
                      level: float = LEVEL) -> dict[str, str]:
  """Per group with runs on both sides: "verdict: difference [interval]" of a minus b, pooled over seeds."""
  cells = {}
  for group in GROUPS:
    try:
      difference = seed_difference(results, runs_a, runs_b, group, level=level)
    except ValueError:
      continue
    cells[group] = f"{_verdict(difference, above, below)}: {difference.format()}"
  return cells


def mixture_pairs(results: Results) -> list[tuple[str, str]]:
  _, trained = _experiments(results)
  return [(a, b) for a, b in itertools.combinations(trained, 2)
          if _scale(results, trained[a]) == _scale(results, trained[b])]


def mixture_table(results: Results) -> pd.DataFrame:
  """Each pair of pre-trained experiments of one scale, per group: seed-pooled paired difference [interval at
  the Bonferroni-corrected level] and whether it excludes 0."""
  _, trained = _experiments(results)
  pairs = mixture_pairs(results)
  level = 1 - (1 - LEVEL) / max(len(pairs), 1)
  table = {}
  for a, b in pairs:
    cells = _difference_cells(results, trained[a], trained[b], DIFFER, DIFFER, level)
    if cells:
      table[f"{a} - {b}"] = cells
  return pd.DataFrame.from_dict(table, orient="index")


def statements(results: Results) -> list[str]:
  """The answers in words, one per group: did pre-training help, do the mixtures differ; empty without runs to
  compare."""
  pretraining, mixtures = pretraining_table(results), mixture_table(results)
  lines = []
  for group in GROUPS:
    parts = []
    if group in pretraining.columns:
      cells = pretraining[group].dropna()
      helped = [row.split(" - ")[0] for row, cell in cells.items() if cell.startswith(HELPED)]
      hurt = [row.split(" - ")[0] for row, cell in cells.items() if cell.startswith(HURT)]
      if helped or hurt:
        parts.append("pre-training helped " + (", ".join(helped) or "no experiment")
                     + (f" and hurt {', '.join(hurt)}" if hurt else ""))
      else:
        parts.append(f"no pre-trained experiment is told apart from the untrained control ({len(cells)} compared)")
    if group in mixtures.columns:
      cells = mixtures[group].dropna()
      differ = [row for row, cell in cells.items() if cell.startswith(DIFFER)]
      parts.append(f"the mixtures differ ({', '.join(differ)})" if differ else
                   f"no two mixtures are told apart ({len(cells)} pairs)")
    if parts:
      lines.append(f"{group}: " + "; ".join(parts) + ".")
  return lines
