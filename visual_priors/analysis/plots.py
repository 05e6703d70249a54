"""One plot per finding of the study, drawn from result rows and run metadata into PNG files.

Each `plot_*` function takes `Results` and an output path and returns a `Plot`: its path, or no path and
the reason it was not drawn (the runs it needs are absent). Figures are built with matplotlib's
object-oriented API on the Agg canvas (no pyplot state, no display), with fixed sizes, colours and orders,
so the same results give the same image.

Units: VQA scores are accuracies in % (0..100); token budgets are shown in billions; the metadata's
`reasoning_share`, `visual_share` and `proportion` are fractions in [0, 1] (as `config.finalize` derives
them) and are shown in %; a column whose values already exceed 1 is taken to be in % as stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pathlib
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # before any figure exists; analysis never opens a window

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from visual_priors.analysis import correlations, uncertainty  # noqa: E402
from visual_priors.analysis.results import Results, run_order  # noqa: E402

GROUPS = correlations.VQA_GROUPS
PANELS = ("Overall", *GROUPS)
MLE_LEVELS = {"accuracy_small": "small (0-30%)", "accuracy_medium": "medium (30-60%)",
              "accuracy_large": "large (60-100%)", "overall_weighted": "overall (sample-weighted, paper)",
              "overall_unweighted": "overall (mean of levels, lmms-eval)", "accuracy_chance": "chance"}
MLE_BENCHMARKS = ("mle_bench", "gen_mle_bench")
DPI = 100
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
         "axes.prop_cycle": matplotlib.cycler(color=matplotlib.colormaps["tab10"].colors)}


@dataclasses.dataclass(frozen=True)
class Plot:
  """A drawn figure (path set) or a skipped one (path None, reason set)."""

  name: str
  title: str
  path: pathlib.Path | None = None
  reason: str | None = None


def write_bytes_atomic(path: pathlib.Path, data: bytes) -> None:
  """Writes `data` to `path` through a temporary sibling and a rename."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def _figure(width: float, height: float) -> Figure:
  return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: pathlib.Path) -> pathlib.Path:
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
  write_bytes_atomic(path, buffer.getvalue())
  return pathlib.Path(path)


def vqa_scores(results: Results, metric: str = "accuracy") -> pd.DataFrame:
  """Runs (with any VQA aggregate) x ["Overall", *groups] accuracies (%), NaN where a run lacks one,
  joined with the run metadata."""
  columns = {"Overall": ("overall", metric), **{g: (f"group/{g}", metric) for g in GROUPS}}
  scores = correlations.score_matrix(results.frame, columns).dropna(how="all")
  meta = results.runs.set_index("run")
  return scores.join(meta, how="left")


def aggregate_interval(results: Results, run: str, benchmark: str, value: float, count: float | None
                       ) -> tuple[tuple[float, float], bool]:
  """(95% interval, bootstrapped) of a stored VQA accuracy row of `run`: a bootstrap over the run's questions
  of the benchmarks behind it (a benchmark, a "group/<G>" mean or the "overall"), where per-question scores
  are stored; else the Wilson interval of `value` over `count` (bootstrapped False)."""
  items = results.items[(results.items["run"] == run) & ~results.items["blind"].astype(bool)]
  if len(items):
    if benchmark == "overall":
      items = items[items["group"].notna()]
    elif benchmark.startswith("group/"):
      items = items[items["group"] == benchmark.removeprefix("group/")]
    else:
      items = items[items["benchmark"] == benchmark]
  if len(items):
    members = {b: part["score"].astype(float).to_numpy() for b, part in items.groupby("benchmark")}
    return uncertainty.bootstrap_interval(members), True
  n = int(count) if count is not None and pd.notna(count) else 0
  return uncertainty.wilson_interval(value, n), False


