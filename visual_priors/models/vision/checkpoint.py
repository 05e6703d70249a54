"""Loading big_vision `.npz` checkpoints (SigLIP two towers, or a lone ViT) into the NNX towers.

big_vision saves a flat `.npz` whose keys are the '/'-joined linen parameter paths
(`utils.tree_flatten_with_names` + `np.savez`). A trainer checkpoint holds the whole train state, so
its parameters sit under `params/` next to the optimizer's `opt/...` (an old Flax-optimizer one under
`opt/target/`); the released files and `npsave(params)` hold the parameters alone. `released_params`
takes the parameters out of any of these, as big_vision's `utils.load_params` does. Their layout:
  img/embedding/kernel (P, P, 3, D)  img/embedding/bias  img/pos_embedding (1, N, D)  img/cls
  img/Transformer/encoderblock_<i>/{LayerNorm_0,LayerNorm_1}/{scale,bias}
  img/Transformer/encoderblock_<i>/MultiHeadDotProductAttention_0/{query,key,value}/kernel (D, H, Dh)
                                                                 /{query,key,value}/bias   (H, Dh)
                                                                 /out/kernel (H, Dh, D), out/bias (D,)
  img/Transformer/encoderblock_<i>/MlpBlock_0/{Dense_0,Dense_1}/{kernel,bias}
  img/Transformer/encoder_norm/{scale,bias}
  img/MAPHead_0/{probe (1, 1, D), MultiHeadDotProductAttention_0/..., LayerNorm_0/..., MlpBlock_0/...}
  img/head/{kernel,bias}
  txt/Embed_0/embedding (V, D)  txt/pos_embedding (1, L, D)  txt/Encoder_0/encoderblock_<i>/...
  txt/Encoder_0/encoder_norm/...  txt/head/...  t (1,)  b (1,)
Scanned models (big_vision `scan=True`) store each block parameter once under `encoderblock/`
with a leading depth axis; those are split into `encoderblock_<i>` here.

Every array of the model must be in the file with its exact shape, and every array of the file
under the loaded prefix must be used: anything else raises a ValueError listing the first keys that
differ, with the expected and found shapes, and the likeliest cause (another depth, width or image
size; a pooling head or class head the model lacks or has; a Hugging Face file; ...). A lone ViT
loads from `img/...` keys when the file has them (other
keys, the text tower's, `t` and `b`, are then not its concern), else from unprefixed keys (a
big_vision ViT classifier file). `ignore` (regexes over file keys) skips arrays on purpose, e.g.
`ignore=(r"img/MAPHead_0/.*", r"img/head/.*")` to load a SigLIP file into a pool_type "none" ViT;
`load_vit_npz(path, config)` does that for any tower config (the file's pooling parts the config
does not build are skipped), which is how the MLLM and the alignment evaluation read an image tower.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping, Sequence

import ml_dtypes
import numpy as np
from flax import nnx

from visual_priors.models import sharding
from visual_priors.models.vision.text import TextTransformer
from visual_priors.models.vision.two_tower import TwoTower
from visual_priors.models.vision.vit import ViT, ViTConfig

# One NNX path segment -> its linen name; the same in every tower, so paths map segment by segment.
_SEGMENT_NAMES = {
    "transformer": "Transformer",
    "encoder": "Encoder_0",
    "embed": "Embed_0",
    "map_head": "MAPHead_0",
    "attn": "MultiHeadDotProductAttention_0",
    "attn_norm": "LayerNorm_0",
    "mlp_norm": "LayerNorm_1",
    "norm": "LayerNorm_0",
    "mlp": "MlpBlock_0",
    "fc1": "Dense_0",
    "fc2": "Dense_1",
}
_SCANNED = re.compile(r"^(?P<head>(.*/)?)encoderblock/(?P<tail>.*)$")
_BLOCK = re.compile(r"(?:^|/)encoderblock_(\d+)/")
_MAX_LISTED = 8


def big_vision_key(path: Sequence[str | int]) -> str:
  """The big_vision key of an NNX parameter path, e.g. (img, transformer, blocks, 0, attn, query,
  kernel) -> img/Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel."""
  parts, segments = [], list(map(str, path))
  index = 0
  while index < len(segments):
    segment = segments[index]
    if segment == "blocks":
      parts.append(f"encoderblock_{segments[index + 1]}")
      index += 2
      continue
    parts.append(_SEGMENT_NAMES.get(segment, segment))
    index += 1
  return "/".join(parts)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """All arrays of an `.npz` file; FileNotFoundError if absent, ValueError if it is not a readable npz."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No checkpoint file at {path!r}.")
  try:
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
      raise ValueError("it holds a single array (.npy), not named arrays")
    with archive:
      arrays = {key: archive[key] for key in archive.files}
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
    raise ValueError(f"Checkpoint {path!r} is not a readable .npz archive ({error}); it may be "
                     "truncated or corrupt: download it again.") from error
  return {key: _as_float_array(path, key, value) for key, value in arrays.items()}


