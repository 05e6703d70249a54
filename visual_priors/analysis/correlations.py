"""Perception vs reasoning: Spearman correlation of VQA group scores across runs, clustered into two groups.

The paper (docs/paper.md, section 5.3) correlates the four VQA group scores across 105 models and finds
General with OCR & Chart (perception) and Knowledge with Vision-Centric (reasoning). Here: a runs x columns
score matrix from the results frame, Spearman's rho between columns over the runs that have every column
(rank correlation with ties given their average rank), and average-linkage hierarchical clustering of the
columns on the distance 1 - rho, cut into two clusters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

VQA_GROUPS = ("General", "Knowledge", "OCR & Chart", "Vision-Centric")
# Optional extra columns: label -> (benchmark, metric).
EXTRA_COLUMNS: Mapping[str, tuple[str, str]] = {
    "MLE-Bench": ("mle_bench", "overall_weighted"),
    "Overall": ("overall", "accuracy"),
}
MIN_RUNS = 3


def score_matrix(frame: pd.DataFrame, columns: Mapping[str, tuple[str, str]] | None = None, *,
                 stage: str | None = None) -> pd.DataFrame:
  """Runs x columns of scores; `columns` maps a label to (benchmark, metric), default the four VQA groups.

  A (run, benchmark, metric) stored under several stages is ambiguous unless `stage` picks one. Runs
  missing a column keep a NaN there (see `complete_runs`).
  """
  columns = dict(columns) if columns is not None else {g: (f"group/{g}", "accuracy") for g in VQA_GROUPS}
  if not columns:
    raise ValueError("score_matrix needs at least one column.")
  rows = frame if stage is None else frame[frame["stage"] == stage]
  out = pd.DataFrame(index=pd.Index(sorted(rows["run"].unique()), name="run"))
  for label, (benchmark, metric) in columns.items():
    picked = rows[(rows["benchmark"] == benchmark) & (rows["metric"] == metric)]
    repeated = picked[picked.duplicated("run", keep=False)]
    if len(repeated):
      raise ValueError(f"Run {repeated['run'].iloc[0]!r} has {benchmark!r} {metric!r} in several stages "
                       f"({sorted(repeated['stage'].unique())}); pass stage= to choose one.")
    out[label] = picked.set_index("run")["value"].reindex(out.index)
  return out.astype(float)


def complete_runs(scores: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
  """The runs that have every column, and the names of the runs dropped for a missing one."""
  full = scores.notna().all(axis=1)
  return scores[full], list(scores.index[~full])


def average_ranks(x: np.ndarray) -> np.ndarray:
  """Ranks 1..n of a 1-D array, tied values sharing the mean of the ranks they span."""
  x = np.asarray(x, dtype=float)
  order = np.argsort(x, kind="mergesort")
  sorted_x = x[order]
  # Start index of each run of equal values in sorted order.
  starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
  ends = np.r_[starts[1:], len(x)]
  mean_rank_per_run = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
  ranks = np.empty(len(x))
  ranks[order] = np.repeat(mean_rank_per_run, ends - starts)
  return ranks


def spearman(scores: pd.DataFrame) -> pd.DataFrame:
  """Columns x columns Spearman rho over the rows (Pearson correlation of average ranks)."""
  if len(scores) < MIN_RUNS:
    raise ValueError(f"Spearman correlation needs at least {MIN_RUNS} runs with every column; got "
                     f"{len(scores)} ({list(scores.index)}).")
  if scores.isna().any().any():
    raise ValueError("Spearman input has missing scores; drop incomplete runs first (complete_runs).")
  ranks = np.stack([average_ranks(scores[c].to_numpy()) for c in scores.columns], axis=1)
  centred = ranks - ranks.mean(axis=0)
  norms = np.sqrt((centred ** 2).sum(axis=0))
  constant = [c for c, n in zip(scores.columns, norms) if n == 0]
  if constant:
    raise ValueError(f"Column(s) {constant} are constant across the {len(scores)} runs; their rank "
                     "correlation is undefined.")
  rho = (centred.T @ centred) / np.outer(norms, norms)
  np.fill_diagonal(rho, 1.0)
  return pd.DataFrame(np.clip(rho, -1.0, 1.0), index=scores.columns, columns=scores.columns)


@dataclasses.dataclass(frozen=True)
class Clustering:
  """Columns clustered on 1 - rho: named clusters, the dendrogram's leaf order, the scipy linkage matrix."""

  clusters: dict[str, list[str]]
  order: list[str]
  linkage: np.ndarray


