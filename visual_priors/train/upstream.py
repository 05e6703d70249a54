"""The upstream runs a stage starts from: their manifests (recorded by sha256) and their weights, by path.

An upstream run is a directory holding `manifest.json` (written by `pretrain` or a stage once its final
step is saved) and the trainer's orbax checkpoints. A stage copies parameters from it by '/'-joined path
prefix (e.g. the pretrain run's `embedder/...` into the MLLM's `llm/embedder/...`), restoring only those
arrays, straight into the shardings of the stage's own train state; optimizer state is never read.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from visual_priors import moved_paths
from visual_priors.data import cache, segments
from visual_priors.models import sharding
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.models.mllm import MLLM, MLLMConfig
from visual_priors.train import checkpoint, partition
from visual_priors.train import state as state_lib
from visual_priors.train.state import TrainState

MANIFEST = "manifest.json"
_PARAMETER_TREES = ("params", "frozen")  # the TrainState fields that hold model variables


@dataclasses.dataclass(frozen=True)
class UpstreamRun:
  """A finished run directory: its manifest and the record a downstream manifest keeps of it."""

  role: str
  directory: pathlib.Path
  manifest: dict[str, Any]
  record: dict[str, Any]

  @property
  def checkpoint_step_dir(self) -> pathlib.Path:
    return pathlib.Path(self.manifest["checkpoint_dir"]) / str(self.manifest["step"])


def read_run(directory: str | pathlib.Path, role: str, stages: Sequence[str]) -> UpstreamRun:
  """Reads `<directory>/manifest.json`; raises unless the run finished and is one of `stages`."""
  directory = pathlib.Path(directory).absolute()
  manifest_path = directory / MANIFEST
  if not manifest_path.is_file():
    if _stage_of(directory) and (directory.parent / MANIFEST).is_file():  # a done runner stage lost its manifest
      raise _damaged_manifest(directory, role, "is missing")
    raise FileNotFoundError(
        f"The {role} upstream {directory} has no {MANIFEST}: it is not a run directory or its run has not "
        f"finished. Point it at a finished {' or '.join(stages)} run.")
  try:
    manifest = cache.read_json(manifest_path)
  except ValueError as error:
    where = str(error).split("; the file is")[0].replace(str(manifest_path), "").lstrip(" :")  # "line 1 ...: why"
    raise _damaged_manifest(directory, role, f"is damaged ({where})") from None
  if manifest.get("checkpoint_dir"):  # A run moved with its tree finds its checkpoints and data there.
    recorded_dir = pathlib.Path(manifest["checkpoint_dir"]).parent
    manifest = moved_paths.rebased(manifest, recorded_dir, directory)
  stage = manifest.get("stage")
  if stage not in stages:
    raise ValueError(f"The {role} upstream {directory} is a {stage!r} run; expected {' or '.join(stages)}.")
  record = {
      "role": role,
      "path": str(directory),
      "manifest": str(manifest_path),
      "manifest_sha256": cache.sha256_file(manifest_path),
      "stage": stage,
      "checkpoint_dir": manifest["checkpoint_dir"],
      "step": manifest["step"],
  }
  return UpstreamRun(role=role, directory=directory, manifest=manifest, record=record)


def file_record(path: str | pathlib.Path, role: str) -> dict[str, Any]:
  """The manifest record of an upstream weights file (e.g. a big_vision .npz): path and sha256."""
  path = pathlib.Path(path).absolute()
  if not path.is_file():
    raise FileNotFoundError(f"The {role} weights file {path} does not exist.")
  return {"role": role, "path": str(path), "sha256": cache.sha256_file(path)}


def _stored_leaves(step_dir: pathlib.Path, role: str) -> dict[str, tuple[tuple[Any, ...], Any]]:
  """'/'-path -> (key path in the stored state, array metadata) of the stored model variables."""
  state_dir = step_dir / checkpoint.STATE_ITEM
  if not state_dir.is_dir():
    raise damaged(step_dir, FileNotFoundError(f"{state_dir} does not exist"), role)
  try:
    metadata = checkpoint.step_reader().metadata(step_dir).item_metadata[checkpoint.STATE_ITEM]
  except Exception as error:  # orbax and tensorstore raise many types for damaged files
    raise damaged(step_dir, error, role) from None
  tree = getattr(metadata, "tree", metadata)
  leaves = {}
  for name in _PARAMETER_TREES:
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree[name])[0]:
      leaves[partition.path_string(key_path)] = ((name,) + tuple(partition.key_name(k) for k in key_path), leaf)
  return leaves


DAMAGED_MANIFEST = "manifest.damaged.json"  # a runner stage's manifest.json, renamed once its checkpoint is damaged


def _stage_of(work_dir: pathlib.Path) -> str | None:
  """The stage name of a runner stage's output directory `<root>/stages/<stage>/<key>/out`, else None."""
  parts = work_dir.parts
  return parts[-3] if len(parts) >= 4 and parts[-1] == "out" and parts[-4] == "stages" else None


