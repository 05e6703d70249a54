"""The mmdata stage: the adaptation data, generated (data/multimodal/generate.py) or LLaVA-format files.

Key: adapt.data.kind and that kind's settings only; generated data also hashes the generator's version, and its
fields at their defaults leave the key as it was before they existed. Outputs: captions, instruct, images,
eval_dir (generated benchmarks), files (sha256 of the llava files, or the generated file list). Process 0 alone
runs it in a multi-process job.
"""

from __future__ import annotations

import inspect
import pathlib
from typing import Any

import ml_collections

from visual_priors.data.multimodal.gen_text_only import TEXT_ONLY_EVERY
from visual_priors.experiment import schema
from visual_priors.experiment.stage import Outputs, Stage, StageContext, file_record
from visual_priors.names import lookup


def key_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  data = config.adapt.data
  fields = {"kind": data.kind, data.kind: data[data.kind].to_dict()}
  if data.kind == "generated":
    from visual_priors.data.multimodal.generate import GENERATOR_VERSION  # pylint: disable=import-outside-toplevel
    generated = fields["generated"]
    if not generated.get("tasks"):
      generated.pop("tasks", None)
    if generated.get("mc_answer") == "letter":
      generated.pop("mc_answer")
    if generated.get("text_only_every") == TEXT_ONLY_EVERY:  # the defaults: keys stay as before the fields existed
      generated.pop("text_only_every")
    generated["generator_version"] = GENERATOR_VERSION
  return fields


def run(ctx: StageContext) -> Outputs:
  data = ctx.config.adapt.data
  if data.kind == "generated":
    from visual_priors.data.multimodal import generate  # pylint: disable=import-outside-toplevel

    settings = dict(data.generated)
    accepted = set(inspect.signature(generate.generate).parameters) - {"out_dir", "log", "downloads_dir"}
    unknown = sorted(set(settings) - accepted)
    if unknown:
      raise ValueError(f"adapt.data.generated has keys {unknown} that generate() does not take; it takes "
                       f"{sorted(accepted)}.")
    settings["tasks"] = schema.generated_tasks(ctx.config)
    manifest = generate.generate(ctx.out_dir, **settings, log=ctx.log)
    out = ctx.out_dir
    return {"kind": "generated", "captions": str(out / "captions.jsonl"), "instruct": str(out / "instruct.json"),
            "images": None, "eval_dir": str(out / "eval"), "files": manifest["files"],
            "counts": manifest["counts"], "object_source": manifest["object_source"]["name"]}
  llava = lookup({"llava": data.llava}, data.kind, "adapt.data kind")
  files = {name: file_record(llava[name], f"adapt.data.llava.{name}") for name in ("captions", "instruct")}
  images = llava.images or None
  return {"kind": "llava", "captions": files["captions"]["path"], "instruct": files["instruct"]["path"],
          "images": str(pathlib.Path(images).expanduser().absolute()) if images else None, "eval_dir": None,
          "files": {name: record["sha256"] for name, record in files.items()}}


STAGE = Stage("mmdata", key_fields=key_fields, upstream=lambda config: (), run=run, chief_only=True)
