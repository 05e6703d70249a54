"""The HTML report: one self-contained file of tables, plots (embedded PNGs) and notes over a set of runs.

Every table is built by a function returning a DataFrame (runs as rows), so its values can be checked
without parsing HTML. A missing value is shown as "missing", never as 0; the report also lists, per run,
the benchmarks that other runs in the report have and it lacks.
"""

from __future__ import annotations

import base64
import html
import json
import pathlib
import tempfile
from collections.abc import Mapping, Sequence

import pandas as pd

from visual_priors.analysis import comparison, correlations, paper, plots, uncertainty
from visual_priors.analysis.results import META_KEYS, Results, ResultsStore, load_results, run_order, seed_groups
from visual_priors.data.cache import write_text_atomic

GROUPS = correlations.VQA_GROUPS
VQA_METRICS = ("accuracy", "accuracy_blind", "accuracy_likelihood", "accuracy_chance", "parse_rate")
# VQA rows without a group: the overall mean, and the eval suite's Cambrian-style CV-Bench number
# (mean of the 2D and 3D split means), which enters no group mean.
VQA_UNGROUPED = ("overall", "cvbench")
ALIGNMENT = "alignment"
PROBE = "reasoning_probe"
MISSING = "missing"
OVERALL_COLUMN = "Overall"

ResultsInput = Results | ResultsStore | str | pathlib.Path | tuple[pd.DataFrame, pd.DataFrame] | Sequence


def as_results(source: ResultsInput) -> Results:
  """`Results` from Results, a (frame, runs) pair, a store, a root path, or a sequence of stores/paths."""
  if isinstance(source, Results):
    return source
  if isinstance(source, tuple) and len(source) == 2 and all(isinstance(s, pd.DataFrame) for s in source):
    return Results(*source)
  return load_results(source)


def _pivot(rows: pd.DataFrame, columns: str, order: list[str]) -> pd.DataFrame:
  table = rows.pivot_table(index="run", columns=columns, values="value", aggfunc="first")
  table = table.reindex(index=[r for r in order if r in table.index])
  table.columns.name = None
  return table


def _vqa_rows(frame: pd.DataFrame) -> pd.Series:
  aggregate = frame["benchmark"].str.startswith("group/") | frame["benchmark"].isin(VQA_UNGROUPED)
  return frame["metric"].isin(VQA_METRICS) & (frame["group"].notna() | aggregate)


def vqa_table(results: Results, metric: str = "accuracy") -> pd.DataFrame:
  """Runs x [benchmarks ordered by group, "<group> (mean)" per group, "Overall"] accuracy (%), as stored
  by the eval suite (group means and overall are its aggregate rows, not recomputed here)."""
  frame = results.frame
  rows = frame[_vqa_rows(frame) & (frame["metric"] == metric)]
  if rows.empty:
    return pd.DataFrame()
  table = _pivot(rows, "benchmark", run_order(results))
  benchmark_groups = rows[~rows["benchmark"].str.startswith("group/") & (rows["benchmark"] != "overall")]
  # Ungrouped benchmarks (cvbench) sort after the grouped ones.
  group_of = benchmark_groups.drop_duplicates("benchmark").set_index("benchmark")["group"]
  rank = {g: i for i, g in enumerate(GROUPS)}
  benchmarks = sorted(group_of.index, key=lambda b: (rank.get(group_of[b], len(rank)), str(group_of[b] or ""), b))
  other_groups = sorted(set(group_of.dropna()) - set(GROUPS))
  aggregates = [f"group/{g}" for g in (*GROUPS, *other_groups) if f"group/{g}" in table]
  columns = benchmarks + aggregates + (["overall"] if "overall" in table else [])
  renamed = {f"group/{g}": f"{g} (mean)" for g in group_of.dropna().unique()} | {"overall": OVERALL_COLUMN}
  return table.reindex(columns=columns).rename(columns=renamed)


def _aggregate_columns(results: Results) -> list[tuple[str, str]]:
  """(stored benchmark name, column name) of the VQA group means and the overall present in `results`."""
  present = set(results.frame["benchmark"])
  groups = [g for g in GROUPS if f"group/{g}" in present]
  return [(f"group/{g}", f"{g} (mean)") for g in groups] + ([("overall", OVERALL_COLUMN)] if "overall" in present
                                                             else [])


