"""Starting pre-training from a Hugging Face Llama directory (`pretrain.init_from = "hf:DIR"`).

  * Config: `config.json` must describe a Llama decoder this framework implements (SwiGLU, no biases, plain
    RoPE, head_dim = hidden / heads). Its shape (hidden size, layers, heads, KV heads, MLP width) must be
    the chosen scale's, else a ValueError names the parameter, before anything is compiled; rope_theta,
    rms_norm_eps and tie_word_embeddings are taken from the checkpoint, and vocab_size too (it may exceed
    the tokenizer's size, as padded embedding tables do, never fall short of it).
  * Weights: `model.safetensors` (or shards with an index) read through memory maps; each parameter is
    built with `jax.make_array_from_callback`, so every device reads only its own slice of the file and
    no host ever holds a whole parameter it does not own (see `visual_priors/models/hf_llama.py` for
    the name and layout map). Every expected tensor must be present with its shape, or the error names
    each missing or mismatched one. float32 checkpoints load bit for bit; others are upcast to the
    parameter dtype.
  * Vocabulary: the directory's tokenizer (`tokenizer.model`, or a unigram `tokenizer.json`) is the run's
    vocabulary (`visual_priors/data/hf_tokenizer.py`); the segment store must be tokenized with it
    (`python -m visual_priors data build --vocab DIR`).
  * Identity: `content_sha256(DIR)` hashes config.json, the weights and the tokenizer files (memoised per
    file size and mtime in the data cache), and is what a stage key holds for `hf:DIR`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from visual_priors.data import cache, hf_tokenizer
from visual_priors.models import hf_llama, safetensors_io
from visual_priors.models.decoder import DecoderConfig

PREFIX = "hf:"
CONFIG_FILE = "config.json"
HASHED_TOKENIZER_FILES = (hf_tokenizer.TOKENIZER_MODEL, hf_tokenizer.TOKENIZER_JSON, hf_tokenizer.TOKENIZER_CONFIG,
                          hf_tokenizer.SPECIAL_TOKENS_MAP)
IGNORED_TENSORS = ("rotary_emb.inv_freq",)  # buffers some older checkpoints saved


def parse_init_from(value: str | None) -> pathlib.Path | None:
  """`""` -> None; `"hf:DIR"` -> DIR (expanded, absolute); anything else is an error naming the form."""
  if not value:
    return None
  if not isinstance(value, str) or not value.startswith(PREFIX) or not value[len(PREFIX):].strip():
    raise ValueError(f"pretrain.init_from {value!r} must be '' (random initialisation) or 'hf:DIR', a Hugging Face "
                     "Llama directory (config.json, model.safetensors, tokenizer).")
  return pathlib.Path(value[len(PREFIX):].strip()).expanduser().absolute()


@dataclasses.dataclass
class Checkpoint:
  """A Hugging Face Llama directory: its config.json and its weights (memory-mapped)."""

  directory: pathlib.Path
  hf_config: dict[str, Any]
  fields: dict[str, Any]  # DecoderConfig fields the checkpoint decides
  weights: safetensors_io.SafetensorsDir


def open_checkpoint(directory: str | os.PathLike[str]) -> Checkpoint:
  directory = pathlib.Path(directory).expanduser().absolute()
  if not (directory / CONFIG_FILE).is_file():
    raise FileNotFoundError(f"{directory} is not a Hugging Face model directory (no {CONFIG_FILE}).")
  hf_config = cache.read_json(directory / CONFIG_FILE)
  architectures = hf_config.get("architectures") or [hf_llama.ARCHITECTURE]
  if hf_llama.ARCHITECTURE not in architectures:
    raise ValueError(f"{directory}: architectures {architectures}; only {hf_llama.ARCHITECTURE} checkpoints import.")
  try:
    fields = hf_llama.decoder_fields(hf_config)
  except ValueError as error:
    raise ValueError(f"{directory}: {error}") from None
  return Checkpoint(directory, hf_config, fields, safetensors_io.SafetensorsDir(directory))


def matched_config(checkpoint: Checkpoint, scale: DecoderConfig, scale_name: str, *,
                   min_vocab_size: int | None = None) -> DecoderConfig:
  """The scale's config with the checkpoint's rope_theta, norm eps, tying and vocabulary size; raises naming
  each shape parameter where checkpoint and scale differ."""
  fields = checkpoint.fields
  problems = [f"{hf_key} is {fields[name]} in the checkpoint, {getattr(scale, name)} in scale {scale_name!r} "
              f"({name})" for name, hf_key in hf_llama.SHAPE_FIELDS.items()
              if name != "vocab_size" and fields[name] != getattr(scale, name)]
  if problems:
    raise ValueError(f"The checkpoint {checkpoint.directory} does not fit scale {scale_name!r}: {'; '.join(problems)}. "
                     "Choose the scale with these shapes (pretrain.scale) or another checkpoint.")
  if min_vocab_size is not None and fields["vocab_size"] < min_vocab_size:
    raise ValueError(f"The checkpoint's vocab_size {fields['vocab_size']} is smaller than its vocabulary's "
                     f"{min_vocab_size} pieces.")
  config = dataclasses.replace(scale, **{name: fields[name] for name in
                                         ("vocab_size", "rope_theta", "norm_eps", "tie_embeddings")})
  check_tensors(checkpoint, config)
  return config


def check_tensors(checkpoint: Checkpoint, config: DecoderConfig) -> list[hf_llama.Tensor]:
  """The tensors of `config`, each checked present in the checkpoint with its HF shape (errors name them all)."""
  tensors = hf_llama.tensors(config)
  problems = []
  for tensor in tensors:
    if tensor.hf_name not in checkpoint.weights:
      problems.append(f"missing {tensor.hf_name} (for {tensor.path})")
    elif checkpoint.weights.shape(tensor.hf_name) != tensor.hf_shape:
      problems.append(f"{tensor.hf_name}: shape {checkpoint.weights.shape(tensor.hf_name)} in the checkpoint, "
                      f"{tensor.hf_shape} for {tensor.path}")
  known = {t.hf_name for t in tensors} | ({"lm_head.weight"} if config.tie_embeddings else set())
  unknown = sorted(n for n in checkpoint.weights.names() if n not in known and not n.endswith(IGNORED_TENSORS))
  if unknown:
    problems.append(f"unexpected tensors {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
  if problems:
    shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
    raise ValueError(f"The checkpoint {checkpoint.directory} does not hold this model's weights: {shown}.")
  return tensors


def sharded_variables(checkpoint: Checkpoint, config: DecoderConfig,
                      targets: Mapping[str, jax.ShapeDtypeStruct], prefix: str = "") -> dict[str, jax.Array]:
  """The checkpoint's weights for `targets` (framework path -> shape, dtype, sharding), each device reading
  only its slice from the mapped file; `prefix` is prepended to the decoder's paths (e.g. "llm/")."""
  arrays = {}
  for tensor in check_tensors(checkpoint, config):
    path = prefix + tensor.path
    if path not in targets:
      raise ValueError(f"The model has no variable {path!r} for {tensor.hf_name}.")
    target = targets[path]
    if tuple(target.shape) != tensor.shape:
      raise ValueError(f"{path}: the model has shape {tuple(target.shape)}, the checkpoint gives {tensor.shape}.")
    view = hf_llama.from_hf(tensor, checkpoint.weights.get(tensor.hf_name))
    dtype = np.dtype(target.dtype)

    def read(index, view=view, dtype=dtype):
      return np.ascontiguousarray(view[index], dtype=dtype)

    arrays[path] = jax.make_array_from_callback(tuple(target.shape), target.sharding, read)
  missing = sorted(set(targets) - set(arrays))
  if missing:
    raise ValueError(f"The checkpoint gives no value for {missing[:5]}.")
  return arrays