def _damaged_manifest(work_dir: pathlib.Path, role: str, problem: str) -> ValueError:
  """One line for an upstream run whose manifest.json is missing or unreadable; under a runs root its stage is
  marked not done (`_mark_not_done`), so the next run rebuilds it (its trainer resumes from its checkpoints)."""
  stage = _stage_of(work_dir)
  if stage and jax.process_index() == 0 and _mark_not_done(work_dir, None):
    fix = f"the {stage} stage is marked not done, so the next run rebuilds it from its checkpoints"
  else:
    fix = f"Rebuild it: rerun with --force-from {stage}" if stage else "Rebuild it: retrain that run"
  return ValueError(f"The {role} upstream {work_dir / MANIFEST} {problem}; {fix}.")


def _mark_not_done(work_dir: pathlib.Path, step_dir: pathlib.Path | None) -> pathlib.Path | None:
  """A runner stage (`<root>/stages/<stage>/<key>/out`) whose checkpoint or manifest is damaged: renames the
  stage's manifest.json to DAMAGED_MANIFEST (the runner then sees the stage not done and rebuilds it) and moves
  the damaged step, if any, aside (its trainer then resumes from an intact earlier step, if any); returns the
  stage directory, or None for a run outside a runs root (left as it is) or one already marked by another reader."""
  stage_dir = work_dir.parent
  done = stage_dir / MANIFEST
  if work_dir.name != "out" or stage_dir.parent.parent.name != "stages":
    return None
  try:
    done.replace(stage_dir / DAMAGED_MANIFEST)
    if step_dir is not None and step_dir.is_dir():
      checkpoint.move_aside(step_dir)
  except FileNotFoundError:  # another process marked it first
    return None
  return stage_dir


def damaged(step_dir: pathlib.Path, error: BaseException, role: str = "upstream") -> ValueError:
  """One line for an unreadable checkpoint step: which stage run and step, the first line of the cause.

  Under a runs root the upstream stage is marked not done (`_mark_not_done`), so the next run rebuilds it."""
  cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
  work_dir = step_dir.parent.parent
  parts = work_dir.parts
  stage = parts[parts.index("stages") + 1] if "stages" in parts[:-1] else None  # <root>/stages/<stage>/<key>/out
  if stage and jax.process_index() == 0 and _mark_not_done(work_dir, step_dir):
    fix = (f"the {stage} stage is marked not done (its checkpoint moved to {work_dir / checkpoint.DAMAGED}), so "
           "the next run rebuilds it")
  else:
    fix = f"Rebuild it: rerun with --force-from {stage}" if stage else "Rebuild it: retrain that run"
  return ValueError(f"The {role} checkpoint at step {step_dir.name} of {work_dir} is damaged or incomplete "
                    f"({type(error).__name__}: {cause}); {fix}.")


def _nested(entries: Mapping[tuple[Any, ...], Any]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for key_path, value in entries.items():
    node = tree
    for key in key_path[:-1]:
      node = node.setdefault(key, {})
    node[key_path[-1]] = value
  return tree


def restore_parameters(run: UpstreamRun, targets: Mapping[str, jax.ShapeDtypeStruct],
                       prefixes: Mapping[str, str]) -> dict[str, jax.Array]:
  """Restores the arrays for `targets` (destination path -> shape, dtype and sharding) from `run`.

  `prefixes` maps a destination prefix to the source prefix it is read from (`{"llm/": ""}` reads
  `llm/embedder/embedding` from the upstream's `embedder/embedding`); each target must fall under one.
  Raises ValueError naming every missing or mismatched array.
  """
  stored = _stored_leaves(run.checkpoint_step_dir, run.role)
  wanted: dict[tuple[Any, ...], jax.ShapeDtypeStruct] = {}
  key_paths: dict[str, tuple[Any, ...]] = {}
  problems = []
  for path, target in targets.items():
    prefix = next((p for p in prefixes if path.startswith(p)), None)
    if prefix is None:
      raise ValueError(f"Target {path!r} is under none of the prefixes {sorted(prefixes)}.")
    source = prefixes[prefix] + path[len(prefix):]
    if source not in stored:
      problems.append(f"missing {source}")
      continue
    key_path, leaf = stored[source]
    if tuple(leaf.shape) != tuple(target.shape) or np.dtype(leaf.dtype) != np.dtype(target.dtype):
      problems.append(f"{source}: stored {tuple(leaf.shape)} {leaf.dtype}, needed {tuple(target.shape)} "
                      f"{target.dtype}")
      continue
    wanted[key_path] = target
    key_paths[path] = key_path
  if problems:
    shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
    raise ValueError(f"The {run.role} upstream {run.directory} does not provide this model's weights ({shown}). "
                     "Was it trained with another model config?")
  target_tree = _nested(wanted)
  try:
    restored = checkpoint.step_reader().restore(run.checkpoint_step_dir, args=ocp.args.Composite(**{
        checkpoint.STATE_ITEM: ocp.args.PyTreeRestore(
            item=target_tree, restore_args=ocp.checkpoint_utils.construct_restore_args(target_tree),
            partial_restore=True)}))[checkpoint.STATE_ITEM]
  except Exception as error:  # orbax and tensorstore raise many types for damaged files
    raise damaged(run.checkpoint_step_dir, error, run.role) from None
  by_key_path = {tuple(partition.key_name(k) for k in key_path): leaf
                 for key_path, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]}
  return {path: by_key_path[key_path] for path, key_path in key_paths.items()}


