"""The multimodal input pipeline (grain): records -> host batches of preprocessed images and chat features.

Records come from `loaders` (a sequence of dicts; `image` is a file path, encoded bytes, a uint8 HWC
array, or None for text-only items). Per epoch the records are shuffled by seed, this host takes its
slice, and a grain map does the host-side work: decode, convert to RGB, resize to the encoder's
`image_size` (Pillow's bilinear filter, which widens its support when shrinking, i.e. antialiased; the
SigLIP recipe squashes to a square, no crop) and scale to [-1, 1]; tokenize the conversation with the
chat template. Rows are one conversation each, padded to `seq_len`; batches are built ahead in a
background thread. Iterators have get_state() / set_state() for exact resume. Cost per row, measured on
one busy CPU core: ~7 ms for a 640x480 JPEG to 224x224 (decode 4 ms, resize 2.6 ms) and 0.14 ms to
tokenize a 1k-token conversation; `read_threads` spreads the decoding over cores.

Instruction batches: {"images" float32 (B, H, W, 3), "has_image" int32 (B,), the seqio decoder features
(B, T), "decoder_image_mask" int32 (B, T) marking the image slots among decoder_input_tokens (see `chat`)};
rows without an image carry zeros and has_image 0.
`text_only=True` withholds every image (the "blind" stage): no image slots, has_image 0.
Caption batches (contrastive stage): {"images", "text_tokens" int32 (B, L): caption ids, EOS, 0-padding}.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from visual_priors.data import pipeline as text_pipeline
from visual_priors.data import vocab
from visual_priors.data.multimodal import chat

INSTRUCT_FEATURES = text_pipeline.DEVICE_FEATURES + ("decoder_image_mask", "images", "has_image")
CAPTION_FEATURES = ("images", "text_tokens")


@dataclasses.dataclass(frozen=True)
class MultimodalConfig:
  batch_size: int  # global batch, in rows
  seq_len: int  # tokens per row (caption batches: caption tokens per row)
  image_size: int  # the encoder's input resolution
  seed: int = 42
  shuffle: bool = True
  num_epochs: int | None = None  # None = repeat forever (training); 1 = one pass (evaluation)
  text_only: bool = False  # withhold images: no slots, has_image 0 (blind instruction tuning)
  drop_unsupervised: bool = False  # False: a row left with no loss token raises; True: it is skipped
  drop_remainder: bool = True  # False keeps a last, smaller batch (one-pass evaluation)
  read_threads: int = 4  # threads decoding and tokenizing records (Pillow releases the GIL)
  prefetch_buffer: int = 16  # records prepared ahead by those threads
  prefetch_batches: int = 2  # finished batches built ahead in a background thread (0 = none)

  def __post_init__(self):
    if min(self.batch_size, self.seq_len, self.image_size) <= 0:
      raise ValueError(f"batch_size={self.batch_size}, seq_len={self.seq_len} and image_size={self.image_size} "
                       "must be positive.")
    if min(self.read_threads, self.prefetch_buffer, self.prefetch_batches) < 0:
      raise ValueError("read_threads, prefetch_buffer and prefetch_batches must be >= 0.")


# instruct_dataset(drop_unsupervised=True) fails when more than this fraction of the records has no answer token
# left at seq_len (checked on an even sample of at most DROP_CHECK_SAMPLE records).
MAX_DROPPED_FRACTION, DROP_CHECK_SAMPLE = 0.05, 2000


def load_image(image: Any, image_size: int) -> np.ndarray:
  """float32 (image_size, image_size, 3) in [-1, 1] from a path, encoded bytes or a uint8 (H, W[, C]) array."""
  from PIL import Image  # pylint: disable=import-outside-toplevel

  if isinstance(image, np.ndarray):
    if image.dtype != np.uint8:
      raise ValueError(f"Image arrays must be uint8 (H, W[, C]); got {image.dtype} {image.shape}.")
    picture = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)
  elif isinstance(image, (bytes, bytearray)):
    picture = Image.open(io.BytesIO(image))
  elif isinstance(image, (str, pathlib.Path)):
    if not pathlib.Path(image).is_file():
      raise FileNotFoundError(f"Image file {image} does not exist.")
    picture = Image.open(image)
  else:
    raise TypeError(f"Cannot read an image from {type(image).__name__}; expected a path, bytes or uint8 array.")
  picture = picture.convert("RGB")
  if picture.size != (image_size, image_size):
    picture = picture.resize((image_size, image_size), Image.Resampling.BILINEAR)
  return np.asarray(picture, np.float32) / 127.5 - 1.0


class _InstructRow:
  """One record -> one row of instruction features (a picklable grain map)."""

  def __init__(self, template: chat.ChatTemplate, config: MultimodalConfig):
    self.template = template
    self.config = config

  def text_features(self, record: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The row's decoder features without its image (None: no answer token survives and drop_unsupervised)."""
    with_image = record.get("image") is not None and not self.config.text_only
    sample_id = str(record.get("id", ""))
    encoded = self.template.encode(record["conversations"], with_image=with_image, sample_id=sample_id)
    try:
      return chat.decoder_features(encoded, self.config.seq_len, sample_id=sample_id)
    except chat.NoSupervisedTokensError:
      if self.config.drop_unsupervised:
        return None
      raise

  def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    size = self.config.image_size
    with_image = record.get("image") is not None and not self.config.text_only
    row = self.text_features(record)
    if row is None:
      return None
    row["images"] = load_image(record["image"], size) if with_image else np.zeros((size, size, 3), np.float32)
    row["has_image"] = np.int32(with_image)
    return row


