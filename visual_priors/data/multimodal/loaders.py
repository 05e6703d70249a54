"""Loaders for image-text data in the formats users have, as records the multimodal pipeline reads.

* LLaVA / Cambrian instruction data: a JSON list (or JSONL, one item a line) of {"id", "image" (optional:
  absent = text-only), "conversations": [{"from", "value"}, ...]} plus an image folder. Every image is
  checked up front, so a missing file fails at load time with its name, not hours into training.
* Caption pairs: JSONL of {"image", "caption"} (the generator's captions.jsonl).
* TFDS image-text datasets prepared on disk (`tfds.builder(name, data_dir=...)`), with configurable image
  and caption feature names. ArrayRecord datasets stay on disk (random access); TFRecord ones are read
  once into memory with their images left encoded (decoded later, in the pipeline).
* MLE-Bench rows ({"image", "question", "choices", "answer", "sub_task"}) in JSONL, or in parquet through
  pyarrow (a dependency of tensorflow-datasets); the image is a path, or encoded bytes (parquet), or a
  {"bytes", "path"} struct as Hugging Face writes image columns.

Records are dicts; "image" is an absolute path, encoded bytes, a uint8 array, or None.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from visual_priors.data import cache
from visual_priors.data.multimodal import chat

MLE_BENCH_FIELDS = ("image", "question", "choices", "answer", "sub_task")
# What a reader's error about a damaged data file tells the user to do.
DATA_FIX = "fix or regenerate it (one JSON value per line in .jsonl, one JSON list in .json)"


def read_items(path: pathlib.Path) -> list[Any]:
  """The items of a JSON list file, or of a JSONL file (one item a line), unchanged."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"No data file at {path}.")
  if path.suffix == ".jsonl":
    return cache.read_jsonl(path, DATA_FIX)
  items = cache.read_json(path, DATA_FIX)
  if not isinstance(items, list):
    raise ValueError(f"{path} holds a JSON {type(items).__name__}; expected a list of items "
                     "(LLaVA/Cambrian format), or use a .jsonl file with one item per line.")
  return items


def _image_path(value: Any, folder: pathlib.Path, what: str) -> str:
  if not isinstance(value, str) or not value:
    raise ValueError(f"{what} has image {value!r}; expected a file name relative to {folder} "
                     "(several images per item are not supported).")
  path = (folder / value).resolve()
  if not path.is_file():
    raise FileNotFoundError(f"{what}: image file {value!r} not found (looked for {path}). Check the image "
                            "folder, or drop the item.")
  return str(path)


def load_llava(json_path: str | pathlib.Path, image_folder: str | pathlib.Path | None = None) -> list[dict]:
  """Records {"id", "image" (absolute path or None), "conversations", ...the item's other fields}.

  `image_folder` defaults to the JSON file's folder. Text-only items must not mention `<image>`.
  """
  json_path = pathlib.Path(json_path)
  folder = pathlib.Path(image_folder) if image_folder is not None else json_path.parent
  records = []
  for index, item in enumerate(read_items(json_path)):
    if not isinstance(item, Mapping):
      raise ValueError(f"{json_path} item {index} is a {type(item).__name__}; expected an object with "
                       "'conversations'.")
    sample_id = str(item.get("id", f"{json_path.stem}-{index}"))
    what = f"{json_path} item {index} (id {sample_id!r})"
    conversations = item.get("conversations")
    if not isinstance(conversations, list) or not conversations:
      raise ValueError(f"{what} has no 'conversations' list.")
    image = item.get("image")
    if image is None and any(chat.IMAGE_TOKEN in str(turn.get("value", "")) for turn in conversations):
      raise ValueError(f"{what} mentions {chat.IMAGE_TOKEN} but has no 'image' field; add the image or "
                       "remove the marker.")
    records.append({**item, "id": sample_id, "conversations": conversations,
                    "image": None if image is None else _image_path(image, folder, what)})
  return records


def load_captions(jsonl_path: str | pathlib.Path, image_folder: str | pathlib.Path | None = None) -> list[dict]:
  """Records {"id", "image" (absolute path), "caption"} from JSONL rows {"image", "caption"}."""
  jsonl_path = pathlib.Path(jsonl_path)
  folder = pathlib.Path(image_folder) if image_folder is not None else jsonl_path.parent
  records = []
  for index, row in enumerate(read_items(jsonl_path)):
    what = f"{jsonl_path} row {index}"
    if not isinstance(row, Mapping) or not isinstance(row.get("caption"), str):
      raise ValueError(f"{what} is {row!r}; expected {{'image': path, 'caption': text}}.")
    records.append({"id": str(row.get("id", f"{jsonl_path.stem}-{index}")), "caption": row["caption"],
                    "image": _image_path(row.get("image"), folder, what)})
  return records


