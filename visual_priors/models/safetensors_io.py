"""Streaming safetensors files: a writer that takes one tensor at a time and a memory-mapped reader.

The format (https://github.com/huggingface/safetensors): 8 bytes little-endian header length N, N bytes of
JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}} padded with spaces to a
multiple of 8, then the tensors' bytes back to back (C order, little-endian). Offsets are planned from the
shapes before any data is written, so a checkpoint of any size is written holding one tensor in memory;
shards above `max_shard_bytes` get Hugging Face's index (`model.safetensors.index.json`). Reading maps the
file and returns views, so a caller slicing a view reads only those bytes.

Written without the `safetensors` package (so export needs no torch stack); the tests check the files
against it and against transformers.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import struct
from collections.abc import Mapping, Sequence

import ml_dtypes
import numpy as np

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
DEFAULT_MAX_SHARD_BYTES = 5 * 1024 ** 3  # transformers' default shard size for save_pretrained


def dtype_name(dtype: np.dtype | str) -> str:
  dtype = np.dtype(dtype)
  if dtype not in _NAMES:
    raise ValueError(f"safetensors cannot hold dtype {dtype}; supported: {sorted(str(d) for d in _NAMES)}.")
  return _NAMES[dtype]


def _header_bytes(entries: Mapping[str, tuple[Sequence[int], np.dtype]], metadata: Mapping[str, str]
                  ) -> tuple[bytes, dict[str, tuple[int, int]]]:
  header: dict[str, object] = {"__metadata__": dict(metadata)}
  offsets, position = {}, 0
  for name, (shape, dtype) in entries.items():
    size = math.prod(shape) * np.dtype(dtype).itemsize
    offsets[name] = (position, position + size)
    header[name] = {"dtype": dtype_name(dtype), "shape": [int(s) for s in shape], "data_offsets": [position,
                                                                                                  position + size]}
    position += size
  text = json.dumps(header, separators=(",", ":")).encode()
  text += b" " * (-len(text) % 8)
  return struct.pack("<Q", len(text)) + text, offsets


class ShardedWriter:
  """Writes planned tensors (name -> shape, dtype, in order) one at a time into shards of at most
  `max_shard_bytes` (a larger tensor gets a shard of its own); `close()` writes the index when sharded."""

  def __init__(self, out_dir: str | os.PathLike[str], tensors: Mapping[str, tuple[Sequence[int], np.dtype]],
               max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, metadata: Mapping[str, str] | None = None,
               stem: str = "model"):
    self.out_dir = pathlib.Path(out_dir)
    self.stem = stem
    self.metadata = {"format": "pt", **(metadata or {})}  # transformers refuses files without format "pt"
    groups: list[dict[str, tuple[Sequence[int], np.dtype]]] = [{}]
    used = 0
    for name, (shape, dtype) in tensors.items():
      size = math.prod(shape) * np.dtype(dtype).itemsize
      if groups[-1] and used + size > max_shard_bytes:
        groups.append({})
        used = 0
      groups[-1][name] = (tuple(shape), np.dtype(dtype))
      used += size
    count = len(groups)
    self.files = ([f"{stem}.safetensors"] if count == 1 else
                  [f"{stem}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)])
    self.groups = groups
    self.total_size = sum(math.prod(s) * d.itemsize for g in groups for s, d in g.values())
    self._order = [(index, name) for index, group in enumerate(groups) for name in group]
    self._next = 0
    self._handle = None
    self._open_index = -1

  def _open(self, index: int) -> None:
    if self._handle:
      self._handle.close()
    header, _ = _header_bytes(self.groups[index], self.metadata)
    self._handle = open(self.out_dir / self.files[index], "wb")
    self._handle.write(header)
    self._open_index = index

  def write(self, name: str, array: np.ndarray) -> None:
    """Writes the next planned tensor; its name, shape and dtype must be the planned ones."""
    if self._next >= len(self._order):
      raise ValueError(f"Tensor {name!r} was not planned: all {len(self._order)} tensors are written.")
    index, expected = self._order[self._next]
    shape, dtype = self.groups[index][expected]
    if name != expected or tuple(array.shape) != shape or array.dtype != dtype:
      raise ValueError(f"Expected tensor {expected!r} {shape} {dtype} next, got {name!r} {tuple(array.shape)} "
                       f"{array.dtype}.")
    if index != self._open_index:
      self._open(index)
    data = np.ascontiguousarray(array)
    if data.dtype.byteorder == ">":
      data = data.byteswap().view(data.dtype.newbyteorder("<"))
    self._handle.write(memoryview(data.reshape(-1).view(np.uint8)))
    self._next += 1

  def close(self) -> list[str]:
    """Finishes the files (every planned tensor must be written); returns the file names written."""
    if self._handle:
      self._handle.close()
      self._handle = None
    if self._next != len(self._order):
      missing = [name for _, name in self._order[self._next:]]
      raise ValueError(f"{len(missing)} planned tensor(s) were not written, e.g. {missing[:3]}.")
    if len(self.files) > 1:
      weight_map = {name: self.files[index] for index, name in self._order}
      index_text = json.dumps({"metadata": {"total_size": self.total_size}, "weight_map": weight_map}, indent=2)
      index_file = f"{self.stem}.safetensors.index.json"
      (self.out_dir / index_file).write_text(index_text + "\n")
      return [*self.files, index_file]
    return list(self.files)


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, dict], int]:
  """(the header's tensor entries, the byte offset where the data starts)."""
  with open(path, "rb") as f:
    prefix = f.read(8)
    if len(prefix) < 8:
      raise ValueError(f"{path} is not a safetensors file (shorter than 8 bytes).")
    (length,) = struct.unpack("<Q", prefix)
    if length > 100 * 1024 ** 2:
      raise ValueError(f"{path} is not a safetensors file (header length {length}).")
    try:
      header = json.loads(f.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
      raise ValueError(f"{path} has a damaged safetensors header: {error}.") from None
  header.pop("__metadata__", None)
  return header, 8 + length


class SafetensorsDir:
  """The tensors of a Hugging Face weights directory (one `model.safetensors` or shards with an index),
  each as a read-only memory-mapped numpy view."""

  def __init__(self, directory: str | os.PathLike[str], stem: str = "model"):
    self.directory = pathlib.Path(directory)
    self.index_file = f"{stem}.safetensors.index.json"
    if (self.directory / self.index_file).is_file():
      weight_map = json.loads((self.directory / self.index_file).read_text())["weight_map"]
      files = sorted(set(weight_map.values()))
    elif (self.directory / f"{stem}.safetensors").is_file():
      files = [f"{stem}.safetensors"]
    else:
      raise FileNotFoundError(f"{self.directory} holds no {stem}.safetensors or {self.index_file} (only safetensors "
                              "weights are read; save .bin weights again with save_pretrained first).")
    self.files = files
    self.entries: dict[str, tuple[str, dict, int]] = {}
    for name in files:
      header, start = read_header(self.directory / name)
      for tensor, entry in header.items():
        self.entries[tensor] = (name, entry, start)
    self._maps: dict[str, np.memmap] = {}

  def __contains__(self, name: str) -> bool:
    return name in self.entries

  def names(self) -> list[str]:
    return list(self.entries)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self.entries[name][1]["shape"])

  def dtype(self, name: str) -> np.dtype:
    code = self.entries[name][1]["dtype"]
    if code not in DTYPES:
      raise ValueError(f"Tensor {name!r} has dtype {code}, which is not supported here ({sorted(DTYPES)}).")
    return DTYPES[code]

  def get(self, name: str) -> np.ndarray:
    """The tensor as a read-only view of the mapped file (no bytes are read until it is used)."""
    file, entry, start = self.entries[name]
    if file not in self._maps:
      self._maps[file] = np.memmap(self.directory / file, dtype=np.uint8, mode="r")
    begin, end = entry["data_offsets"]
    raw = self._maps[file][start + begin:start + end]
    return raw.view(self.dtype(name)).reshape(self.shape(name))

  def file_paths(self) -> list[pathlib.Path]:
    return [self.directory / name for name in self.files] + (
        [self.directory / self.index_file] if (self.directory / self.index_file).is_file() else [])