def vqa_errors(results: Results, order: Sequence[str], metric: str = "accuracy") -> dict[str, np.ndarray]:
  """Panel -> (2, runs) lower and upper error-bar lengths of the VQA aggregates of `order` (NaN: no value)."""
  frame = results.frame[results.frame["metric"] == metric]
  stored = {(r, b): (v, n) for r, b, v, n in zip(frame["run"], frame["benchmark"], frame["value"], frame["count"])}
  errors = {}
  for panel in PANELS:
    benchmark = "overall" if panel == "Overall" else f"group/{panel}"
    bars = np.full((2, len(order)), np.nan)
    for i, run in enumerate(order):
      if (run, benchmark) in stored:
        value, count = stored[run, benchmark]
        if metric == "accuracy":  # the per-question scores stored are the generated answers'
          (low, high), _ = aggregate_interval(results, run, benchmark, value, count)
        else:
          low, high = uncertainty.wilson_interval(value, int(count) if pd.notna(count) else 0)
        bars[:, i] = (value - low, high - value)
    errors[panel] = bars
  return errors


def _family(results: Results, family: str) -> pd.DataFrame:
  scores = vqa_scores(results)
  return scores[scores["family"] == family]


def as_percent(values: pd.Series) -> pd.Series:
  """Fractions in [0, 1] -> %, values stored in % (any above 1) unchanged."""
  values = pd.to_numeric(values, errors="coerce").astype(float)
  return values if (values > 1.0).any() else values * 100.0


def _panels(fig: Figure, n: int = len(PANELS), columns: int = 3):
  rows = -(-n // columns)
  axes = fig.subplots(rows, columns, squeeze=False).ravel()
  for ax in axes[n:]:
    ax.set_visible(False)
  return axes[:n]


def _annotate(ax, values: np.ndarray, fmt: str, fontsize: float) -> None:
  """Writes each finite cell's value on a heat map, dark text on the bright half of the colour range."""
  finite = values[np.isfinite(values)]
  if not finite.size:
    return
  low, high = float(finite.min()), float(finite.max())
  middle = (low + high) / 2
  for (i, j), value in np.ndenumerate(values):
    if np.isfinite(value):
      ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=fontsize,
              color="black" if value >= middle else "white")


def _absent(name: str, title: str, reason: str) -> Plot:
  return Plot(name=name, title=title, reason=reason)


def plot_scale(results: Results, out_path: pathlib.Path) -> Plot:
  """Family "scale": VQA score vs pre-training tokens, one line per model scale, a panel per group."""
  name, title = "scale", "VQA accuracy vs pre-training tokens, per model scale (web-crawl)"
  runs = _family(results, "scale").dropna(subset=["tokens", "scale"])
  if runs.empty:
    return _absent(name, title, "no runs of family 'scale' with token budget, scale and VQA scores")
  runs = runs.assign(tokens_b=pd.to_numeric(runs["tokens"]).astype(float) / 1e9)
  params = pd.to_numeric(runs["params"], errors="coerce").fillna(np.inf)
  scale_params = runs.assign(_p=params).groupby("scale")["_p"].min()
  scales = sorted(scale_params.index, key=lambda s: (scale_params[s], str(s)))
  with matplotlib.rc_context(STYLE):
    fig = _figure(12, 6.5)
    for ax, panel in zip(_panels(fig), PANELS):
      for scale in scales:
        line = runs[runs["scale"] == scale].dropna(subset=[panel]).groupby("tokens_b")[panel].mean()
        if len(line):
          ax.plot(line.index, line.to_numpy(), marker="o", label=str(scale))
      ax.set_xscale("symlog", linthresh=5.0)
      ax.set_title(panel)
      ax.set_xlabel("pre-training tokens (billions, symlog)")
      ax.set_ylabel("accuracy (%)")
    fig.axes[0].legend(title="scale", fontsize=8)
    fig.suptitle(title)
    return Plot(name, title, _save(fig, out_path))


def plot_sources(results: Results, out_path: pathlib.Path) -> Plot:
  """Family "source": one group of bars per pre-training source (overall and the four VQA groups)."""
  name, title = "source", "VQA accuracy per single pre-training source"
  runs = _family(results, "source").dropna(subset=["source"])
  if runs.empty:
    return _absent(name, title, "no runs of family 'source' with a source and VQA scores")
  table = runs.groupby("source")[list(PANELS)].mean()
  table = table.sort_values("Overall", ascending=False, kind="stable")
  with matplotlib.rc_context(STYLE):
    fig = _figure(max(8.0, 0.7 * len(table) + 2), 4.8)
    _bars(fig.subplots(), table, "pre-training source (sorted by overall accuracy)", title)
    return Plot(name, title, _save(fig, out_path))


