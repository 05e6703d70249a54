"""The reasoning-trace probe: re-ask Knowledge and Vision-Centric questions for detailed explanations, judge them.

Protocol (docs/paper.md, section 5.7): each question is asked again with the instruction to "answer with detailed
explanations" (`INSTRUCTION`: the paper gives only that phrase; we add how to state the final answer, which
both judges read); the model's reply is its reasoning trace; a judge (`visual_priors.eval.judge`: the offline
`RuleJudge` or an `LlmJudge`) says whether each trace is coherent.

Metrics (benchmark "reasoning_probe", and "reasoning_probe/<group>" per question group):
  logical_soundness  % of traces judged coherent (0..100)
  reasoning_depth    mean trace length in words (whitespace-separated), not tokens: comparable across runs
                     whose vocabularies differ
count = the number of questions.

Items: evaluation rows {"id", "image", "question", "choices" (list or null), "answer", "group", ...}, as the
generated benchmarks write them (eval/gen_knowledge.jsonl, eval/gen_vision_centric.jsonl) or any VQA rows
with those keys; `load_probe_items` reads such files and keeps the probe's groups.

`generate(requests) -> replies` takes {"prompt", "image"} requests (the user turn's text and the image) and
returns the assistant replies: `model_generate` binds `visual_priors.eval.decode.generate_replies` to a
model; tests pass a fake.

Resumable: traces and judgements go to `<out_dir>/probe_traces.jsonl`, rewritten atomically after every chunk
of questions. A re-run keeps every trace whose prompt is unchanged (no regeneration) and every judgement made
by the same judge (`judge.name`), so an interrupted probe continues where it stopped and a new judge re-judges
the stored traces without decoding again.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from visual_priors.data import cache
from visual_priors.eval.judge import Judge

BENCHMARK = "reasoning_probe"
PROBE_GROUPS = ("Knowledge", "Vision-Centric")
TRACES_FILE = "probe_traces.jsonl"
INSTRUCTION = "Answer with detailed explanations: reason step by step, then finish with"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

GenerateFn = Callable[[Sequence[Mapping[str, Any]]], list[str]]


def probe_prompt(question: str, choices: Sequence[str] | None) -> str:
  """The question, its lettered options and the detailed-explanation instruction."""
  if choices:
    options = "\n".join(f"{_LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"{question}\n{options}\n{INSTRUCTION} \"The answer is <option letter>.\""
  return f"{question}\n{INSTRUCTION} \"The answer is <answer>.\""


def load_probe_items(paths: Sequence[str | pathlib.Path], groups: Sequence[str] | None = PROBE_GROUPS) -> list[dict]:
  """Rows of JSONL evaluation files whose "group" is in `groups` (None: all); relative image paths resolve
  against each file's folder."""
  items = []
  for path in map(pathlib.Path, paths):
    if not path.is_file():
      raise FileNotFoundError(f"No evaluation file at {path}.")
    for row in cache.iter_jsonl(path, "replace it with an intact copy (or regenerate the data set it came from)"):
      if groups is not None and row.get("group") not in groups:
        continue
      if isinstance(row.get("image"), str):
        row["image"] = str((path.parent / row["image"]).resolve())
      items.append(row)
  return items


def model_generate(model: Any, template: Any, *, image_size: int, max_new_tokens: int = 256, batch_size: int = 8,
                   generate_replies: Callable[..., list[str]] | None = None) -> GenerateFn:
  """`generate` for `evaluate_probe`: greedy replies of an MLLM (decode.generate_replies, or the one given)."""
  if generate_replies is None:
    from visual_priors.eval.decode import generate_replies  # pylint: disable=import-outside-toplevel

  def generate(requests: Sequence[Mapping[str, Any]]) -> list[str]:
    return generate_replies(model, template, requests, image_size=image_size, max_new_tokens=max_new_tokens,
                            batch_size=batch_size)

  return generate


def _check_items(items: Sequence[Mapping[str, Any]]) -> None:
  seen: set[str] = set()
  for index, item in enumerate(items):
    missing = {"id", "question", "answer"} - set(item)
    if missing:
      raise ValueError(f"Probe item {index} lacks {sorted(missing)}; items are evaluation rows with "
                       "'id', 'image', 'question', 'choices', 'answer' and 'group'.")
    key = str(item["id"])
    if key in seen:
      raise ValueError(f"Probe item id {key!r} occurs twice; ids key the resumable traces file.")
    seen.add(key)


