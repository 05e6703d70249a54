"""The paper's findings as data, each checked against a grid of runs with intervals (the report's paper panel).

Han et al., "Learning to See Before Seeing" (arXiv 2509.26625; docs/paper.md) publish their findings as
statements over their grid (section 6 of docs/paper.md, and the scale-up and correlation results of sections
3 and 5). Each `Finding` keeps the statement, where it comes from, and a check that looks for the runs the
statement is about in a set of results and says what they show, with 95% intervals: "supported",
"contradicted", "too small to tell" (the intervals straddle the claim) or "not in this grid" (the runs it
needs are absent). A grid of nano runs is expected to say "too small to tell" for most of them, and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pandas as pd

from visual_priors.analysis import correlations, uncertainty
from visual_priors.analysis.results import Results, run_order

GROUPS = correlations.VQA_GROUPS
SUPPORTED, CONTRADICTED, UNDECIDED, ABSENT = "supported", "contradicted", "too small to tell", "not in this grid"


@dataclasses.dataclass(frozen=True)
class Verdict:
  status: str
  evidence: str


@dataclasses.dataclass(frozen=True)
class Finding:
  key: str
  claim: str
  source: str
  check: Callable[[Results], Verdict]


def _sign(lows: list[float], highs: list[float]) -> str:
  if all(low > 0 for low in lows):
    return SUPPORTED
  if any(high < 0 for high in highs):
    return CONTRADICTED
  return UNDECIDED


def _meta(results: Results) -> pd.DataFrame:
  return results.runs.set_index("run")


def group_difference(results: Results, a: str, b: str, group: str | None) -> uncertainty.Difference:
  """Run `a` minus run `b` on the questions both answered of one VQA group (None: every grouped benchmark)."""
  items = results.items[~results.items["blind"].astype(bool)]
  group_of = dict(zip(items["benchmark"], items["group"]))
  sa, sb = results.item_scores(a), results.item_scores(b)
  members = [m for m in sa if group_of.get(m) is not None and (group is None or group_of[m] == group)]
  return uncertainty.paired_difference({m: sa[m] for m in members}, {m: sb.get(m, {}) for m in members})


def check_pretraining_helps(results: Results) -> Verdict:
  """Every pre-trained run against an untrained (0-token) run of the same scale, overall VQA accuracy."""
  meta = _meta(results)
  scored = [r for r in run_order(results) if r in meta.index and results.item_scores(r)]
  controls = {meta.loc[r, "scale"]: r for r in scored if meta.loc[r, "tokens"] == 0}
  pairs = [(r, controls[meta.loc[r, "scale"]]) for r in scored
           if meta.loc[r, "tokens"] not in (0, None) and meta.loc[r, "scale"] in controls]
  if not pairs:
    return Verdict(ABSENT, "needs an untrained (0-token) run and a pre-trained run of the same scale, with "
                           "per-question scores")
  differences = [(run, group_difference(results, run, control, None)) for run, control in pairs]
  evidence = "; ".join(f"{meta.loc[r, 'name'] or r} {d.format()}" for r, d in differences)
  return Verdict(_sign([d.low for _, d in differences], [d.high for _, d in differences]),
                 f"overall accuracy minus the untrained control's: {evidence}")


def check_mix6_beats_mix0(results: Results) -> Verdict:
  """mix6 minus mix0 on every VQA group, for runs that agree on family, scale and tokens."""
  meta = _meta(results)
  scored = [r for r in run_order(results) if r in meta.index and results.item_scores(r)]
  by = {}
  for run in scored:
    by.setdefault((meta.loc[run, "family"], meta.loc[run, "scale"], meta.loc[run, "tokens"],
                   meta.loc[run, "mixture"]), run)
  pairs = [(run, by[(f, s, t, "mix0")]) for (f, s, t, m), run in by.items() if m == "mix6" and (f, s, t, "mix0") in by]
  if not pairs:
    return Verdict(ABSENT, "needs a mix0 and a mix6 run of the same family, scale and tokens")
  lows, highs, parts = [], [], []
  for mix6, mix0 in pairs:
    for group in GROUPS:
      try:
        difference = group_difference(results, mix6, mix0, group)
      except ValueError:
        continue
      lows.append(difference.low)
      highs.append(difference.high)
      parts.append(f"{group} {difference.format()}")
  if not parts:
    return Verdict(ABSENT, "the mix0 and mix6 runs share no scored VQA group")
  return Verdict(_sign(lows, highs), "mix6 minus mix0: " + "; ".join(parts))


def check_reasoning_share(results: Results) -> Verdict:
  """Spearman rho (bootstrap interval over runs) of the reasoning share against Knowledge and Vision-Centric."""
  scores = correlations.score_matrix(results.frame, {g: (f"group/{g}", "accuracy") for g in GROUPS})
  shares = _meta(results)["reasoning_share"].dropna().astype(float)
  common = [run for run in scores.index if run in shares.index]
  if len(common) < 5:
    return Verdict(ABSENT, f"needs at least 5 runs with a known reasoning share and VQA scores ({len(common)} here)")
  lows, highs, parts = [], [], []
  for group in ("Knowledge", "Vision-Centric"):
    values = scores.loc[common, group].dropna()
    if len(values) < 5:
      continue
    x = shares.loc[values.index].to_numpy()
    rho = float(pd.Series(x).rank().corr(pd.Series(values.to_numpy()).rank()))
    low, high = uncertainty.spearman_interval(x, values.to_numpy())
    lows.append(low)
    highs.append(high)
    parts.append(f"{group} rho {uncertainty.format_interval(rho, (low, high), digits=2)} over {len(values)} runs")
  if not parts:
    return Verdict(ABSENT, "too few runs with Knowledge or Vision-Centric scores")
  return Verdict(_sign(lows, highs), "; ".join(parts))


def check_clusters(results: Results) -> Verdict:
  """The four VQA groups cluster as General + OCR & Chart (perception) and Knowledge + Vision-Centric."""
  try:
    analysis = correlations.perception_reasoning(results.frame)
  except ValueError as error:
    return Verdict(ABSENT, str(error))
  found = {frozenset(members) for members in analysis.clustering.clusters.values()}
  expected = {frozenset({"General", "OCR & Chart"}), frozenset({"Knowledge", "Vision-Centric"})}
  n = len(analysis.scores)
  if n < 10:
    return Verdict(UNDECIDED, f"{n} runs: too few for a stable clustering; found "
                              f"{sorted(sorted(c) for c in found)}")
  return Verdict(SUPPORTED if found == expected else CONTRADICTED,
                 f"{n} runs; clusters {sorted(sorted(c) for c in found)}")


def check_web_crawl_perception(results: Results) -> Verdict:
  """Among single-source runs, web-crawl ranks first on General and on OCR & Chart."""
  scores = correlations.score_matrix(results.frame, {g: (f"group/{g}", "accuracy") for g in GROUPS})
  meta = _meta(results)
  single = [r for r in scores.index if r in meta.index and meta.loc[r, "family"] == "source"]
  sources = {r: meta.loc[r, "source"] for r in single}
  if "web-crawl" not in sources.values() or len(single) < 3:
    return Verdict(ABSENT, "needs single-source runs including web-crawl")
  parts, best = [], []
  for group in ("General", "OCR & Chart"):
    column = scores.loc[single, group].dropna()
    top = column.idxmax()
    best.append(sources[top] == "web-crawl")
    parts.append(f"{group}: best {sources[top]} ({column.max():.1f}), web-crawl "
                 f"{column[[r for r in column.index if sources[r] == 'web-crawl']].max():.1f}")
  return Verdict(SUPPORTED if all(best) else CONTRADICTED, "; ".join(parts))


FINDINGS: tuple[Finding, ...] = (
    Finding("pretraining_helps", "Language pre-training creates visual priors: pre-trained LMs adapt to higher VQA "
            "accuracy than the untrained (0-token) LM.", "scale sweep, 0B budget (docs/paper.md, sections 1 and 3)",
            check_pretraining_helps),
    Finding("reasoning_share", "Visual reasoning (Knowledge, Vision-Centric) improves with the share of "
            "reasoning-centric text, up to about 75%.", "category sweeps (docs/paper.md, section 6)",
            check_reasoning_share),
    Finding("clusters", "Across models, General clusters with OCR & Chart (perception) and Knowledge with "
            "Vision-Centric (reasoning).", "Spearman analysis over 105 models (docs/paper.md, section 5)",
            check_clusters),
    Finding("web_crawl", "Perception comes from broad data: web-crawl is the best single source on General and "
            "OCR & Chart.", "single-source runs (docs/paper.md, section 6)", check_web_crawl_perception),
    Finding("mix6_over_mix0", "The balanced mix6 beats the language-favourable mix0 on every VQA group.",
            "scale-up verification at 7B / 1T (docs/paper.md, sections 3 and 6)", check_mix6_beats_mix0),
)


def findings_table(results: Results) -> pd.DataFrame:
  """One row per finding: the claim, its source, what these results show and the verdict."""
  rows = []
  for finding in FINDINGS:
    verdict = finding.check(results)
    rows.append({"finding": finding.claim, "paper": finding.source, "this grid": verdict.evidence,
                 "verdict": verdict.status})
  return pd.DataFrame(rows, index=[f.key for f in FINDINGS])
