"""Where a vision tower's weights come from: "hf:DIR" (a Hugging Face directory) or "bv:FILE.npz" (big_vision).

A source is written as `hf:DIR` (what `save_pretrained` writes: config.json + model.safetensors, see `hf.py`)
or `bv:FILE.npz` (a big_vision `.npz` as released or saved, see `checkpoint.py`); where a plain `.npz` path was
accepted before (`eval.alignment.vision_models`' `<encoder>=<path.npz>`), it reads as `bv:`. The tower is
always a registered encoder (`registry.get_encoder(name)`): `tower_config` checks a Hugging Face checkpoint
against it (`hf.with_hf_weights`), a big_vision file is checked array by array when loaded.

  parse_source(text, field)       -> VisionSource | None ("" = none); a ValueError naming `field` otherwise
  source.problem()                -> what is missing on disk, or None
  source.hashed_files()           -> the files that identify its content (the stage keys hash their digests)
  tower_config(source, config)    -> the ViTConfig that loads it
  load_tower(source, config)      -> a ViT holding its weights
  tower_parameters(source, config, prefix) -> {prefix + parameter path: host array}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

from flax import nnx

from visual_priors.models.safetensors_io import SafetensorsDir
from visual_priors.models.vision import hf as hf_lib
from visual_priors.models.vision.checkpoint import load_vit_npz
from visual_priors.models.vision.vit import ViT, ViTConfig

KINDS = ("hf", "bv")
FORMS = "'hf:DIR' (a Hugging Face directory: config.json + model.safetensors) or 'bv:FILE.npz' (a big_vision .npz)"


@dataclasses.dataclass(frozen=True)
class VisionSource:
  """A tower's weights: kind "hf" (a directory) or "bv" (a .npz file), at an absolute path."""

  kind: str
  path: pathlib.Path

  def __str__(self) -> str:
    return f"{self.kind}:{self.path}"

  def problem(self) -> str | None:
    """What is missing on disk (one sentence), or None when the source can be read."""
    if self.kind == "bv":
      return None if self.path.is_file() else f"{self.path} does not exist"
    if not (self.path / "config.json").is_file():
      return f"{self.path} holds no config.json (a Hugging Face directory as save_pretrained writes it)"
    try:
      SafetensorsDir(self.path)
    except FileNotFoundError:
      return f"{self.path} holds no model.safetensors (or model.safetensors.index.json)"
    return None

  def hashed_files(self) -> list[pathlib.Path]:
    """What identifies the weights: the .npz; or config.json, preprocessor_config.json (when present: the
    pixel mean / std) and the safetensors files with their index."""
    if self.kind == "bv":
      return [self.path]
    extra = [self.path / "preprocessor_config.json"] if (self.path / "preprocessor_config.json").is_file() else []
    return [self.path / "config.json", *extra, *SafetensorsDir(self.path).file_paths()]


def parse_source(text: Any, field: str, *, plain_npz: bool = False) -> VisionSource | None:
  """"" -> None; "hf:DIR" / "bv:FILE.npz" -> a VisionSource (path expanded, absolute); with `plain_npz` a bare
  path ending in .npz reads as bv. Anything else raises a ValueError naming `field` and the forms."""
  if text == "":
    return None
  if isinstance(text, str):
    kind, sep, rest = text.partition(":")
    rest = rest.strip()
    if sep and kind in KINDS and rest:
      path = pathlib.Path(rest).expanduser().absolute()
      if kind == "bv" and path.suffix != ".npz":
        raise ValueError(f"{field} {text!r}: a big_vision checkpoint is a .npz file ('bv:FILE.npz').")
      return VisionSource(kind, path)
    if plain_npz and text.strip().endswith(".npz"):
      return VisionSource("bv", pathlib.Path(text.strip()).expanduser().absolute())
  raise ValueError(f"{field} {text!r} must be {FORMS}" + (" or a path ending in .npz" if plain_npz else "") + ".")


def _sha256_file(path: pathlib.Path, chunk: int = 1 << 20) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as handle:
    for block in iter(lambda: handle.read(chunk), b""):
      digest.update(block)
  return digest.hexdigest()


def content_sha256(source: VisionSource, file_digest: Callable[[pathlib.Path], str] = _sha256_file) -> str:
  """sha256 over (file name, sha256) of `hashed_files` (a .npz: its own sha256); `file_digest` may memoise."""
  if source.kind == "bv":
    return file_digest(source.path)
  entries = sorted([path.name, file_digest(path)] for path in source.hashed_files())
  return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def tower_config(source: VisionSource, config: ViTConfig) -> ViTConfig:
  """The config that loads `source` as encoder `config`: a Hugging Face checkpoint's (checked against it,
  `hf.with_hf_weights`), or `config` itself for a big_vision file (checked when loaded)."""
  return hf_lib.with_hf_weights(config, source.path) if source.kind == "hf" else config


def load_tower(source: VisionSource, config: ViTConfig, *, rngs: nnx.Rngs | None = None) -> ViT:
  """A ViT built with `config` (from `tower_config`) holding the source's weights; the file's pooling head and
  class head are skipped where `config` has none."""
  if source.kind == "hf":
    return hf_lib.load_hf_vision(source.path, config, rngs=rngs)
  return load_vit_npz(source.path, config, rngs=rngs)


def tower_parameters(source: VisionSource, config: ViTConfig, prefix: str = "") -> dict[str, Any]:
  """{prefix + '/'-joined parameter path: host array} of `load_tower(source, config)` (e.g. prefix "img/")."""
  tower = load_tower(source, config)
  return {prefix + "/".join(map(str, key)): variable[...]
          for key, variable in nnx.to_flat_state(nnx.state(tower, nnx.Param))}


def describe(source: VisionSource) -> dict[str, str]:
  """What a manifest records of a source: its kind, path and content digest."""
  return {"format": source.kind, "path": os.fspath(source.path), "content_sha256": content_sha256(source)}