def _as_float_array(path: str, key: str, value: np.ndarray) -> np.ndarray:
  if value.dtype.kind == "V" and value.dtype.itemsize == 2:  # bfloat16 saved without its dtype.
    return value.view(ml_dtypes.bfloat16)
  if not np.issubdtype(value.dtype, np.floating) and value.dtype != ml_dtypes.bfloat16:
    raise ValueError(f"Checkpoint {path!r}: array {key!r} has dtype {value.dtype}, not a float; "
                     "it is not a parameter file.")
  return value


def released_params(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The parameter arrays of a big_vision file: those under `params/` (a train-state checkpoint: its
  optimizer state `opt/...` and other entries dropped) or `opt/target/` (an old Flax-optimizer one),
  else all of them (released files and `npsave(params)` hold the parameters alone)."""
  for prefix in ("params/", "opt/target/"):
    if any(key.startswith(prefix) for key in arrays):
      return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
  return dict(arrays)


def unstack_scanned(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Splits `.../encoderblock/<rest>` (depth, ...) arrays into `.../encoderblock_<i>/<rest>`."""
  result: dict[str, np.ndarray] = {}
  for key, value in arrays.items():
    match = _SCANNED.match(key)
    if match is None:
      result[key] = value
      continue
    if value.ndim == 0:
      raise ValueError(f"Scanned checkpoint array {key!r} has no leading depth axis (shape ()).")
    for layer in range(value.shape[0]):
      result[f"{match['head']}encoderblock_{layer}/{match['tail']}"] = value[layer]
  return result


def _prefix_for(model: nnx.Module, keys: Sequence[str]) -> str:
  if isinstance(model, TwoTower):
    return ""
  if isinstance(model, ViT):
    return "img/" if any(key.startswith("img/") for key in keys) else ""
  if isinstance(model, TextTransformer):
    return "txt/"
  raise TypeError("load_big_vision_npz loads a TwoTower, ViT or TextTransformer, got "
                  f"{type(model).__name__}.")


def _blocks(keys: Sequence[str]) -> set[int]:
  return {int(match.group(1)) for key in keys for match in [_BLOCK.search(key)] if match}


def _likely_cause(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]],
                  prefix: str) -> str:
  """One sentence naming the likeliest reason the file does not fit (see the module docstring)."""
  if not set(expected) & set(found):
    if any("." in key and "/" not in key for key in found):
      return ("its keys are dotted (e.g. " + repr(sorted(found)[0]) + "): it looks like a Hugging Face / PyTorch "
              "state dict, not a big_vision file; load it with models.vision.hf.load_hf_vision.")
    tops = sorted({key.split("/")[0] for key in found})[:6]
    return (f"no key of the model is in the file: its top-level names are {tops}, the model's start with "
            f"{sorted({key.split('/')[0] for key in expected})[:6]} (another kind of model or checkpoint).")
  file_blocks, model_blocks = _blocks(list(found)), _blocks(list(expected))
  if file_blocks and model_blocks and len(file_blocks) != len(model_blocks):
    return (f"the file has {len(file_blocks)} encoder blocks under {prefix or '/'}, the model "
            f"{len(model_blocks)}: a different depth (build the encoder of the file's size).")
  kernel = prefix + "embedding/kernel"
  if kernel in expected and kernel in found and expected[kernel] != found[kernel]:
    return (f"the patch embedding is {found[kernel]} in the file and {expected[kernel]} in the model "
            "(patch, patch, channels, width): another patch size or width.")
  positions = prefix + "pos_embedding"
  if positions in expected and positions in found and expected[positions] != found[positions]:
    return (f"pos_embedding is {found[positions]} in the file and {expected[positions]} in the model: another "
            "image size (or a class token's position embedding in one of them).")
  extra, missing = set(found) - set(expected), set(expected) - set(found)
  for part, what in (("MAPHead_0/", "a MAP pooling head (pool_type 'map')"), ("head/", "a head (num_classes)"),
                     ("cls", "a class token (pool_type 'tok')")):
    if any(key.startswith(prefix + part) for key in extra):
      return (f"the file has {what} that the model lacks: build the model with it, or skip it with "
              f"ignore=[r'{prefix}{part}.*'] (load_vit_npz does for a tower without it).")
    if any(key.startswith(prefix + part) for key in missing):
      return f"the model has {what} that the file lacks: build the model without it."
  mismatched = sorted(key for key in set(expected) & set(found) if expected[key] != found[key])
  if mismatched:
    return (f"{len(mismatched)} arrays have other shapes (first {mismatched[0]}: file {found[mismatched[0]]}, "
            f"model {expected[mismatched[0]]}): another width, MLP size or head count.")
  return "the file and the model name different parameters: another architecture."