def _bars(ax, table: pd.DataFrame, xlabel: str, title: str, errors: Mapping[str, np.ndarray] | None = None) -> None:
  """One group of bars per row of `table` (overall and the four VQA groups), with 95% error bars if given."""
  width = 0.8 / len(PANELS)
  x = np.arange(len(table))
  for i, panel in enumerate(PANELS):
    error = None if errors is None else np.nan_to_num(errors[panel])
    ax.bar(x + (i - (len(PANELS) - 1) / 2) * width, table[panel].to_numpy(), width, label=panel, yerr=error,
           error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "#333"})
  highest = np.nanmax(table.to_numpy(dtype=float), initial=0.0)
  ax.set_ylim(0, max(1.0, 1.25 * highest))  # room for the legend above the bars
  ax.set_xticks(x, table.index, rotation=40, ha="right")
  ax.set_xlabel(xlabel)
  ax.set_ylabel("accuracy (%)")
  ax.legend(ncols=len(PANELS), fontsize=8, loc="upper right")
  ax.set_title(title)


MAX_RUN_BARS = 24


def plot_runs(results: Results, out_path: pathlib.Path) -> Plot:
  """Any family, up to `MAX_RUN_BARS` runs: bars of the VQA groups per run with 95% error bars, by generated
  answer and, where the eval suite scored it, by answer likelihood; chance (of the multiple-choice and yes/no
  questions) as a dashed line where stored."""
  name, title = "runs", "VQA accuracy per run"
  metrics = [(m, label) for m, label in (("accuracy", "generated answers (the paper's protocol)"),
                                         ("accuracy_likelihood", "answer likelihood (options' text)"))
             if not vqa_scores(results, m).empty]
  if not metrics:
    return _absent(name, title, "no runs with VQA scores")
  order = [run for run in run_order(results) if run in vqa_scores(results, metrics[0][0]).index]
  if len(order) > MAX_RUN_BARS:
    return _absent(name, title, f"{len(order)} runs: too many for one bar chart (the family plots show them)")
  meta = results.runs.set_index("run")
  labels = [str(meta.loc[run, "name"]) if run in meta.index and meta.loc[run, "name"] else run for run in order]
  with matplotlib.rc_context(STYLE):
    fig = _figure(max(8.0, 0.45 * len(order) + 3), 4.6 * len(metrics))
    for ax, (metric, label) in zip(fig.subplots(len(metrics), 1, squeeze=False).ravel(), metrics):
      table = vqa_scores(results, metric).reindex(order)[list(PANELS)]
      table.index = labels
      _bars(ax, table, "run", f"{title}: {label} (95% intervals)", errors=vqa_errors(results, order, metric))
      chance = vqa_scores(results, "accuracy_chance")
      chance = chance.reindex(order)["Overall"] if "Overall" in chance else None
      if chance is not None and chance.notna().any():
        ax.axhline(float(chance.mean()), color="black", linestyle="--", linewidth=1, label="chance (overall)")
        ax.legend(ncols=len(PANELS) + 1, fontsize=8, loc="upper right")
    return Plot(name, title, _save(fig, out_path))


def plot_categories(results: Results, out_path: pathlib.Path) -> Plot:
  """Family "category": score vs the category's share of the pre-training data, one line per category."""
  name, title = "category", "VQA accuracy vs proportion of a label category in pre-training"
  runs = _family(results, "category").dropna(subset=["category", "proportion"])
  if runs.empty:
    return _absent(name, title, "no runs of family 'category' with category, proportion and VQA scores")
  runs = runs.assign(percent=as_percent(runs["proportion"]))
  categories = sorted(runs["category"].unique())
  with matplotlib.rc_context(STYLE):
    fig = _figure(12, 6.5)
    for ax, panel in zip(_panels(fig), PANELS):
      for category in categories:
        line = runs[runs["category"] == category].dropna(subset=[panel]).groupby("percent")[panel].mean()
        if len(line):
          ax.plot(line.index, line.to_numpy(), marker="o", label=str(category))
      ax.set_xlim(-3, 103)
      ax.set_title(panel)
      ax.set_xlabel("category proportion (% of tokens)")
      ax.set_ylabel("accuracy (%)")
    fig.axes[0].legend(title="category", fontsize=7)
    fig.suptitle(title)
    return Plot(name, title, _save(fig, out_path))