def vqa_interval_table(results: Results) -> pd.DataFrame:
  """Runs x [group means, Overall, n, chance, blind]: accuracy (%) with its 95% interval, as text. Intervals
  bootstrap the run's questions within each benchmark where its per-question scores are stored (else the Wilson
  interval of the stored accuracy over its count, marked "~"); chance and blind are the overall's."""
  frame = results.frame
  columns = _aggregate_columns(results)
  if not columns:
    return pd.DataFrame()
  table = {}
  for run in run_order(results):
    rows = frame[(frame["run"] == run) & frame["metric"].isin(VQA_METRICS)]
    value = {(b, m): (v, n) for b, m, v, n in zip(rows["benchmark"], rows["metric"], rows["value"], rows["count"])}
    if not any((b, "accuracy") in value for b, _ in columns):
      continue
    cells = {}
    for benchmark, column in columns:
      if (benchmark, "accuracy") not in value:
        cells[column] = MISSING
        continue
      accuracy, count = value[benchmark, "accuracy"]
      interval, bootstrapped = plots.aggregate_interval(results, run, benchmark, accuracy, count)
      cells[column] = ("" if bootstrapped else "~") + uncertainty.format_interval(accuracy, interval)
    overall_n = value.get(("overall", "accuracy"), (None, None))[1]
    cells["n"] = MISSING if overall_n is None or pd.isna(overall_n) else str(int(overall_n))
    for metric, column in (("accuracy_chance", "chance"), ("accuracy_blind", "blind"), ("parse_rate", "parsed %")):
      stored = value.get(("overall", metric))
      cells[column] = MISSING if stored is None else f"{stored[0]:.1f}"
    table[run] = cells
  return pd.DataFrame.from_dict(table, orient="index")


def seed_table(results: Results) -> pd.DataFrame:
  """Experiments run with several seeds (runs whose metadata agree but for the seed): per VQA group mean and
  the overall, mean ± sd over seeds with the per-seed values; one row per such experiment."""
  columns = _aggregate_columns(results)
  if not columns:
    return pd.DataFrame()
  frame = results.frame[results.frame["metric"] == "accuracy"]
  table = {}
  for name, runs in seed_groups(results).items():
    if len(runs) < 2:
      continue
    cells = {"seeds": ", ".join(str(seed) for seed in runs)}
    for benchmark, column in columns:
      values = [frame[(frame["run"] == r) & (frame["benchmark"] == benchmark)]["value"] for r in runs.values()]
      points = [v.iloc[0] for v in values if len(v)]
      cells[column] = uncertainty.seed_summary(points).format() if points else MISSING
    table[name] = cells
  return pd.DataFrame.from_dict(table, orient="index")


def reference_run(results: Results) -> str | None:
  """The run others are compared with: an untrained-LM control (0 pre-training tokens) if present, else the
  first run in report order; None without two runs that have per-question scores."""
  scored = [run for run in run_order(results) if results.item_scores(run)]
  if len(scored) < 2:
    return None
  meta = results.runs.set_index("run")
  controls = [run for run in scored if run in meta.index and meta.loc[run, "tokens"] == 0]
  return controls[0] if controls else scored[0]


def paired_table(results: Results, reference: str | None = None) -> pd.DataFrame:
  """Each run minus `reference` (default `reference_run`) on the questions both answered: the overall and
  per-group accuracy difference (points) with a paired bootstrap 95% interval and p-value."""
  reference = reference or reference_run(results)
  if reference is None:
    return pd.DataFrame()
  items = results.items[~results.items["blind"].astype(bool)]
  present = set(items["group"].dropna())
  table = {}
  for run in run_order(results):
    if run == reference or not results.item_scores(run):
      continue
    cells = {}
    for group in [*[g for g in GROUPS if g in present], None]:
      name = OVERALL_COLUMN if group is None else group
      try:
        cells[name] = paper.group_difference(results, run, reference, group).format()
      except ValueError:
        cells[name] = MISSING
    table[f"{run} - {reference}"] = cells
  return pd.DataFrame.from_dict(table, orient="index")