def restore_into(build: Callable[[], nnx.Module],
                 read: Callable[[Mapping[str, jax.ShapeDtypeStruct]], Mapping[str, jax.Array]],
                 mesh: jax.sharding.Mesh | None = None,
                 rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES) -> nnx.Module:
  """`build()`'s module holding the arrays `read(targets)` returns (by '/'-path, each target's shape, dtype and
  sharding on `mesh`, default: the first device), without materialising the initial weights."""
  graphdef, abstract = nnx.split(nnx.eval_shape(build))
  shapes = partition.flatten_paths(nnx.to_pure_dict(abstract))
  if mesh is None:
    where = {path: jax.sharding.SingleDeviceSharding(jax.devices()[0]) for path in shapes}
  else:
    where = partition.flatten_paths(nnx.to_pure_dict(sharding.state_shardings(abstract, mesh, rules)))
  targets = {path: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=where[path]) for path, leaf in shapes.items()}
  values = read(targets)
  restored = jax.tree_util.tree_map_with_path(lambda key_path, _: values[partition.path_string(key_path)],
                                              nnx.to_pure_dict(abstract))
  nnx.replace_by_pure_dict(abstract, restored)
  return nnx.merge(graphdef, abstract)


def restore_module(run: UpstreamRun, build: Callable[[], nnx.Module], mesh: jax.sharding.Mesh | None = None,
                   rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES) -> nnx.Module:
  """`build()`'s module holding `run`'s trained weights, restored straight into their shardings on `mesh`
  (default: the first device); optimizer state is never read."""
  return restore_into(build, lambda targets: restore_parameters(run, targets, {"": ""}), mesh, rules)


MLLM_STAGES = ("align", "sft", "blind")  # the runs that train an MLLM
MODEL_STAGES = ("pretrain", *MLLM_STAGES)  # the runs whose trained model `load_trained` returns


def load_trained(run_dir: str | pathlib.Path, stages: Sequence[str] = MODEL_STAGES,
                 mesh: jax.sharding.Mesh | None = None,
                 rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES) -> tuple[nnx.Module, dict]:
  """(the trained model of a finished run, its manifest): the Decoder of a pretrain run, the MLLM of an align,
  sft or blind run; `stages` are the ones the caller accepts (another fails, naming it). The weights are
  restored straight into their shardings on `mesh` (default: the first device); optimizer state is never read."""
  run = read_run(run_dir, "model", stages)
  model = run.manifest["model"]
  if run.manifest["stage"] == "pretrain":
    config = DecoderConfig(**model)
    build: Callable[[], nnx.Module] = lambda: Decoder(config, rngs=nnx.Rngs(0))
  else:
    mllm = MLLMConfig.from_dict(model["mllm"])
    build = lambda: MLLM(mllm, rngs=nnx.Rngs(0))
  return restore_module(run, build, mesh, rules), run.manifest


def recorded_vocabulary(manifest: Mapping[str, Any]) -> tuple[str | None, str | None]:
  """(vocabulary path, sha256) a pretrain or stage manifest's data names, directly or via its segment store;
  (None, sha) when the store is gone."""
  data = manifest.get("data") or {}
  path = data.get("vocab")
  if path is None and data.get("segment_store"):
    try:
      path = str(segments.recorded_store(data["segment_store"]).vocab_path)
    except FileNotFoundError:
      pass
  return path, data.get("vocab_sha256")


def vocabulary(manifest: Mapping[str, Any], where: str | pathlib.Path = "this run") -> pathlib.Path:
  """The vocabulary a run was trained with, checked against the sha256 it recorded; a ValueError says what to
  pass instead when it is not recorded, gone or changed."""
  path, sha = recorded_vocabulary(manifest)
  if path is None or not pathlib.Path(path).is_file():
    raise ValueError(f"The vocabulary of {where} ({path or 'not recorded'}) is not on this machine; pass the path of "
                     "its SentencePiece model explicitly.")
  if sha and cache.sha256_file(pathlib.Path(path)) != sha:
    raise ValueError(f"{path} is now another vocabulary than {where} was trained with (sha256 {sha[:12]}); pass "
                     "the run's vocabulary path explicitly.")
  return pathlib.Path(path)


def targets_under(state: TrainState, prefixes: Sequence[str]) -> dict[str, jax.ShapeDtypeStruct]:
  """Shape, dtype and sharding of each of the (abstract) state's variables whose path starts with one of
  `prefixes`."""
  return {path: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
          for path, leaf in state_lib.variables(state).items() if any(path.startswith(p) for p in prefixes)}


def stored_variables(run: UpstreamRun) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """'/'-path -> (shape, dtype) of every model variable in the run's final checkpoint (metadata only)."""
  return {path: (tuple(leaf.shape), np.dtype(leaf.dtype))
          for path, (_, leaf) in _stored_leaves(run.checkpoint_step_dir, run.role).items()}