def plot_grid(results: Results, out_path: pathlib.Path) -> Plot:
  """Family "grid": heat maps of score over reasoning share (rows) x visual share (columns)."""
  name, title = "grid", "VQA accuracy over the reasoning x visual share grid"
  runs = _family(results, "grid").dropna(subset=["reasoning_share", "visual_share"])
  if runs.empty:
    return _absent(name, title, "no runs of family 'grid' with reasoning/visual shares and VQA scores")
  runs = runs.assign(reasoning=as_percent(runs["reasoning_share"]).round(1),
                     visual=as_percent(runs["visual_share"]).round(1))
  with matplotlib.rc_context({**STYLE, "axes.grid": False}):
    fig = _figure(13, 8)
    for ax, panel in zip(_panels(fig), PANELS):
      cells = runs.pivot_table(index="reasoning", columns="visual", values=panel, aggfunc="mean")
      cells = cells.sort_index().sort_index(axis=1)
      if cells.empty:
        ax.set_title(f"{panel}: no scores")
        continue
      image = ax.imshow(np.ma.masked_invalid(cells.to_numpy()), origin="lower", aspect="auto", cmap="viridis")
      ax.set_xticks(range(cells.shape[1]), [f"{v:g}" for v in cells.columns])
      ax.set_yticks(range(cells.shape[0]), [f"{v:g}" for v in cells.index])
      _annotate(ax, cells.to_numpy(), ".1f", 6)
      ax.set_title(panel)
      ax.set_xlabel("visual share (% of tokens)")
      ax.set_ylabel("reasoning share (% of tokens)")
      fig.colorbar(image, ax=ax, label="accuracy (%)")
    fig.suptitle(title)
    return Plot(name, title, _save(fig, out_path))


def mix_index(mixture: object, name: object) -> int | None:
  """The N of a "mixN" mixture (or run name), else None."""
  for text in (mixture, name):
    found = re.search(r"\bmix(\d+)\b", str(text)) if text is not None else None
    if found:
      return int(found.group(1))
  return None


def plot_mix(results: Results, out_path: pathlib.Path) -> Plot:
  """Family "mix": scores over mix0..mix10, plus the language perplexity when it was measured."""
  name, title = "mix", "VQA accuracy (and perplexity) over the mix0..mix10 interpolation"
  runs = _family(results, "mix")
  runs = runs.assign(index=[mix_index(m, n) for m, n in zip(runs["mixture"], runs["name"])]).dropna(
      subset=["index"])
  if runs.empty:
    return _absent(name, title, "no runs of family 'mix' with a mixN mixture and VQA scores")
  by_mix = runs.groupby("index")[list(PANELS)].mean().sort_index()
  frame = results.frame
  perplexity = frame[(frame["benchmark"] == "language") & (frame["metric"] == "perplexity_mean")]
  perplexity = perplexity.groupby("run")["value"].mean().reindex(runs.index).groupby(runs["index"]).mean().dropna()
  with matplotlib.rc_context(STYLE):
    fig = _figure(10, 4.8)
    ax = fig.subplots()
    for panel in PANELS:
      ax.plot(by_mix.index, by_mix[panel].to_numpy(), marker="o", label=panel,
              linewidth=2.5 if panel == "Overall" else 1.2)
    ax.set_xticks(by_mix.index, [f"mix{int(i)}" for i in by_mix.index], rotation=30)
    ax.set_xlabel("mixture (language-favourable mix0 -> reasoning-heavy mix10)")
    ax.set_ylabel("accuracy (%)")
    handles, labels = ax.get_legend_handles_labels()
    if len(perplexity):
      twin = ax.twinx()
      line = twin.plot(perplexity.index, perplexity.to_numpy(), color="black", linestyle="--", marker="s",
                       label="perplexity (mean of Wikitext, LAMBADA)")
      twin.set_ylabel("perplexity")
      twin.grid(False)
      handles, labels = handles + line, labels + [line[0].get_label()]
    fig.legend(handles, labels, fontsize=8, loc="outside right upper")
    ax.set_title(title)
    return Plot(name, title, _save(fig, out_path))


