"""`eval lm-harness`: lm-evaluation-harness on a run's exported LM, its scores stored in the results store.

The run is exported (`hf_export.export_hf`, reused while the export's source step and dtype are unchanged) to
`<trainer run>/hf/` (or --export-dir) and evaluated by lm-eval's `hf` backend, which loads it with
transformers like any hub model. lm-eval is an optional extra (`pip install -e '.[lm-eval]'`), imported
only here.

Rows (one per task and metric, lm-eval's metric names, values in percent as the framework's accuracies are):
  benchmark "lm_eval/<task>", metric "acc", "acc_norm", "acc_stderr", "acc_norm_stderr" (and any other
  metric the task reports; a filter other than "none" is appended: "exact_match/strict-match"), count = the
  task's evaluated documents. They go under the run's name and the exported stage ("pretrain" for an LM),
  beside the framework's own zero-shot rows ("piqa", "arc_easy", ... from `visual_priors/eval/language.py`).
lm-eval's raw results are kept as `<export dir>/lm_eval_results.json`.

How the two log-likelihood implementations compare (tests/interop/test_lm_harness.py checks them on one task):
  * Both read a continuation after BOS id 0 + the context, with the context's trailing spaces moved into
    the continuation; `add_bos_token=True` makes lm-eval prepend the exported tokenizer's BOS (id 0).
  * Split point: lm-eval cuts the whole encoding at len(encode(context)); the framework at the longest
    common prefix of the two encodings. They differ only when a token spans the boundary.
  * acc: the same. acc_norm: lm-eval divides by the characters of the choice without its leading
    delimiter (" "), the framework's `accuracy_norm` by the characters of the continuation with it; the
    two can pick different choices on near ties. lm-eval's acc_bytes divides by UTF-8 bytes.
  * Long contexts: both keep the last max_length tokens (lm-eval's max_length is the export's
    max_position_embeddings, the run's sequence length).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

from visual_priors.data import cache
from visual_priors.interop import hf_export

EXPORT_SUBDIR = "hf"
RAW_RESULTS = "lm_eval_results.json"
BENCHMARK_PREFIX = "lm_eval/"
PERCENT_METRICS = ("acc", "acc_norm", "acc_bytes", "acc_mutual_info", "exact_match", "f1", "mcc")


def _lm_eval():
  try:
    import lm_eval  # pylint: disable=import-outside-toplevel
    import lm_eval.tasks  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError as error:
    raise ImportError(f"lm-evaluation-harness is not installed ({error}); install the extra: "
                      "pip install -e '.[lm-eval]'") from None
  return lm_eval


def ensure_export(run: str | os.PathLike[str], *, stage: str | None = None, export_dir: str | None = None,
                  dtype: str = "float32", log: Callable[[str], None] = print) -> tuple[pathlib.Path, dict[str, Any]]:
  """(the export directory, its record): reused when it holds this run's final step in `dtype`, else written."""
  trainer_run = hf_export.resolve_run(run, stage, stages=("pretrain",) if stage is None else (stage,))
  out = pathlib.Path(export_dir).expanduser().absolute() if export_dir else trainer_run.directory / EXPORT_SUBDIR
  record_path = out / hf_export.EXPORT_FILE
  if record_path.is_file():
    record = cache.read_json(record_path)
    if (record.get("source") == str(trainer_run.directory) and record.get("step") == trainer_run.manifest["step"]
        and record.get("dtype") == dtype):
      log(f"export {out}: up to date")
      return out, record
  record = hf_export.export_hf(trainer_run.directory, out, dtype=dtype, log=log)
  return out, record


def result_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
  """Result-store rows from lm-eval's `simple_evaluate` output (see the module docstring)."""
  rows = []
  samples = results.get("n-samples", {})
  for task, metrics in sorted(results.get("results", {}).items()):
    count = samples.get(task, {}).get("effective")
    for key, value in sorted(metrics.items()):
      if "," not in key or not isinstance(value, (int, float)) or isinstance(value, bool):
        continue  # "alias", or "N/A" stderr
      metric, _, filter_name = key.partition(",")
      base = metric.removesuffix("_stderr")
      scale = 100.0 if base in PERCENT_METRICS else 1.0
      name = metric if filter_name in ("none", "") else f"{metric}/{filter_name}"
      if value != value:  # NaN (e.g. a stderr of one document)
        continue
      rows.append({"benchmark": f"{BENCHMARK_PREFIX}{task}", "group": None, "metric": name,
                   "value": float(value) * scale, "count": None if count is None else int(count)})
  return rows


def _store_target(run: str | os.PathLike[str], results_root: str | None, run_name: str | None
                  ) -> tuple[pathlib.Path, str]:
  """(results store root, run name): a runner run's own (`<root>/results`, its run id) unless given."""
  path = pathlib.Path(run).expanduser().absolute()
  if (path / hf_export.RUN_FILE).is_file():
    record = cache.read_json(path / hf_export.RUN_FILE)
    root = pathlib.Path(results_root) if results_root else path.parent.parent / "results"
    return root, run_name or record.get("run_id") or path.name
  if not results_root:
    raise ValueError(f"{path} is not a runner run (<root>/runs/<run_id>); pass --results DIR (and --run-name) to say "
                     "which results store gets the rows.")
  return pathlib.Path(results_root), run_name or path.name


def evaluate(run: str | os.PathLike[str], tasks: Sequence[str], *, results_root: str | None = None,
             run_name: str | None = None, stage: str | None = None, export_dir: str | None = None,
             include_path: str | None = None, batch_size: int = 8, limit: int | None = None, device: str = "cpu",
             dtype: str = "float32", log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """Exports `run` if needed, runs lm-eval's `hf` backend on `tasks` and stores the rows; returns them."""
  if not tasks:
    raise ValueError("Give at least one lm-eval task (--tasks piqa,arc_easy or tasks of --include-path).")
  root, name = _store_target(run, results_root, run_name)
  export, record = ensure_export(run, stage=stage, export_dir=export_dir, dtype=dtype, log=log)
  lm_eval = _lm_eval()
  task_manager = lm_eval.tasks.TaskManager(include_path=include_path) if include_path else lm_eval.tasks.TaskManager()
  log(f"lm-eval: {', '.join(tasks)} on {export} ({device}, batch {batch_size})")
  results = lm_eval.simple_evaluate(
      model="hf", model_args={"pretrained": str(export), "dtype": dtype, "add_bos_token": True},
      tasks=list(tasks), batch_size=batch_size, device=device, limit=limit, task_manager=task_manager,
      log_samples=False)
  if results is None:  # a non-zero rank of a distributed run
    return []
  raw = {key: results[key] for key in ("results", "n-samples", "configs", "versions") if key in results}
  cache.write_text_atomic(export / RAW_RESULTS, json.dumps(raw, indent=1, sort_keys=True, default=str) + "\n")
  rows = result_rows(results)
  if not rows:
    raise ValueError(f"lm-eval returned no numeric metrics for {list(tasks)}.")
  from visual_priors.analysis.results import ResultsStore  # pylint: disable=import-outside-toplevel
  ResultsStore(root).put(name, record["stage"], rows)
  log(f"lm-eval: {len(rows)} rows in {root} as run {name}, stage {record['stage']}")
  return rows