def _read_records(path: pathlib.Path) -> dict[str, dict[str, Any]]:
  if not path.is_file():
    return {}
  records = cache.iter_jsonl(path, "delete it; the probe then generates its traces again")
  return {record["id"]: record for record in records}


def _write_records(path: pathlib.Path, records: Mapping[str, Mapping[str, Any]]) -> None:
  cache.write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values()))


def _metric_rows(benchmark: str, group: str | None, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  count = len(records)
  return [
      {"benchmark": benchmark, "group": group, "metric": "logical_soundness",
       "value": 100.0 * float(np.mean([r["coherent"] for r in records])), "count": count},
      {"benchmark": benchmark, "group": group, "metric": "reasoning_depth",
       "value": float(np.mean([r["words"] for r in records])), "count": count},
  ]


def evaluate_probe(items: Sequence[Mapping[str, Any]], generate: GenerateFn, judge: Judge,
                   out_dir: str | pathlib.Path, *, limit: int | None = None, chunk_size: int = 32) -> list[dict]:
  """Traces for `items` (the first `limit`), judged; result rows (see the module docstring)."""
  import jax  # pylint: disable=import-outside-toplevel
  from visual_priors.models import sharding  # pylint: disable=import-outside-toplevel

  if limit is not None:
    if limit < 1:
      raise ValueError(f"limit must be >= 1 (or None for all), got {limit}.")
    items = items[:limit]
  if not items:
    raise ValueError("No probe items; pass Knowledge / Vision-Centric evaluation rows (load_probe_items).")
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
  _check_items(items)
  path = pathlib.Path(out_dir) / TRACES_FILE
  stored = _read_records(path)
  # A multi-process job: every process generates (the model is sharded over all of them), each from the file as
  # it was before process 0, its one writer, rewrites it.
  sharding.sync_processes("probe: traces on file read")
  records: dict[str, dict[str, Any]] = {}
  for item in items:  # current items first, in order; traces of other items are kept after them
    key = str(item["id"])
    prompt = probe_prompt(str(item["question"]), item.get("choices"))
    old = stored.get(key)
    if old is not None and old.get("prompt") == prompt:
      records[key] = old
    else:
      records[key] = {"id": key, "group": item.get("group"), "question": item["question"],
                      "choices": item.get("choices"), "answer": str(item["answer"]), "prompt": prompt}
  records.update({key: record for key, record in stored.items() if key not in records})
  keys = [str(item["id"]) for item in items]
  images = {str(item["id"]): item.get("image") for item in items}
  for start in range(0, len(keys), chunk_size):
    chunk = [records[key] for key in keys[start:start + chunk_size]]
    untraced = [r for r in chunk if "trace" not in r]
    if untraced:
      replies = generate([{"prompt": r["prompt"], "image": images[r["id"]]} for r in untraced])
      if len(replies) != len(untraced):
        raise ValueError(f"generate returned {len(replies)} replies for {len(untraced)} requests.")
      for record, trace in zip(untraced, replies):
        record.update(trace=str(trace), words=len(str(trace).split()))
        record.pop("judge", None)
    unjudged = [r for r in chunk if r.get("judge") != judge.name]
    if unjudged:
      verdicts = judge.judge_many([{"question": r["question"], "choices": r["choices"], "answer": r["answer"],
                                    "trace": r["trace"]} for r in unjudged])
      for record, verdict in zip(unjudged, verdicts, strict=True):
        record.update(coherent=bool(verdict["coherent"]), reason=str(verdict.get("reason", "")), judge=judge.name)
    if (untraced or unjudged) and jax.process_index() == 0:
      _write_records(path, records)
  done = [records[key] for key in keys]
  rows = _metric_rows(BENCHMARK, None, done)
  for group in sorted({str(r["group"]) for r in done if r.get("group")}):
    rows += _metric_rows(f"{BENCHMARK}/{group}", group, [r for r in done if r.get("group") == group])
  return rows