def _text(value: Any, what: str) -> str:
  """A caption from a TFDS value: str/bytes, or the first of a sequence of them."""
  if isinstance(value, np.ndarray) and value.ndim > 0 or isinstance(value, (list, tuple)):
    if len(value) == 0:
      raise ValueError(f"{what} has an empty caption list.")
    value = value[0]
  if isinstance(value, np.ndarray):
    value = value.item()
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, str):
    return value
  raise ValueError(f"{what}: caption value {value!r} is not text; point caption_key at a Text feature.")


def _feature(example: Mapping[str, Any], key: str, what: str) -> Any:
  """`example[key]`, following '/'-separated keys into nested features."""
  value: Any = example
  for part in key.split("/"):
    if not isinstance(value, Mapping) or part not in value:
      have = sorted(value) if isinstance(value, Mapping) else type(value).__name__
      raise KeyError(f"{what} has no feature {key!r} (at {part!r}; found {have}). Set image_key / caption_key.")
    value = value[part]
  return value


class TfdsImageText(Sequence):
  """Random-access records {"id", "image", "caption"} over a TFDS split (picklable for grain workers)."""

  def __init__(self, examples: Sequence[Mapping[str, Any]], name: str, split: str, image_key: str,
               caption_key: str):
    self._examples = examples
    self._name, self._split = name, split
    self._image_key, self._caption_key = image_key, caption_key

  def __len__(self) -> int:
    return len(self._examples)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example = self._examples[index]
    what = f"TFDS {self._name}[{self._split}] example {index}"
    image = _feature(example, self._image_key, what)
    return {"id": f"{self._name}/{self._split}/{index}", "caption": _text(_feature(example, self._caption_key, what),
                                                                          what),
            "image": image.item() if isinstance(image, np.ndarray) and image.dtype == object else image}


def load_tfds_image_text(name: str, data_dir: str | pathlib.Path, *, split: str = "train",
                         image_key: str = "image", caption_key: str = "caption") -> TfdsImageText:
  """Image-caption records from a TFDS dataset already prepared under `data_dir` (nothing is downloaded)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  builder = tfds.builder(name, data_dir=str(data_dir))
  if not builder.is_prepared():
    raise FileNotFoundError(f"TFDS dataset {name!r} is not prepared under {data_dir}; prepare it first "
                            f"(`tfds build {name} --data_dir={data_dir}`), or point data_dir at its parent.")
  if split not in builder.info.splits:
    raise ValueError(f"TFDS dataset {name!r} has no split {split!r}; it has {sorted(builder.info.splits)}.")
  decoders = {image_key: tfds.decode.SkipDecoding()} if "/" not in image_key else None
  if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
    examples = builder.as_data_source(split, decoders=decoders)
  else:
    examples = list(tfds.as_numpy(builder.as_dataset(split, decoders=decoders)))
  return TfdsImageText(examples, name, split, image_key, caption_key)


def _mle_bench_image(value: Any, folder: pathlib.Path, what: str) -> Any:
  if isinstance(value, Mapping):  # Hugging Face image column: {"bytes": ..., "path": ...}
    if value.get("bytes"):
      return bytes(value["bytes"])
    value = value.get("path")
  if isinstance(value, (bytes, bytearray)):
    return bytes(value)
  return _image_path(value, folder, what)


def _read_parquet(path: pathlib.Path) -> list[dict]:
  try:
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(f"Reading {path} needs pyarrow (installed with tensorflow-datasets); "
                      "`pip install pyarrow`, or convert the rows to JSONL.") from e
  return pq.read_table(path).to_pylist()


def load_mle_bench(path: str | pathlib.Path, image_folder: str | pathlib.Path | None = None) -> list[dict]:
  """Records {"id", "image", "question", "choices", "answer", "sub_task"} (and "prompt", where a generated row has
  one) from MLE-Bench rows (.jsonl/.parquet)."""
  path = pathlib.Path(path)
  folder = pathlib.Path(image_folder) if image_folder is not None else path.parent
  if path.suffix == ".parquet":
    if not path.is_file():
      raise FileNotFoundError(f"No data file at {path}.")
    rows = _read_parquet(path)
  elif path.suffix == ".jsonl":
    rows = read_items(path)
  else:
    raise ValueError(f"{path}: MLE-Bench rows are read from .jsonl or .parquet files.")
  records = []
  for index, row in enumerate(rows):
    what = f"{path} row {index}"
    missing = [field for field in MLE_BENCH_FIELDS if field not in row]
    if missing:
      raise ValueError(f"{what} lacks {missing}; MLE-Bench rows have {list(MLE_BENCH_FIELDS)}.")
    choices = list(row["choices"]) if row["choices"] is not None else None
    if choices is not None and row["answer"] not in choices:
      raise ValueError(f"{what}: answer {row['answer']!r} is not one of its choices {choices}.")
    records.append({"id": str(row.get("id", f"{path.stem}-{index}")), "question": row["question"],
                    "choices": choices, "answer": row["answer"], "sub_task": row["sub_task"],
                    "image": _mle_bench_image(row["image"], folder, what),
                    **({"prompt": row["prompt"]} if row.get("prompt") else {})})  # generated rows ask in their format
  return records