def _cluster_name(members: Sequence[str], taken: set[str], index: int) -> str:
  if "General" in members and "perception" not in taken:
    return "perception"
  if "Knowledge" in members and "reasoning" not in taken:
    return "reasoning"
  return f"cluster {index}"


def cluster(rho: pd.DataFrame, n_clusters: int = 2) -> Clustering:
  """Average-linkage clustering on 1 - rho cut into `n_clusters`; the cluster holding General is
  "perception", the one holding Knowledge (if another) "reasoning", any other "cluster <k>"."""
  labels = list(rho.columns)
  if len(labels) < n_clusters:
    raise ValueError(f"Cannot cut {len(labels)} columns {labels} into {n_clusters} clusters.")
  distance = 1.0 - rho.to_numpy(dtype=float)
  distance = (distance + distance.T) / 2.0
  np.fill_diagonal(distance, 0.0)
  linkage = hierarchy.linkage(squareform(np.clip(distance, 0.0, 2.0), checks=False), method="average")
  assignment = hierarchy.fcluster(linkage, t=n_clusters, criterion="maxclust")
  order = [labels[i] for i in hierarchy.leaves_list(linkage)]
  # Clusters in the dendrogram's order; members of each in that order too.
  grouped: dict[int, list[str]] = {}
  for label in order:
    grouped.setdefault(int(assignment[labels.index(label)]), []).append(label)
  # Clusters holding General/Knowledge are named first, so "cluster <k>" never takes a meaningful name.
  ranked = sorted(grouped.values(), key=lambda m: ("General" not in m, "Knowledge" not in m, order.index(m[0])))
  clusters: dict[str, list[str]] = {}
  for index, members in enumerate(ranked, 1):
    clusters[_cluster_name(members, set(clusters), index)] = members
  return Clustering(clusters=clusters, order=order, linkage=linkage)


@dataclasses.dataclass(frozen=True)
class PerceptionReasoning:
  """The whole analysis: the scores it used, the runs it dropped, rho and the clustering."""

  scores: pd.DataFrame
  dropped_runs: list[str]
  rho: pd.DataFrame
  clustering: Clustering


def perception_reasoning(frame: pd.DataFrame, *, extra: Sequence[str] = (), stage: str | None = None
                         ) -> PerceptionReasoning:
  """The paper's analysis over every run with all four VQA group scores (and any `extra` columns, labels
  of `EXTRA_COLUMNS`, e.g. "MLE-Bench"). Fewer than 3 such runs is an error."""
  columns = {g: (f"group/{g}", "accuracy") for g in VQA_GROUPS}
  for label in extra:
    if label not in EXTRA_COLUMNS:
      raise ValueError(f"Unknown extra column {label!r}; choose from {list(EXTRA_COLUMNS)}.")
    columns[label] = EXTRA_COLUMNS[label]
  scores, dropped = complete_runs(score_matrix(frame, columns, stage=stage))
  if len(scores) < MIN_RUNS:
    raise ValueError(f"The perception-vs-reasoning analysis needs at least {MIN_RUNS} runs with scores for "
                     f"{list(columns)}; {len(scores)} have them ({len(dropped)} runs lack one).")
  rho = spearman(scores)
  return PerceptionReasoning(scores=scores, dropped_runs=dropped, rho=rho, clustering=cluster(rho))
