"""What a stage is (its key fields, upstream stages, cost and executor) and what its executor is handed.

Every stage module of this package (pretrain, mmdata, vision, align, sft, evaluate) defines one `Stage` (sft.py
two: blind and sft). `graph.STAGES` lists them in execution order; the key of a stage hashes its `key_fields`
and the keys of its `upstream` stages (`graph.stage_identities`), and the runner calls `run(ctx)` for each stage
whose key is not done yet. Stage modules import jax and the training library inside `run` and `flops` only, so
listing, showing and hashing experiments (the registry, `list`, `show`) never loads them.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ml_collections

from visual_priors.data import cache

if TYPE_CHECKING:
  import jax

Outputs = dict[str, Any]  # what a stage's executor returns: recorded in its manifest, handed to later stages
Counts = Mapping[str, int]  # adaptation examples a cost estimate assumes: {"captions": n, "instruct": n}


@dataclasses.dataclass(frozen=True)
class StageContext:
  """What an executor gets: the experiment, its out directory and the earlier stages' outputs."""

  config: ml_collections.ConfigDict  # finalized experiment config
  stage: str
  key: str
  out_dir: pathlib.Path
  outputs: Mapping[str, Outputs]  # by stage name: the outputs of this run's finished stages
  devices: Sequence[jax.Device] | None
  log: Callable[[str], None]
  # The run's mesh (runtime.mesh over `devices`), built once by the runner; every trainer and the evaluation
  # run on it. None: each builds runtime.mesh over `devices` itself.
  mesh: jax.sharding.Mesh | None = None


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a run. `key_fields(config)`: the result-changing fields its key hashes; `upstream(config)`: the
  stages whose keys (and outputs) it takes; `flops(config, counts)`: its model FLOPs, None where not counted;
  `run(ctx)`: the executor; `active(config)`: whether the config runs it at all; `chief_only`: in a
  multi-process job process 0 alone runs it (it writes files and computes nothing on the mesh)."""

  name: str
  key_fields: Callable[[ml_collections.ConfigDict], dict[str, Any]]
  upstream: Callable[[ml_collections.ConfigDict], tuple[str, ...]]
  run: Callable[[StageContext], Outputs]
  flops: Callable[[ml_collections.ConfigDict, Counts], float | None] = lambda config, counts: None
  active: Callable[[ml_collections.ConfigDict], bool] = lambda config: True
  chief_only: bool = False


def trainer_runtime(train: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                    work_dir: pathlib.Path) -> None:
  """Placement and logging settings of a trainer config, from the experiment's runtime block."""
  runtime = config.runtime
  train.work_dir = str(work_dir)
  train.mesh = dict(runtime.mesh)
  train.log_every_steps = int(runtime.log_every_steps)
  train.checkpoint.every_steps = int(runtime.checkpoint_every_steps)
  train.seed = int(config.seed)


def file_record(path: str | pathlib.Path, what: str) -> dict[str, str]:
  """{path, sha256} of a file a stage reads, or FileNotFoundError naming the field it came from."""
  path = pathlib.Path(path).expanduser().absolute()
  if not path.is_file():
    raise FileNotFoundError(f"The {what} file {path} does not exist.")
  return {"path": str(path), "sha256": cache.sha256_file(path)}


def adaptation_steps(settings: ml_collections.ConfigDict, examples: int) -> int:
  """Steps of a stage with `steps` / `epochs` / `batch_size` settings: `steps` when positive, else `epochs` over
  `examples` (`train.config.steps_for`, as the trainer counts them)."""
  from visual_priors.train import config as train_config  # pylint: disable=import-outside-toplevel

  if settings.steps > 0:
    return int(settings.steps)
  return train_config.steps_for(settings.epochs * examples, int(settings.batch_size))