def load_big_vision_npz(path: str | os.PathLike, model: nnx.Module, *,
                        ignore: Sequence[str] = ()) -> nnx.Module:
  """Copies a big_vision `.npz` into `model` (TwoTower, ViT or TextTransformer) in place; returns it.

  The file may be a trainer checkpoint (`params/...`), a released or `npsave`d parameter file, scanned
  or not. Arrays are cast to each parameter's dtype and placed with its sharding (so a model created
  sharded stays sharded). Raises ValueError naming the first missing, unexpected or mis-shaped keys and
  the likeliest cause.
  """
  arrays = unstack_scanned(released_params(read_npz(path)))
  prefix = _prefix_for(model, list(arrays))
  ignored = [re.compile(pattern) for pattern in ignore]
  found = {key: value for key, value in arrays.items()
           if key.startswith(prefix) and not any(p.fullmatch(key) for p in ignored)}

  params = nnx.state(model, nnx.Param)
  expected = {prefix + big_vision_key(param_path): variable
              for param_path, variable in nnx.to_flat_state(params)}
  missing = sorted(set(expected) - set(found))
  unexpected = sorted(set(found) - set(expected))
  mismatched = sorted(key for key in set(expected) & set(found)
                      if tuple(found[key].shape) != tuple(expected[key].shape))
  problems = ([f"missing {key}: expected shape {tuple(expected[key].shape)}, not in the file"
               for key in missing]
              + [f"mismatched {key}: expected shape {tuple(expected[key].shape)}, found "
                 f"{tuple(found[key].shape)}" for key in mismatched]
              + [f"unexpected {key}: shape {tuple(found[key].shape)} has no parameter in the model"
                 for key in unexpected])
  if problems:
    listed = "\n  ".join(problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    cause = _likely_cause({key: tuple(v.shape) for key, v in expected.items()},
                          {key: tuple(v.shape) for key, v in found.items()}, prefix)
    raise ValueError(
        f"Checkpoint {os.fspath(path)!r} does not fit the {type(model).__name__} "
        f"({len(missing)} missing, {len(mismatched)} mismatched, {len(unexpected)} unexpected):\n  "
        f"{listed}{more}\nLikeliest cause: {cause}\nBuild the model with the checkpoint's config "
        "(registry.get_encoder), or pass ignore=[regex, ...] to skip file keys on purpose.")

  for key, variable in expected.items():
    current = variable[...]
    loaded = np.asarray(found[key]).astype(current.dtype)
    variable[...] = sharding.place(loaded, current.sharding)  # the model's mesh may span several processes
  nnx.update(model, params)
  return model


def pooling_ignores(config: ViTConfig) -> list[str]:
  """File keys a tower built with `config` does not use: the MAP head without pool "map", the head
  without num_classes (with or without the `img/` prefix)."""
  ignore = []
  if config.pool_type != "map":
    ignore.append(r"(img/)?MAPHead_0/.*")
  if not config.num_classes:
    ignore.append(r"(img/)?head/.*")
  return ignore


def load_vit_npz(path: str | os.PathLike, config: ViTConfig, *, rngs: nnx.Rngs | None = None) -> ViT:
  """A ViT built with `config` holding the big_vision file's image tower (`img/...` or unprefixed keys);
  the file's pooling head and class head are skipped when `config` has none (a feature extractor)."""
  vit = ViT(config, rngs=rngs or nnx.Rngs(0))
  return load_big_vision_npz(path, vit, ignore=pooling_ignores(config))
