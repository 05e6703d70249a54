"""The VQA evaluation as steps with files between them: generate predictions -> score -> tabulate result rows.

    out_dir/predictions.jsonl  one line per reply: {"benchmark", "id", "blind", "output", "prompt_sha256"}.
                               Appended in chunks and flushed, so a crashed run resumes where it stopped: a rerun
                               skips the (benchmark, id, blind) triples already there (a torn last line is dropped).
    out_dir/scores.jsonl       one line per scored reply: {"benchmark", "id", "blind", "group", "type", "score"
                               (0..1), "extracted" (the option index, yes/no word or normalised answer), "output"};
                               re-scoring needs only the predictions and the items, no model.
    out_dir/results.json       the result rows (`tabulate`), written atomically.
    out_dir/missing.json       the requested benchmarks whose files are absent, with where they were looked for.

`generate` is any callable `generate(requests, *, blind) -> list[str]` taking requests {"prompt", "image"}: the
decode engineer's `generate_replies` with its model and settings bound (`replies_generator`), or a fake in tests.
The blind control asks the same questions with every image withheld (`blind=True`) and is reported next to the
accuracy as "accuracy_blind". Accuracies are in percent; a group's value is the mean over its benchmarks and
"overall" the mean over every benchmark with a group (MLE-Bench rows have none), each counting the questions
behind it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from visual_priors import console
from visual_priors.data.cache import iter_jsonl, parse_json, write_json_atomic, write_text_atomic
from visual_priors.data.multimodal.gen_questions import GROUPS
from visual_priors.eval import answers
from visual_priors.eval.benchmarks import BenchmarkMissing, benchmark_path, get_benchmark, load_benchmark

Generate = Callable[..., list[str]]
PREDICTIONS, SCORES, RESULTS, MISSING = "predictions.jsonl", "scores.jsonl", "results.json", "missing.json"
CVBENCH_SPLITS = {"cvbench_coco": "2D", "cvbench_ade": "2D", "cvbench_omni3d": "3D"}


class VqaResults(list):
  """The result rows (a list of dicts) plus `missing`: the requested benchmarks whose files were absent."""

  def __init__(self, rows: Iterable[Mapping[str, Any]] = (), missing: Sequence[str] = ()):
    super().__init__(rows)
    self.missing = list(missing)


def replies_generator(model: Any, template: Any, *, image_size: int, max_new_tokens: int = 32,
                      batch_size: int = 8) -> Generate:
  """`generate(requests, *, blind)` that decodes greedily with `decode.generate_replies` and these settings."""
  from visual_priors.eval.decode import generate_replies  # pylint: disable=import-outside-toplevel

  def generate(requests: Sequence[Mapping[str, Any]], *, blind: bool = False) -> list[str]:
    return generate_replies(model, template, requests, image_size=image_size, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, blind=blind)

  return generate


def _key(benchmark: str, item_id: str, blind: bool) -> tuple[str, str, bool]:
  return (str(benchmark), str(item_id), bool(blind))


def _prompt_digest(prompt: str) -> str:
  return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def _complete_length(data: bytes) -> int:
  """The length of `data` up to its last newline (what a torn final write leaves intact)."""
  return data.rfind(b"\n") + 1


def read_predictions(path: str | pathlib.Path) -> dict[tuple[str, str, bool], dict[str, Any]]:
  """Predictions by (benchmark, id, blind); a missing file is empty, a torn (unterminated) last line is ignored."""
  path = pathlib.Path(path)
  if not path.is_file():
    return {}
  records = {}
  data = path.read_bytes()
  text = data[:_complete_length(data)].decode("utf-8")
  for number, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    record = parse_json(line, f"{path} line {number}", "delete it; the replies are then decoded again")
    records[_key(record["benchmark"], record["id"], record["blind"])] = record
  return records


def generate_predictions(benchmark_items: Sequence[Mapping[str, Any]], generate: Generate,
                         out_path: str | pathlib.Path, *, blind: bool = False, batch_size: int = 64,
                         log: Callable[[str], None] | None = None) -> int:
  """Appends the replies to `benchmark_items` not yet in `out_path`, `batch_size` at a time; returns how many.
  Progress (with an ETA) goes to `log` when given.

  A reply already on file for a question whose prompt has since changed is an error (the file belongs to other
  questions: delete it or pick another out_dir), so a resumed run never mixes two versions of a benchmark.

  In a multi-process jax job every process generates (the model is sharded over all of them) and process 0 alone
  appends: the others read the file before it writes, and it is complete when any of them returns.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from visual_priors.models import sharding  # pylint: disable=import-outside-toplevel

  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be at least 1.")
  out_path = pathlib.Path(out_path)
  writer = jax.process_index() == 0
  done = read_predictions(out_path)
  sharding.sync_processes("vqa: replies on file read")  # every process's pending replies are the same
  pending, seen = [], set()
  for item in benchmark_items:
    key = _key(item["benchmark"], item["id"], blind)
    if key in seen:
      raise ValueError(f"Question {key[:2]} is listed twice.")
    seen.add(key)
    if key in done:
      if done[key].get("prompt_sha256") != _prompt_digest(item["prompt"]):
        raise ValueError(f"{out_path} holds a reply to {key[0]} question {key[1]!r} asked with another prompt; "
                         "it was made for other questions. Remove it or use another out_dir.")
    else:
      pending.append(item)
  if not pending:
    return 0
  if writer:
    out_path.parent.mkdir(parents=True, exist_ok=True)
  if writer and out_path.is_file():
    with open(out_path, "r+b") as f:  # drop a torn final line before appending after it
      f.truncate(_complete_length(f.read()))
  progress = console.Progress(len(pending), f"vqa: {'blind ' if blind else ''}replies", log=log,
                              enabled=log is not None)
  with open(out_path, "a", encoding="utf-8") if writer else contextlib.nullcontext() as f, progress:
    for start in range(0, len(pending), batch_size):
      chunk = pending[start:start + batch_size]
      replies = generate([{"prompt": item["prompt"], "image": item["image"]} for item in chunk], blind=blind)
      if len(replies) != len(chunk):
        raise ValueError(f"generate returned {len(replies)} replies for {len(chunk)} requests.")
      if writer:
        f.write("".join(json.dumps({"benchmark": item["benchmark"], "id": str(item["id"]), "blind": bool(blind),
                                    "output": str(reply), "prompt_sha256": _prompt_digest(item["prompt"])}) + "\n"
                        for item, reply in zip(chunk, replies)))
        f.flush()
        os.fsync(f.fileno())
      progress.update(start + len(chunk))
  sharding.sync_processes("vqa: replies written")
  return len(pending)