def hashed_files(directory: pathlib.Path) -> list[pathlib.Path]:
  """What identifies a checkpoint's content: config.json, the weights (with their index), the tokenizer."""
  weights = safetensors_io.SafetensorsDir(directory).file_paths()
  tokenizer = [directory / name for name in HASHED_TOKENIZER_FILES if (directory / name).is_file()]
  return [directory / CONFIG_FILE, *weights, *tokenizer]


def memoised_sha256(path: pathlib.Path) -> str:
  """sha256 of a file, memoised in the data cache under its path, size and mtime, so a large file is read once."""
  stat = path.stat()
  memo_key = hashlib.sha256(json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()
  memo = cache.cache_root() / "hf_digests" / f"{memo_key[:32]}.json"
  if memo.is_file():
    try:
      return json.loads(memo.read_text())["sha256"]
    except (ValueError, KeyError):
      pass
  digest = cache.sha256_file(path)
  cache.write_json_atomic(memo, {"path": str(path), "sha256": digest})
  return digest


def content_sha256(directory: str | os.PathLike[str]) -> str:
  """sha256 over (name, sha256) of `hashed_files`; each file's digest is memoised (`memoised_sha256`)."""
  directory = pathlib.Path(directory).expanduser().absolute()
  entries = [[path.name, memoised_sha256(path)] for path in hashed_files(directory)]
  return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()


def init_record(directory: pathlib.Path) -> dict[str, Any]:
  """What a pretrain manifest records of the checkpoint it started from."""
  return {"kind": "hf", "path": str(directory), "content_sha256": content_sha256(directory),
          "config": cache.read_json(directory / CONFIG_FILE)}


def check_vocabulary(directory: pathlib.Path, store_vocab: str | os.PathLike[str]) -> None:
  """Raises unless the segment store's vocabulary is the checkpoint's tokenizer (same pieces, same ids)."""
  wanted = hf_tokenizer.vocabulary_model(directory, work_dir=cache.cache_root() / "vocab" / "hf-check")
  if not hf_tokenizer.same_vocabulary(wanted, store_vocab):
    raise ValueError(f"The segment store was tokenized with {store_vocab}, not with the tokenizer of {directory}. "
                     f"Build a store with the checkpoint's vocabulary first: python -m visual_priors data build "
                     f"--vocab {directory} (and point data.store at it).")
