"""The eval stage: the multimodal model's benchmarks and the LM's language and alignment metrics (eval/suite.py).

Key: every eval field, eval.alignment.outlier_quantile left out at 1.0 (none) and the alignment vision models
given as "bv:" / "hf:" sources by their content (a plain .npz path stays the string it was); upstream sft, and
pretrain when eval.language. Outputs: results (a JSON of rows per evaluated stage), rows (their counts) and the
per-question VQA scores file. Evaluation is not counted in cost estimates.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import ml_collections

from visual_priors.data import cache
from visual_priors.experiment import schema, vision
from visual_priors.experiment.stage import Outputs, Stage, StageContext

RESULTS_FILE = "results.json"


def key_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  fields = config.eval.to_dict()
  alignment = fields["alignment"]
  if alignment.get("outlier_quantile", 1.0) == 1.0:
    alignment.pop("outlier_quantile", None)
  models = []
  for entry in alignment["vision_models"]:
    encoder, _, text = str(entry).partition("=")
    if entry != "self" and text.startswith(("bv:", "hf:")):
      entry = {"encoder": encoder, **vision.source_identity(schema.vision_model_entry(entry)[1])}
    models.append(entry)
  alignment["vision_models"] = models
  return fields


def upstream(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return ("sft", "pretrain") if config.eval.language else ("sft",)


def stage_locations(outputs: Mapping[str, Outputs]) -> dict[str, pathlib.Path]:
  """What the eval suite reads of each stage: the trainer run directory (pretrain, vision when contrastive,
  align, blind, sft), the data directory (mmdata; generated data keeps its benchmarks in `eval/`), or the
  vision .npz file or Hugging Face directory."""
  locations = {}
  for stage, out in outputs.items():
    value = out.get("run") or out.get("path")
    if stage == "mmdata":
      value = str(pathlib.Path(out["instruct"]).parent)
    if value:
      locations[stage] = pathlib.Path(value)
  return locations


def run(ctx: StageContext) -> Outputs:
  from visual_priors.eval import suite  # pylint: disable=import-outside-toplevel

  locations = stage_locations(ctx.outputs)
  rows = suite.evaluate_run(ctx.config, locations, ctx.out_dir, ctx.log, mesh=ctx.mesh)
  rows = {stage: [dict(row) for row in stage_rows] for stage, stage_rows in rows.items()}
  ctx.out_dir.mkdir(parents=True, exist_ok=True)
  cache.write_text_atomic(ctx.out_dir / RESULTS_FILE, json.dumps(rows, indent=1, sort_keys=True) + "\n")
  outputs = {"results": str(ctx.out_dir / RESULTS_FILE), "rows": {stage: len(r) for stage, r in rows.items()}}
  scores = ctx.out_dir / "vqa" / "scores.jsonl"
  if scores.is_file():  # per-question scores: the report's intervals and paired comparisons read them
    outputs["item_scores"] = {"stage": suite.model_stage_of(locations), "path": str(scores)}
  return outputs


STAGE = Stage("eval", key_fields=key_fields, upstream=upstream, run=run)
