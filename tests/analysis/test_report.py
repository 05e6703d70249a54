"""Report tables checked by value, the HTML file (tables, embedded plots, notes, missing cells), the CLI."""

from __future__ import annotations

import base64
import html.parser

import numpy as np
import pytest

from visual_priors import cli
from visual_priors.analysis import report
from visual_priors.analysis.results import load_results

CODE_50 = "category-code-50-03a1772e266d"  # the fixture run without an "mmmu" row


class _Tables(html.parser.HTMLParser):
  """Every <table> of a document as a list of rows of cell texts."""

  def __init__(self):
    super().__init__()
    self.tables, self._cell = [], None

  def handle_starttag(self, tag, attrs):
    if tag == "table":
      self.tables.append([])
    elif tag == "tr":
      self.tables[-1].append([])
    elif tag in ("td", "th"):
      self._cell = ""

  def handle_endtag(self, tag):
    if tag in ("td", "th"):
      self.tables[-1][-1].append(self._cell.strip())
      self._cell = None

  def handle_data(self, data):
    if self._cell is not None:
      self._cell += data


def _value(results, run, benchmark, metric="accuracy"):
  frame = results.frame
  return frame[(frame["run"] == run) & (frame["benchmark"] == benchmark) & (frame["metric"] == metric)]["value"].item()


@pytest.fixture(scope="module")
def results(fixture_store):
  return load_results(fixture_store)


def test_vqa_table_by_value(results):
  table = report.vqa_table(results)
  assert len(table) == len(results.runs)
  columns = list(table.columns)
  assert columns[:4] == ["gqa", "mmbench", "mme", "seed"]  # General first, then Knowledge ...
  assert columns[-6] == "cvbench"  # ungrouped (Cambrian's CV-Bench number), after the grouped benchmarks
  assert columns[-5:] == ["General (mean)", "Knowledge (mean)", "OCR & Chart (mean)", "Vision-Centric (mean)",
                          "Overall"]
  run = "mix-mix6-" + next(r for r in results.runs["run"] if r.startswith("mix-mix6-")).split("-")[-1]
  assert table.loc[run, "gqa"] == _value(results, run, "gqa")
  assert table.loc[run, "Knowledge (mean)"] == _value(results, run, "group/Knowledge")
  assert table.loc[run, "Overall"] == _value(results, run, "overall")
  assert np.isnan(table.loc[CODE_50, "mmmu"])  # missing, not zero
  blind = report.vqa_table(results, "accuracy_blind")
  assert len(blind) == 2 and blind.index.str.startswith("blind-").all()


def test_mle_bench_table_names_both_overalls(results):
  table = report.mle_bench_table(results)
  assert list(table.columns) == ["small (0-30%)", "medium (30-60%)", "large (60-100%)",
                                 "overall (sample-weighted, paper)", "overall (mean of levels, lmms-eval)", "chance"]
  run = table.index[0][0]
  row = table.loc[(run, "mle_bench")]
  levels = row.iloc[:3].to_numpy()
  assert row["overall (sample-weighted, paper)"] == pytest.approx(levels @ [732, 698, 431] / 1861)
  assert row["overall (mean of levels, lmms-eval)"] == pytest.approx(levels.mean())
  assert not any(r.startswith("sft_data-") for r, _ in table.index)


def test_other_tables_by_value(results):
  run = report.run_order(results)[0]
  assert run.startswith("scale-340m-0b-")  # family order, then parameters, then natural name order
  language = report.language_table(results)
  assert list(language.columns[:2]) == ["language perplexity_mean", "language zero_shot_mean"]
  assert language.loc[run, "wikitext perplexity"] == _value(results, run, "wikitext", "perplexity")
  alignment = report.alignment_table(results)
  assert list(alignment.columns) == ["alignment mutual_knn", "alignment/clip mutual_knn",
                                     "alignment/dinov2 mutual_knn", "alignment/mae mutual_knn"]
  probe = report.probe_table(results)
  assert list(probe.columns[:2]) == ["reasoning_probe logical_soundness", "reasoning_probe reasoning_depth"]
  assert probe.loc[run, "reasoning_probe/Knowledge logical_soundness"] == _value(
      results, run, "reasoning_probe/Knowledge", "logical_soundness")
  assert report.other_table(results).empty  # every fixture row has its table
  assert "cvbench accuracy" not in language.columns
  meta = report.meta_table(results)
  assert meta.loc[run, "reasoning %"] == 10.0 and meta.loc[run, "visual %"] == 26.9
  assert meta.loc[run, "tokens (B)"] == 0.0
  assert meta.loc[CODE_50, "proportion %"] == 50.0 and meta.loc[CODE_50, "category"] == "code"
  missing = report.missing_table(results)
  assert missing.to_dict("records")[0] == {"run": CODE_50, "kind": "VQA", "missing": "mmmu"}
  assert set(missing.loc[missing["kind"] == "MLE-Bench", "run"].str.split("-").str[0]) == {"sft_data"}


def test_write_report_html(build_results, tmp_path):
  store = build_results(tmp_path / "results", families={"category", "mix", "sft_data"})
  out = tmp_path / "out" / "report.html"
  path = report.write_report(store, out, title="Nano <demo>", notes="What a nano run can show.\n\nAnd <not>.")
  assert path == out and [p.name for p in out.parent.iterdir()] == ["report.html"]
  text = out.read_text()
  assert "<title>Nano &lt;demo&gt;</title>" in text and "<p>And &lt;not&gt;.</p>" in text
  images = text.count("src='data:image/png;base64,")
  assert images == 4  # category, mix, correlation, MLE-Bench; scale/source/grid have no runs here
  assert text.count("Not drawn: no runs of family") == 3
  start = text.index("base64,") + len("base64,")
  assert base64.b64decode(text[start:text.index("'", start)])[:4] == b"\x89PNG"
  assert "overall (sample-weighted, paper)" in text and "overall (mean of levels, lmms-eval)" in text
  assert "<b>perception</b>: " in text
  parser = _Tables()
  parser.feed(text)
  vqa = next(t for t in parser.tables if "gqa" in t[0])
  header = vqa[0]
  row = next(r for r in vqa if r[0] == CODE_50)
  assert row[header.index("mmmu")] == "missing"
  results = load_results(store)
  assert float(row[header.index("gqa")]) == pytest.approx(_value(results, CODE_50, "gqa"), abs=0.005)
  with pytest.raises(ValueError, match="No runs"):
    report.write_report(load_results(tmp_path / "out"), tmp_path / "empty.html", title="x")


def test_cli_report_end_to_end(build_results, tmp_path, capsys):
  build_results(tmp_path / "a", families={"mix"})
  build_results(tmp_path / "b", families={"blind"})
  out = tmp_path / "report.html"
  notes = tmp_path / "notes.txt"
  notes.write_text("Nano runs cannot show scale trends.")
  code = cli.main(["report", "--results", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                   "--runs", "mix/mix1?", "--runs", "blind-*", "--title", "Mix", "--notes-file", str(notes)])
  assert code == 0 and "3 runs" in capsys.readouterr().out
  text = out.read_text()
  assert "Nano runs cannot show scale trends." in text and "<h1>Mix</h1>" in text
  assert "mix-mix10-" in text and "blind-mix6-" in text and "mix-mix1-" not in text and "mix-mix6-" not in text
  assert cli.main(["report", "--results", str(tmp_path / "a"), "--out", str(out), "--runs", "nope*"]) == 2
  assert "matches no run" in capsys.readouterr().err
  assert cli.main(["report", "--results", str(tmp_path / "missing"), "--out", str(out)]) == 2