def plot_correlation(results: Results, out_path: pathlib.Path) -> Plot:
  """Spearman rho between VQA groups across runs, in the clustering's order, with its dendrogram."""
  name, title = "correlation", "Spearman correlation of VQA group scores across runs"
  try:
    analysis = correlations.perception_reasoning(results.frame)
  except ValueError as error:
    return _absent(name, title, str(error))
  from scipy.cluster import hierarchy  # noqa: PLC0415 (only this plot needs it)
  order = analysis.clustering.order
  rho = analysis.rho.loc[order, order].to_numpy()
  with matplotlib.rc_context({**STYLE, "axes.grid": False}):
    fig = _figure(6.5, 7)
    top, bottom = fig.subplots(2, 1, height_ratios=[1, 3])
    hierarchy.dendrogram(analysis.clustering.linkage, ax=top, labels=list(analysis.rho.columns),
                         no_labels=True, color_threshold=0, above_threshold_color="black")
    top.set_ylabel("distance (1 - rho)")
    top.set_xticks([])
    image = bottom.imshow(rho, vmin=-1, vmax=1, cmap="RdBu_r")
    bottom.set_xticks(range(len(order)), order, rotation=30, ha="right")
    bottom.set_yticks(range(len(order)), order)
    for (i, j), value in np.ndenumerate(rho):
      bottom.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=9)
    fig.colorbar(image, ax=bottom, label="Spearman rho")
    clusters = "; ".join(f"{k}: {', '.join(v)}" for k, v in analysis.clustering.clusters.items())
    top.set_title(f"{title} (n = {len(analysis.scores)})\n{clusters}")
    return Plot(name, title, _save(fig, out_path))


def plot_mle_bench(results: Results, out_path: pathlib.Path) -> Plot:
  """MLE-Bench accuracy by object-size level (and both overalls) per run, as a runs x levels heat map."""
  name, title = "mle_bench", "MLE-Bench accuracy by object size, per run"
  frame = results.frame
  rows = frame[frame["benchmark"].isin(MLE_BENCHMARKS) & frame["metric"].isin(list(MLE_LEVELS))]
  if rows.empty:
    return _absent(name, title, "no MLE-Bench rows")
  suffix = np.where(rows["benchmark"] == "mle_bench", "", " [" + rows["benchmark"] + "]")
  labelled = rows.assign(label=rows["run"] + suffix)
  table = labelled.pivot_table(index="label", columns="metric", values="value", aggfunc="mean")
  order = {run: i for i, run in enumerate(run_order(results))}
  labels = labelled.drop_duplicates("label").set_index("label")["run"]
  table = table.reindex(index=sorted(table.index, key=lambda label: (order[labels[label]], label)),
                        columns=[m for m in MLE_LEVELS if m in table.columns])
  n = len(table)
  with matplotlib.rc_context({**STYLE, "axes.grid": False}):
    height = min(40.0, 1.8 + 0.15 * n)
    fig = _figure(8, height)
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(table.to_numpy()), aspect="auto", cmap="viridis")
    ax.set_xticks(range(table.shape[1]), [MLE_LEVELS[m] for m in table.columns], rotation=20, ha="right")
    ax.set_yticks(range(n), table.index, fontsize=7 if n <= 60 else 5)
    if n <= 60:
      _annotate(ax, table.to_numpy(), ".1f", 7)
    ax.set_xlabel("object size level (share of image area)")
    fig.colorbar(image, ax=ax, label="accuracy (%)", shrink=min(1.0, 4.0 / height), anchor=(0.0, 1.0))
    ax.set_title(title)
    return Plot(name, title, _save(fig, out_path))


PLOTS: Mapping[str, Callable[[Results, pathlib.Path], Plot]] = {
    "runs": plot_runs,
    "scale": plot_scale,
    "source": plot_sources,
    "category": plot_categories,
    "grid": plot_grid,
    "mix": plot_mix,
    "correlation": plot_correlation,
    "mle_bench": plot_mle_bench,
}


def draw_all(results: Results, out_dir: pathlib.Path) -> list[Plot]:
  """Every plot in `PLOTS` into `out_dir/<name>.png` (skipped ones carry their reason)."""
  out_dir = pathlib.Path(out_dir)
  return [draw(results, out_dir / f"{name}.png") for name, draw in PLOTS.items()]