def mle_bench_table(results: Results) -> pd.DataFrame:
  """Rows (run, benchmark) x levels and both overalls, named as in `plots.MLE_LEVELS`."""
  frame = results.frame
  rows = frame[frame["benchmark"].isin(plots.MLE_BENCHMARKS) & frame["metric"].isin(list(plots.MLE_LEVELS))]
  if rows.empty:
    return pd.DataFrame()
  table = rows.pivot_table(index=["run", "benchmark"], columns="metric", values="value", aggfunc="first")
  order = {r: i for i, r in enumerate(run_order(results))}
  table = table.sort_index(key=lambda level: level.map(order) if level.name == "run" else level)
  table = table.reindex(columns=list(plots.MLE_LEVELS)).rename(columns=plots.MLE_LEVELS)
  table.columns.name = None
  return table


def _is_language(frame: pd.DataFrame) -> pd.Series:
  known = frame["benchmark"].isin(["language", "wikitext", "lambada"]) | frame["benchmark"].str.startswith("val/")
  zero_shot = frame["metric"].isin(["accuracy", "accuracy_norm"]) & frame["group"].isna() & ~frame["benchmark"].isin(
      ["overall", *plots.MLE_BENCHMARKS])
  return (known | zero_shot | frame["metric"].isin(["perplexity", "accuracy_norm"])) & ~_vqa_rows(frame)


def _labelled(frame: pd.DataFrame, mask: pd.Series, results: Results) -> pd.DataFrame:
  rows = frame[mask]
  if rows.empty:
    return pd.DataFrame()
  rows = rows.assign(column=rows["benchmark"] + " " + rows["metric"])
  table = _pivot(rows, "column", run_order(results))
  overall_first = ("language ", "alignment ", PROBE + " ")
  return table.reindex(columns=sorted(table.columns, key=lambda c: (not c.startswith(overall_first), c)))


def language_table(results: Results) -> pd.DataFrame:
  """Runs x "<benchmark> <metric>": perplexities, zero-shot accuracies and the "language" aggregates first."""
  return _labelled(results.frame, _is_language(results.frame), results)


def alignment_table(results: Results) -> pd.DataFrame:
  """Runs x mutual k-NN: the mean over vision models ("alignment ...") first, then one column per model."""
  frame = results.frame
  return _labelled(frame, (frame["benchmark"] == ALIGNMENT) | frame["benchmark"].str.startswith(ALIGNMENT + "/"),
                   results)


def _is_probe(frame: pd.DataFrame) -> pd.Series:
  return (frame["benchmark"] == PROBE) | frame["benchmark"].str.startswith(PROBE + "/")


def probe_table(results: Results) -> pd.DataFrame:
  """Runs x "<benchmark> <metric>" of the reasoning probe: logical soundness (%) and reasoning depth, over all
  probed questions ("reasoning_probe") and per VQA group ("reasoning_probe/<Group>")."""
  return _labelled(results.frame, _is_probe(results.frame), results)


def other_table(results: Results) -> pd.DataFrame:
  """Rows no other table shows (so nothing stored is hidden)."""
  frame = results.frame
  shown = (_vqa_rows(frame) | _is_language(frame) | _is_probe(frame)
           | (frame["benchmark"] == ALIGNMENT) | frame["benchmark"].str.startswith(ALIGNMENT + "/")
           | (frame["benchmark"].isin(plots.MLE_BENCHMARKS) & frame["metric"].isin(list(plots.MLE_LEVELS))))
  return _labelled(frame, ~shown, results)


def meta_table(results: Results) -> pd.DataFrame:
  """Runs x metadata; tokens in billions, shares and proportions in %; keys no run has are left out."""
  meta = results.runs.set_index("run").reindex(index=run_order(results), columns=list(META_KEYS))
  meta["tokens"] = pd.to_numeric(meta["tokens"], errors="coerce") / 1e9
  for key in ("reasoning_share", "visual_share", "proportion"):
    meta[key] = plots.as_percent(meta[key]).round(1)
  meta = meta.rename(columns={"tokens": "tokens (B)", "reasoning_share": "reasoning %", "visual_share": "visual %",
                              "proportion": "proportion %"})
  return meta.dropna(axis=1, how="all")