class _CaptionRow:
  """One {"image", "caption"} record -> images and EOS-terminated, 0-padded caption ids."""

  def __init__(self, vocab_path: pathlib.Path, config: MultimodalConfig):
    self.tokenizer = chat.LazyProcessor(vocab_path)
    self.config = config

  def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if record.get("image") is None:
      raise ValueError(f"Caption record {record.get('id', '')!r} has no image; caption data needs one per row.")
    ids = self.tokenizer.get().encode(record["caption"])[:self.config.seq_len - 1] + [vocab.EOS_ID]
    tokens = np.zeros(self.config.seq_len, np.int32)
    tokens[:len(ids)] = ids
    return {"images": load_image(record["image"], self.config.image_size), "text_tokens": tokens}


def _host_rows(records: Sequence[Mapping[str, Any]], row_fn, config: MultimodalConfig, process_index: int,
               process_count: int):
  """Shuffled, repeated records of this host, mapped to rows, as an IterDataset (rows may be None)."""
  import grain  # pylint: disable=import-outside-toplevel

  if len(records) == 0:
    raise ValueError("The multimodal pipeline got no records; check the loader's input files.")
  ds = grain.MapDataset.source(records)
  if config.shuffle:
    ds = ds.shuffle(seed=config.seed)
  ds = ds.repeat(config.num_epochs)[process_index::process_count].map(row_fn)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                              prefetch_buffer_size=config.prefetch_buffer))


def _batched(rows, local_batch: int, config: MultimodalConfig):
  import grain  # pylint: disable=import-outside-toplevel

  batches = rows.batch(local_batch, drop_remainder=config.drop_remainder)
  if config.prefetch_batches:
    batches = grain.experimental.ThreadPrefetchIterDataset(batches, prefetch_buffer_size=config.prefetch_batches)
  return batches


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel
    return jax.process_index(), jax.process_count()
  return process_index, process_count


def check_few_dropped(records: Sequence[Mapping[str, Any]], template: chat.ChatTemplate, config: MultimodalConfig,
                      sample: int = DROP_CHECK_SAMPLE) -> None:
  """Fails before training when more than MAX_DROPPED_FRACTION of (an even sample of) the records would be dropped
  for want of an answer token at config.seq_len: a silently shrunken data set (say, only the text-only items of
  an instruction mix left) trains a different model than the one asked for."""
  step = max(1, len(records) // sample)
  checked = records[::step]
  ends = []  # per checked record: the token count its first answer needs
  for record in checked:
    encoded = template.encode(record["conversations"], sample_id=str(record.get("id", "")),
                              with_image=record.get("image") is not None and not config.text_only)
    ends.append(encoded.assistant_spans[0][1] if encoded.assistant_spans else 0)
  dropped = sum(end > config.seq_len or end == 0 for end in ends)
  if dropped and (dropped == len(checked) or dropped > MAX_DROPPED_FRACTION * len(checked)):
    answered = np.array([end for end in ends if end], np.float64)
    needed = int(np.ceil(np.quantile(answered, 1 - MAX_DROPPED_FRACTION))) if answered.size else 0
    with_images = sum(end > config.seq_len and record.get("image") is not None for end, record in zip(ends, checked))
    raise ValueError(f"{dropped} of {len(checked)} instruction records{' checked' if step > 1 else ''} "
                     f"({with_images} with an image) lose every answer token at seq_len={config.seq_len}: the prompt "
                     f"and image slots fill the row, and they would be dropped. Raise seq_len to at least {needed} "
                     f"(to keep {1 - MAX_DROPPED_FRACTION:.0%} of them), or shorten the prompts.")


def instruct_dataset(records: Sequence[Mapping[str, Any]], template: chat.ChatTemplate, config: MultimodalConfig,
                     process_index: int | None = None, process_count: int | None = None):
  """A grain IterDataset of this host's instruction batches (see the module docstring)."""
  process_index, process_count = _process(process_index, process_count)
  local_batch = text_pipeline.host_batch_size(config, process_count)
  row_fn = _InstructRow(template, config)
  if config.drop_unsupervised:
    check_few_dropped(records, template, config)
  rows = _host_rows(records, row_fn, config, process_index, process_count)
  if config.drop_unsupervised:
    rows = rows.filter(lambda row: row is not None)
  return _batched(rows, local_batch, config)


def caption_dataset(records: Sequence[Mapping[str, Any]], vocab_path: str | pathlib.Path, config: MultimodalConfig,
                    process_index: int | None = None, process_count: int | None = None):
  """A grain IterDataset of this host's caption batches {"images", "text_tokens"} for contrastive training."""
  process_index, process_count = _process(process_index, process_count)
  local_batch = text_pipeline.host_batch_size(config, process_count)
  rows = _host_rows(records, _CaptionRow(pathlib.Path(vocab_path), config), config, process_index, process_count)
  return _batched(rows, local_batch, config)


def to_global_batch(batch: Mapping[str, np.ndarray], mesh, features: Sequence[str] = INSTRUCT_FEATURES):
  """This host's multimodal batch as global jax Arrays, rows sharded over the mesh's data axes."""
  return text_pipeline.to_global_batch(batch, mesh, features=features)