def score_item(item: Mapping[str, Any], output: str) -> tuple[float, Any]:
  """(score in 0..1, what was extracted from the reply) for one item and one model reply."""
  kind = item["type"]
  if kind == "mc":
    index = answers.extract_choice(output, item["choices"])
    return float(index is not None and item["choices"][index] == item["answer"]), index
  if kind == "yes_no":
    said = answers.extract_yes_no(output)
    return float(said is not None and said == str(item["answer"]).lower()), said
  if kind == "open":
    metric = item.get("meta", {}).get("metric", "exact")
    rule = answers.OPEN_METRICS.get(metric)
    if rule is None:
      raise ValueError(f"{item['benchmark']} question {item['id']!r}: unknown open-answer metric {metric!r}.")
    if metric == "numeric":
      value = rule(output, item["answer"], item["meta"].get("precision"))
    else:
      value = rule(output, item["answer"])
    return float(value), answers.normalize_answer(output)
  raise ValueError(f"{item['benchmark']} question {item['id']!r} has unknown type {kind!r}.")


def score(predictions_path: str | pathlib.Path, items: Sequence[Mapping[str, Any]],
          scores_path: str | pathlib.Path | None = None) -> pathlib.Path:
  """Scores the predictions of `items` into `scores_path` (default: scores.jsonl beside the predictions).

  Every item needs a reply (to its current prompt) for each blind setting the file holds for these items;
  replies to other questions in the file are left out.
  """
  predictions_path = pathlib.Path(predictions_path)
  scores_path = pathlib.Path(scores_path) if scores_path is not None else predictions_path.with_name(SCORES)
  predictions = read_predictions(predictions_path)
  wanted = {(str(item["benchmark"]), str(item["id"])) for item in items}
  modes = sorted({blind for (benchmark, item_id, blind) in predictions if (benchmark, item_id) in wanted})
  if not modes:
    raise ValueError(f"{predictions_path} has no replies to these {len(items)} questions; run "
                     "generate_predictions first.")
  lines = []
  for blind in modes:
    absent = [item for item in items if _key(item["benchmark"], item["id"], blind) not in predictions]
    if absent:
      raise ValueError(f"{len(absent)} of {len(items)} questions have no {'blind ' if blind else ''}reply in "
                       f"{predictions_path} (first: {absent[0]['benchmark']} {absent[0]['id']!r}); finish "
                       "generate_predictions first.")
    for item in items:
      record = predictions[_key(item["benchmark"], item["id"], blind)]
      if record.get("prompt_sha256") != _prompt_digest(item["prompt"]):
        raise ValueError(f"{predictions_path}: the reply to {item['benchmark']} question {item['id']!r} was "
                         "generated for another prompt; the file belongs to other questions.")
      output = record["output"]
      value, extracted = score_item(item, output)
      lines.append(json.dumps({"benchmark": item["benchmark"], "id": str(item["id"]), "blind": blind,
                               "group": item["group"], "type": item["type"], "score": value, "extracted": extracted,
                               "output": output}))
  write_text_atomic(scores_path, "".join(line + "\n" for line in lines))
  return scores_path


def read_scores(path: str | pathlib.Path) -> list[dict[str, Any]]:
  """The records of a scores file."""
  return list(iter_jsonl(path, "delete it; the evaluation then scores the predictions again"))


def parsed(extracted: Any) -> bool:
  """Whether a reply gave an answer the scorer could read: an option, yes/no, or a non-empty open answer."""
  return extracted is not None and extracted != ""


def _mean(values: Sequence[float]) -> float:
  return sum(values) / len(values)