def missing_table(results: Results) -> pd.DataFrame:
  """Per run, the VQA benchmarks and other evaluations that some other run in the report has and it lacks."""
  frame = results.frame
  expected = {
      "VQA": set(frame.loc[_vqa_rows(frame) & (frame["metric"] == "accuracy"), "benchmark"]),
      "MLE-Bench": set(frame.loc[frame["benchmark"].isin(plots.MLE_BENCHMARKS), "benchmark"]),
      "language": set(frame.loc[frame["benchmark"] == "language", "benchmark"]),
      "alignment": set(frame.loc[frame["benchmark"] == ALIGNMENT, "benchmark"]),
      "probe": set(frame.loc[frame["benchmark"] == PROBE, "benchmark"]),
  }
  has = frame.groupby("run")["benchmark"].agg(set)
  records = []
  for run in run_order(results):
    present = has.get(run, set())
    for kind, benchmarks in expected.items():
      lacking = sorted(benchmarks - present)
      if lacking:
        records.append({"run": run, "kind": kind, "missing": ", ".join(lacking)})
  return pd.DataFrame.from_records(records, columns=["run", "kind", "missing"])


def _html_table(table: pd.DataFrame, *, index: bool = True, na_rep: str = MISSING) -> str:
  if table.empty:
    return "<p class='none'>No rows.</p>"
  return table.to_html(na_rep=na_rep, float_format=lambda v: f"{v:.2f}", border=0, classes="results",
                       index=index, escape=True)


def _image(path: pathlib.Path) -> str:
  data = base64.b64encode(pathlib.Path(path).read_bytes()).decode("ascii")
  return f"<img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"


def _correlation_section(results: Results) -> str:
  try:
    analysis = correlations.perception_reasoning(results.frame)
  except ValueError as error:
    return f"<p class='none'>Not computed: {html.escape(str(error))}</p>"
  clusters = "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(', '.join(members))}</li>"
                     for name, members in analysis.clustering.clusters.items())
  order = analysis.clustering.order
  dropped = (f" {len(analysis.dropped_runs)} run(s) without all four group scores were left out."
             if analysis.dropped_runs else "")
  return (f"<p>Spearman rho between VQA group scores over {len(analysis.scores)} runs; groups clustered by "
          f"average linkage on 1 - rho, cut into two clusters.{dropped}</p><ul>{clusters}</ul>"
          + _html_table(analysis.rho.loc[order, order])
          + "<p>With 95% intervals (bootstrap over runs, 2000 resamples):</p>"
          + _html_table(spearman_interval_table(analysis.scores).loc[order, order]))


