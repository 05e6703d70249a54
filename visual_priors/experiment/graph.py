"""The stage graph: the stages in execution order, and each experiment's stage keys and run id.

A stage's key is the first 12 hex digits of the sha256 of the canonical JSON (sorted keys; an integral float an
int, others at 12 significant digits, so 3e10 == 30_000_000_000 and 3e-4 == 0.0003) of its `key_fields` and the
keys of its upstream stages, so two experiments that agree on a stage share it (docs/design.md, "Runs, stages
and keys"). name, description, meta and runtime never enter a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import ml_collections

from visual_priors.experiment import align, evaluate, mmdata, pretrain, schema, sft, vision
from visual_priors.experiment.stage import Stage

# Every stage, by name, in execution order.
STAGES: dict[str, Stage] = {stage.name: stage for stage in (pretrain.STAGE, mmdata.STAGE, vision.STAGE, align.STAGE,
                                                            sft.BLIND, sft.SFT, evaluate.STAGE)}


@dataclasses.dataclass(frozen=True)
class StageIdentity:
  """One stage of a run: its key, the result-changing fields the key hashes, and the stages it consumes."""

  stage: str
  key: str
  fields: dict[str, Any]
  upstream: tuple[str, ...]


def canonical(value: Any) -> Any:
  """`value` as plain JSON data with floats normalised (integral floats -> int, 12 significant digits)."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, bool) or value is None or isinstance(value, str):
    return value
  if isinstance(value, int):
    return int(value)
  if isinstance(value, float):
    if not math.isfinite(value):
      raise ValueError(f"Cannot hash the non-finite number {value!r}.")
    if value.is_integer() and abs(value) < 2 ** 63:
      return int(value)
    return float(f"{value:.12g}")
  if isinstance(value, Mapping):
    return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda item: str(item[0]))}
  if isinstance(value, (list, tuple)):
    return [canonical(v) for v in value]
  if isinstance(value, pathlib.PurePath):
    return str(value)
  raise TypeError(f"Cannot hash a {type(value).__name__} ({value!r}) in an experiment config.")


def fingerprint(fields: Mapping[str, Any]) -> str:
  """sha256 (its first 12 hex digits) of the canonical JSON of `fields`."""
  text = json.dumps(canonical(fields), sort_keys=True, separators=(",", ":"), allow_nan=False)
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def stage_identities(config: ml_collections.ConfigDict) -> dict[str, StageIdentity]:
  """The stages `config` runs, in execution order, each with its key (see the module docstring)."""
  schema.validate(config)
  identities: dict[str, StageIdentity] = {}
  for stage in STAGES.values():
    if not stage.active(config):
      continue
    fields, upstream = stage.key_fields(config), stage.upstream(config)
    hashed = {"stage": stage.name, "fields": fields, "upstream": {name: identities[name].key for name in upstream}}
    identities[stage.name] = StageIdentity(stage=stage.name, key=fingerprint(hashed), fields=canonical(fields),
                                           upstream=upstream)
  return identities


def slug(name: str) -> str:
  """A file-name-safe form of an experiment name: "mix/mix6" -> "mix-mix6" ("run" when empty)."""
  text = re.sub(r"[^a-z0-9._]+", "-", name.lower()).strip("-.")
  return text or "run"


def run_id(config: ml_collections.ConfigDict) -> str:
  """f"{slug(name)}-{eval stage key}": the run's directory name under <root>/runs/."""
  return f"{slug(config.name)}-{stage_identities(config)['eval'].key}"