def tabulate(scores: str | pathlib.Path | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Result rows: per benchmark, per group ("group/<Group>") and "overall", metric "accuracy" (0..100) and, where
  blind replies were scored, "accuracy_blind"; "parse_rate" (and "parse_rate_blind"): the percentage of replies
  that gave a readable answer (`parsed`), where the records hold what was extracted. With all three CV-Bench splits a row "cvbench" (group None) adds
  Cambrian's CV-Bench number, mean(mean(COCO, ADE), Omni3D); it does not enter the group or overall means."""
  records = read_scores(scores) if isinstance(scores, (str, pathlib.Path)) else list(scores)
  per: dict[tuple[str, bool, str], list[float]] = {}
  groups: dict[str, str | None] = {}
  for record in records:
    blind = bool(record["blind"])
    per.setdefault((record["benchmark"], blind, "score"), []).append(float(record["score"]))
    if "extracted" in record:
      per.setdefault((record["benchmark"], blind, "parsed"), []).append(float(parsed(record["extracted"])))
    groups.setdefault(record["benchmark"], record["group"])
  rows: list[dict[str, Any]] = []
  for blind, value_kind, metric in ((False, "score", "accuracy"), (True, "score", "accuracy_blind"),
                                    (False, "parsed", "parse_rate"), (True, "parsed", "parse_rate_blind")):
    values = {b: (100 * _mean(s), len(s)) for (b, is_blind, kind), s in per.items()
              if is_blind == blind and kind == value_kind}
    if not values:
      continue
    for benchmark, (value, count) in values.items():
      rows.append({"benchmark": benchmark, "group": groups[benchmark], "metric": metric, "value": value,
                   "count": count})
    if all(name in values for name in CVBENCH_SPLITS):
      split = {d: _mean([values[n][0] for n, s in CVBENCH_SPLITS.items() if s == d]) for d in ("2D", "3D")}
      rows.append({"benchmark": "cvbench", "group": None, "metric": metric, "value": _mean(list(split.values())),
                   "count": sum(values[n][1] for n in CVBENCH_SPLITS)})
    grouped = {b: v for b, v in values.items() if groups[b] is not None}
    for group in list(GROUPS) + sorted({groups[b] for b in grouped} - set(GROUPS)):
      members = [v for b, v in grouped.items() if groups[b] == group]
      if members:
        rows.append({"benchmark": f"group/{group}", "group": group, "metric": metric,
                     "value": _mean([v for v, _ in members]), "count": sum(n for _, n in members)})
    if grouped:
      rows.append({"benchmark": "overall", "group": None, "metric": metric,
                   "value": _mean([v for v, _ in grouped.values()]), "count": sum(n for _, n in grouped.values())})
  return rows


def evaluate_vqa(benchmarks: Sequence[str], *, data_root: str | pathlib.Path, generate: Generate,
                 out_dir: str | pathlib.Path, blind_control: bool = True, limit: int | None = None,
                 paths: Mapping[str, str | pathlib.Path] | None = None, batch_size: int = 64,
                 log: Callable[[str], None] = print) -> VqaResults:
  """Generates, scores and tabulates `benchmarks` (registry names) under `out_dir`; resumes a crashed run.

  Benchmarks whose files are absent are skipped, listed in out_dir/missing.json, logged, and returned as
  `result.missing`; the rows cover the present ones only. `limit`: the first questions of each benchmark
  (None or 0: all).
  """
  names = list(dict.fromkeys(benchmarks))
  if len(names) != len(benchmarks):
    raise ValueError(f"Benchmarks listed twice: {sorted({b for b in benchmarks if benchmarks.count(b) > 1})}.")
  for name in names:
    get_benchmark(name)  # unknown names fail before anything is loaded
  out_dir = pathlib.Path(out_dir)
  items, missing, counts = [], [], []
  for name in names:
    try:
      loaded = load_benchmark(name, data_root, paths=paths, limit=limit)
    except BenchmarkMissing as error:
      missing.append({"benchmark": name, "path": str(benchmark_path(name, data_root, paths)), "reason": str(error)})
      continue
    counts.append(f"{name} {len(loaded)}")
    items.extend(loaded)
  if counts:
    log(f"vqa: {len(items)} questions ({', '.join(counts)})")
  write_json_atomic(out_dir / MISSING, missing)
  if missing:
    log(f"vqa: missing benchmarks (not scored): {', '.join(m['benchmark'] for m in missing)}; see "
        f"{out_dir / MISSING}")
  if not items:
    write_json_atomic(out_dir / RESULTS, [])
    return VqaResults([], [m["benchmark"] for m in missing])
  predictions = out_dir / PREDICTIONS
  for blind in (False, True) if blind_control else (False,):
    added = generate_predictions(items, generate, predictions, blind=blind, batch_size=batch_size, log=log)
    log(f"vqa: {added} new {'blind ' if blind else ''}replies ({len(items) - added} already on file)")
  rows = tabulate(score(predictions, items, out_dir / SCORES))
  write_json_atomic(out_dir / RESULTS, rows)
  return VqaResults(rows, [m["benchmark"] for m in missing])