def spearman_interval_table(scores: pd.DataFrame) -> pd.DataFrame:
  """Groups x groups: Spearman rho over runs with its bootstrap 95% interval, as text."""
  rho = correlations.spearman(scores)
  cells = {}
  for a in scores.columns:
    for b in scores.columns:
      value = float(rho.loc[a, b])
      interval = (value, value) if a == b else uncertainty.spearman_interval(scores[a], scores[b])
      cells.setdefault(a, {})[b] = uncertainty.format_interval(value, interval, digits=2)
  return pd.DataFrame(cells).T.reindex(index=list(scores.columns), columns=list(scores.columns))


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table.results { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
table.results th, table.results td { padding: 2px 6px; border: 1px solid #ddd; text-align: right; }
table.results th { background: #f4f4f4; }
.none { color: #888; font-style: italic; } .notes { background: #fffbe6; padding: 0.5em 1em; }
img { max-width: 100%; display: block; margin: 1em 0; }
.scroll { overflow-x: auto; }
"""


def build_html(results: Results, *, title: str, notes: str | None, plot_dir: pathlib.Path,
               section_notes: Mapping[str, str] | None = None) -> str:
  """The report's HTML text; the plots are drawn into `plot_dir` and embedded. `section_notes` adds a paragraph
  at the top of a section, by key (so far "alignment")."""
  section_notes = dict(section_notes or {})
  unknown = sorted(set(section_notes) - {"alignment"})
  if unknown:
    raise ValueError(f"No report section {unknown}; section notes go to: 'alignment'.")
  sections = []
  if notes:
    paragraphs = "".join(f"<p>{html.escape(p.strip())}</p>" for p in notes.split("\n\n") if p.strip())
    sections.append(("Notes", f"<div class='notes'>{paragraphs}</div>"))
  sections.append(("Runs", _html_table(meta_table(results), na_rep="")))
  sections.append(("VQA accuracy (%)", _html_table(vqa_table(results))))
  intervals = vqa_interval_table(results)
  if not intervals.empty:
    sections.append(("VQA accuracy with 95% intervals (%)",
                     "<p>Intervals bootstrap the questions within each benchmark (2000 resamples); \"~\" marks a "
                     "Wilson interval from the stored count where per-question scores are absent. Chance and blind "
                     "(images withheld) are the overall's.</p>" + _html_table(intervals)))
  seeds = seed_table(results)
  if not seeds.empty:
    sections.append(("Across seeds (VQA accuracy, %)", "<p>Runs that differ only in their seed: mean ± standard "
                     "deviation over seeds (each seed's value).</p>" + _html_table(seeds)))
  learning = comparison.learning_table(results)
  if not learning.empty:
    labels = sorted(comparison.run_label(results, run) + (" yes" if comparison.parse_ok(results, run) else " no")
                    for run in set(results.items["run"]))
    sections.append(("Did the models learn from the images? (per group, %)",
                     "<p>A run has learned a group when its 95% interval lies above chance and above the interval "
                     "of its blind control (the same questions with the images withheld). The answer format works "
                     f"for a run when at least {comparison.MIN_PARSE_RATE:.0f}% of all its replies parse to an "
                     f"answer: {html.escape(', '.join(labels))}.</p>"
                     + _html_table(learning, index=False)))
  pretraining, mixtures = comparison.pretraining_table(results), comparison.mixture_table(results)
  if not (pretraining.empty and mixtures.empty):
    answers = "".join(f"<li>{html.escape(line)}</li>" for line in comparison.statements(results))
    sections.append(("Pre-registered comparisons (points of accuracy)",
                     "<p>Fixed before the runs (visual_priors/analysis/comparison.py): each difference is paired by "
                     "seed and question and pooled over the seeds both experiments ran, with a bootstrap over seeds "
                     "and questions; pre-training \"helped\" or \"hurt\" when the 95% interval against the untrained "
                     "control excludes 0; mixtures \"differ\" when a pair's interval at the Bonferroni-corrected "
                     "level excludes 0; otherwise \"cannot tell\".</p>"
                     f"<ul>{answers}</ul>" + _html_table(pretraining) + _html_table(mixtures)))
  paired = paired_table(results) if pretraining.empty else pd.DataFrame()
  if not paired.empty:
    sections.append(("Paired differences (points of accuracy)",
                     f"<p>Each run minus {html.escape(str(reference_run(results)))} on the same questions: "
                     "difference [95% interval] (p-value of a paired bootstrap, n questions). An interval that "
                     "contains 0 means these questions cannot tell the two runs apart.</p>" + _html_table(paired)))
  blind = vqa_table(results, "accuracy_blind")
  if not blind.empty:
    sections.append(("VQA accuracy with images withheld (blind control, %)", _html_table(blind)))
  likelihood = vqa_table(results, "accuracy_likelihood")
  if not likelihood.empty:
    sections.append(("VQA accuracy by answer likelihood (multiple-choice and yes/no questions, %)",
                     "<p>The option whose text the model finds most likely counts as its answer; chance below.</p>"
                     + _html_table(likelihood) + _html_table(vqa_table(results, "accuracy_chance"))))
  sections.append(("The paper's findings next to these runs",
                   "<p>Each finding of Han et al. (arXiv 2509.26625), where it comes from, and what these runs show "
                   "for it with 95% intervals; \"too small to tell\" when the intervals cannot decide.</p>"
                   + _html_table(paper.findings_table(results))))
  sections.append(("MLE-Bench accuracy (%) by object size", _html_table(mle_bench_table(results))))
  sections.append(("Language", _html_table(language_table(results))))
  alignment_note = (f"<p>{html.escape(section_notes['alignment'])}</p>" if section_notes.get("alignment") else "")
  sections.append(("Representation alignment (mutual k-NN)", alignment_note + _html_table(alignment_table(results))))
  sections.append(("Reasoning-trace probe", _html_table(probe_table(results))))
  others = other_table(results)
  if not others.empty:
    sections.append(("Other results", _html_table(others)))
  missing = missing_table(results)
  sections.append(("Missing evaluations", "<p>Relative to what other runs in this report have.</p>"
                   + _html_table(missing, index=False) if len(missing) else "<p>None: every run has every "
                   "evaluation that any run has.</p>"))
  sections.append(("Perception vs reasoning", _correlation_section(results)))
  figures = []
  for plot in plots.draw_all(results, plot_dir):
    if plot.path is not None:
      figures.append(f"<h3>{html.escape(plot.title)}</h3>{_image(plot.path)}")
    else:
      figures.append(f"<h3>{html.escape(plot.title)}</h3><p class='none'>Not drawn: {html.escape(plot.reason)}</p>")
  sections.append(("Plots", "".join(figures)))
  n_runs = len(run_order(results))
  body = "".join(f"<h2>{html.escape(name)}</h2><div class='scroll'>{content}</div>" for name, content in sections)
  return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
          f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
          f"<p>{n_runs} run(s), {len(results.frame)} result rows.</p>{body}</body></html>\n")


def lm_eval_json(results: Results, run: str) -> dict:
  """One run's accuracies in lm-evaluation-harness's results layout: per task (benchmark) `acc,none` and
  `acc_stderr,none` as fractions (the sample standard error lm-eval reports), and `n-samples`."""
  frame = results.frame
  rows = frame[(frame["run"] == run) & (frame["metric"] == "accuracy") & frame["count"].notna()]
  tasks, samples = {}, {}
  for benchmark, value, count in sorted(zip(rows["benchmark"], rows["value"], rows["count"])):
    n = int(count)
    stderr = uncertainty.proportion_stderr(float(value), n)
    tasks[benchmark] = {"alias": benchmark, "acc,none": float(value) / 100,
                        "acc_stderr,none": None if stderr != stderr else stderr}
    samples[benchmark] = {"original": n, "effective": n}
  meta = results.runs.set_index("run")
  name = meta.loc[run, "name"] if run in meta.index else None
  return {"results": tasks, "n-samples": samples, "config": {"model": "visual_priors", "model_args": run,
                                                             "name": name}}


def write_lm_eval_json(results: Results, out_dir: str | pathlib.Path) -> list[pathlib.Path]:
  """`<out_dir>/<run>.json` per run with accuracy rows (`lm_eval_json`); returns the paths written."""
  out_dir = pathlib.Path(out_dir)
  paths = []
  for run in run_order(results):
    content = lm_eval_json(results, run)
    if content["results"]:
      paths.append(out_dir / f"{run}.json")
      write_text_atomic(paths[-1], json.dumps(content, indent=2) + "\n")
  return paths


def write_report(stores_or_frames: ResultsInput, out_path: str | pathlib.Path, *, title: str,
                 notes: str | None = None, section_notes: Mapping[str, str] | None = None) -> pathlib.Path:
  """Writes the self-contained HTML report (atomically) and returns its path (`build_html`'s section notes)."""
  results = as_results(stores_or_frames)
  if results.frame.empty and results.runs.empty:
    raise ValueError("No runs to report: the results are empty.")
  out_path = pathlib.Path(out_path)
  with tempfile.TemporaryDirectory(prefix="vp-report-plots-") as plot_dir:
    text = build_html(results, title=title, notes=notes, plot_dir=pathlib.Path(plot_dir), section_notes=section_notes)
  write_text_atomic(out_path, text)
  return out_path
