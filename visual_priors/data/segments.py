"""The segment store: documents cut into fixed-length token segments, labelled, and written for grain and seqio.

Each document is tokenized and cut into segments of `segment_length - 1` tokens; an EOS closes every segment,
so a full segment is exactly `segment_length` tokens (1024 in the paper) and two pack into a 2048 context.
Per source and split the store holds:

* `<split>.tfrecord`: tf.train.Example {text, labels} for the store's seqio Tasks (`tasks.py`; text is re-tokenized);
* `<split>.array_record`: the int32 token ids (EOS included) for the pre-tokenized grain path;
* `<split>.masks.npy` / `<split>.lengths.npy`: per-segment label bit masks and token counts, used to
  filter by category and to plan mixtures without reading the records.

The store directory is keyed by the corpora, the vocabulary, the segment settings and the labeller, is
written atomically, and its manifest records the vocabulary's sha256 so a mismatched vocabulary is refused.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from visual_priors import console, moved_paths
from visual_priors.data import cache, categories, vocab
from visual_priors.data.labelling.base import labels_to_mask

STORE_VERSION = 1
SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
  segment_length: int = 1024  # tokens per segment, EOS included
  min_tokens: int = 16  # shorter document tails are dropped
  encode_batch_documents: int = 64

  def __post_init__(self):
    if self.segment_length < 8:
      raise ValueError(f"segment_length={self.segment_length} is too small; use at least 8 tokens.")
    if not 1 <= self.min_tokens < self.segment_length:
      raise ValueError(f"min_tokens={self.min_tokens} must be in [1, segment_length).")


def category_member(masks: np.ndarray, category: str) -> np.ndarray:
  """Boolean array: which masks carry any label of `category`."""
  bits = sum(1 << categories.LABELS.index(l) for l in categories.labels_of(category))
  return (np.asarray(masks) & bits) != 0


def _cut(ids: Sequence[int], content: int, min_tokens: int) -> Iterator[list[int]]:
  for start in range(0, len(ids), content):
    piece = list(ids[start:start + content])
    if len(piece) + 1 >= min_tokens:
      yield piece


def _segments(documents: Iterator[dict], processor, config: SegmentConfig) -> Iterator[tuple[str, list[int]]]:
  """(segment text, token ids with EOS) for each segment of each document, in document order."""
  content = config.segment_length - 1
  batch: list[str] = []

  def flush():
    encoded = processor.encode(batch, num_threads=2)
    pieces = [p for ids in encoded for p in _cut(ids, content, config.min_tokens)]
    texts = processor.decode(pieces) if pieces else []
    batch.clear()
    return zip(texts, (p + [vocab.EOS_ID] for p in pieces))

  for doc in documents:
    batch.append(doc["text"])
    if len(batch) >= config.encode_batch_documents:
      yield from flush()
  if batch:
    yield from flush()


def _example(text: str, mask: int) -> bytes:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  feature = {
      "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")])),
      "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=[mask])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_split(out: pathlib.Path, split: str, segments: Iterator[tuple[str, list[int]]], labeller,
                 label_batch: int, on_flush=lambda: None) -> dict:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=import-outside-toplevel

  masks, lengths = [], []
  records = ArrayRecordWriter(str(out / f"{split}.array_record"), "group_size:1")
  with tf.io.TFRecordWriter(str(out / f"{split}.tfrecord")) as examples:
    pending: list[tuple[str, list[int]]] = []

    def flush():
      for (text, ids), labels in zip(pending, labeller.label([t for t, _ in pending])):
        mask = labels_to_mask(labels)
        records.write(np.asarray(ids, np.int32).tobytes())
        examples.write(_example(text, mask))
        masks.append(mask)
        lengths.append(len(ids))
      pending.clear()
      on_flush()

    for item in segments:
      pending.append(item)
      if len(pending) >= label_batch:
        flush()
    flush()
  records.close()
  masks_np, lengths_np = np.asarray(masks, np.uint8), np.asarray(lengths, np.int32)
  np.save(out / f"{split}.masks.npy", masks_np)
  np.save(out / f"{split}.lengths.npy", lengths_np)
  counts = collections.Counter(int(m) for m in masks_np)
  return {
      "segments": int(len(masks_np)),
      "tokens": int(lengths_np.sum()),
      "mask_counts": {str(m): c for m, c in sorted(counts.items())},
      "sha256": {suffix: cache.sha256_file(out / f"{split}.{suffix}")
                 for suffix in ("array_record", "tfrecord", "masks.npy")},
  }


VERIFIED = "verified.json"  # the store's own cache of verified content hashes (SegmentStore.verify)


class SegmentStore:
  """Read access to a built segment store."""

  def __init__(self, root: pathlib.Path):
    self.root = pathlib.Path(root)
    manifest_path = self.root / "manifest.json"
    if not manifest_path.exists():
      raise FileNotFoundError(f"No segment store at {self.root} (manifest.json missing); build it with "
                              "`python -m visual_priors data build`.")
    self.manifest = cache.read_json(manifest_path, "rebuild the store (python -m visual_priors data build)")
    self.segment_length: int = self.manifest["config"]["segment_length"]

  @property
  def sources(self) -> list[str]:
    return list(self.manifest["sources"])

  @property
  def vocab_path(self) -> pathlib.Path:
    """The vocabulary beside this store in its own cache (same layout), so a copied cache reads its own file;
    else the recorded one."""
    recorded = pathlib.Path(self.manifest["vocab"]["path"])
    return moved_paths.relocated(recorded, self.root.parent.parent / "vocab" / recorded.parent.name / recorded.name,
                                 own_first=True)

  def check_vocab(self, model_path: pathlib.Path) -> None:
    """Refuses a vocabulary other than the one the store was tokenized with."""
    model_path = pathlib.Path(model_path)
    if not model_path.is_file():
      raise FileNotFoundError(f"Vocabulary {model_path} of the segment store {self.root} does not exist; rebuild "
                              "the store with `python -m visual_priors data build`.")
    have = vocab.vocab_sha256(model_path)
    want = self.manifest["vocab"]["sha256"]
    if have != want:
      raise ValueError(
          f"Vocabulary {model_path} (sha256 {have[:12]}) does not match the segment store {self.root}, "
          f"which was tokenized with {self.manifest['vocab']['path']} (sha256 {want[:12]}, recorded in "
          f"{self.root / 'manifest.json'}). Use that vocabulary or rebuild the store with "
          "`python -m visual_priors data build`.")

  def verify(self, log: Callable[[str], None] = print) -> None:
    """Checks the store before a stage reads it: its vocabulary's sha256 against the manifest (always), and
    each data file's sha256 against the manifest. Content hashes are computed on first use only and cached in
    `VERIFIED` (size, mtime and sha256 per file); later calls compare sizes and mtimes, rehashing a changed
    file. Raises ValueError naming the first damaged file."""
    self.check_vocab(self.vocab_path)
    cache_path = self.root / VERIFIED
    try:
      verified = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, ValueError):
      verified = {}
    checked, hashed = {}, 0
    for source, entry in self.manifest["sources"].items():
      for split, info in entry["splits"].items():
        for suffix, want in (info.get("sha256") or {}).items():
          path = self.root / source / f"{split}.{suffix}"
          name = f"{source}/{split}.{suffix}"
          if not path.is_file():
            raise FileNotFoundError(f"Segment store file {path} is missing; rebuild the store (python -m "
                                    "visual_priors data build).")
          stat = path.stat()
          stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": want}
          if verified.get(name) != stamp:
            if not hashed:
              log(f"  verifying the segment store {self.root} (content hashes, first use only)")
            hashed += 1
            have = cache.sha256_file(path)
            if have != want:
              raise ValueError(f"Segment store file {path} is damaged: sha256 {have[:12]}, its manifest records "
                               f"{want[:12]}. Rebuild the store (python -m visual_priors data build).")
          checked[name] = stamp
    if hashed:
      try:
        cache.write_json_atomic(cache_path, checked)
      except OSError:  # A read-only store is verified again next time.
        pass

  def _check(self, source: str, split: str) -> dict:
    from visual_priors.names import lookup  # pylint: disable=import-outside-toplevel
    entry = lookup(self.manifest["sources"], source, "source in this segment store")
    return lookup(entry["splits"], split, "split")

  def path(self, source: str, split: str, suffix: str) -> pathlib.Path:
    self._check(source, split)
    return self.root / source / f"{split}.{suffix}"

  def masks(self, source: str, split: str) -> np.ndarray:
    return np.load(self.path(source, split, "masks.npy"))

  def lengths(self, source: str, split: str) -> np.ndarray:
    return np.load(self.path(source, split, "lengths.npy"))

  def num_segments(self, source: str, split: str) -> int:
    return self._check(source, split)["segments"]

  def mask_counts(self, split: str, sources: Sequence[str] | None = None) -> dict[int, int]:
    """Segments per label mask over `sources` (default: the whole pool)."""
    total: collections.Counter[int] = collections.Counter()
    for source in sources or self.sources:
      total.update({int(m): c for m, c in self._check(source, split)["mask_counts"].items()})
    return dict(total)

  def label_rates(self, source: str, split: str = "train") -> categories.LabelRates:
    """Measured share of this source's segments in each category."""
    masks = self.masks(source, split)
    if masks.size == 0:
      raise ValueError(f"Source {source!r} has no {split} segments in {self.root}.")
    return categories.LabelRates(source, {c: float(category_member(masks, c).mean())
                                          for c in categories.TABLE_CATEGORIES})


LATEST = "data_latest.json"  # in the cache root: the segment store the last `data build` produced


def open_store(spec: str | None = None, cache_dir: str | None = None) -> SegmentStore:
  """A segment store: None or "latest" (the one the last `data build` wrote into the cache), a store key (its
  directory name under <cache>/segments), or a path."""
  root = cache.cache_root(cache_dir)
  if spec in (None, "", "latest"):
    pointer = root / LATEST
    if not pointer.exists():
      raise FileNotFoundError(f"No segment store built in {root}; run `python -m visual_priors data build` first "
                              "or pass --store.")
    fix = "delete it and rerun `python -m visual_priors data build`, or pass --store"
    recorded = pathlib.Path(cache.read_json(pointer, fix)["store"])
    return SegmentStore(moved_paths.relocated(recorded, pointer.parent / "segments" / recorded.name, own_first=True))
  keyed = root / "segments" / spec
  if "/" not in spec and keyed.is_dir():
    return SegmentStore(keyed)
  return SegmentStore(pathlib.Path(spec).expanduser())


def recorded_store(path: str | pathlib.Path) -> SegmentStore:
  """The store a run manifest recorded, or the one of that name in the current data cache if it moved (a segment
  store, or a seqio task's cache store)."""
  path = pathlib.Path(path)
  root = cache.cache_root()
  return SegmentStore(moved_paths.relocated(path, root / "segments" / path.name, root / "seqio" / path.name))


def store_dir(corpus_manifests: dict[str, dict], vocab_sha: str, config: SegmentConfig, labeller_name: str,
              cache_dir=None) -> pathlib.Path:
  key = cache.sha256_json({
      "version": STORE_VERSION, "vocab": vocab_sha, "config": dataclasses.asdict(config),
      "labeller": labeller_name,
      "corpora": {s: cache.sha256_json(m) for s, m in sorted(corpus_manifests.items())},
  })
  return cache.cache_root(cache_dir) / "segments" / f"L{config.segment_length}-{key[:12]}"


def build_segment_store(sources: Sequence[str], vocab_path: pathlib.Path, labeller,
                        config: SegmentConfig = SegmentConfig(), cache_dir=None, label_batch: int = 256,
                        log=print) -> SegmentStore:
  """Segments, labels and writes every source's splits; reuses an identical existing store."""
  from visual_priors.data import corpora  # pylint: disable=import-outside-toplevel

  if not sources:
    raise ValueError("No sources to segment.")
  manifests = {s: corpora.corpus_manifest(s, cache_dir=cache_dir) for s in sources}
  processor = vocab.load_processor(vocab_path)
  vocab_sha = vocab.vocab_sha256(vocab_path)
  out = store_dir(manifests, vocab_sha, config, labeller.name, cache_dir)
  if (out / "manifest.json").exists():
    log(f"segments {out.name}: up to date")
    return SegmentStore(out)
  entries = {}
  progress = console.Progress(sum(m["documents"] for m in manifests.values()), "segments:", log=log)
  documents_done = 0

  def counted(documents: Iterator[dict]) -> Iterator[dict]:
    nonlocal documents_done
    for document in documents:
      yield document
      documents_done += 1

  with cache.atomic_directory(out) as tmp, progress:
    for source in sources:
      (tmp / source).mkdir()
      splits = {}
      for split in SPLITS:
        docs = counted(corpora.read_documents(source, split, cache_dir=cache_dir))
        splits[split] = _write_split(
            tmp / source, split, _segments(docs, processor, config), labeller, label_batch,
            on_flush=lambda: progress.update(documents_done, f"documents segmented and labelled ({source})"))
      if splits["train"]["segments"] == 0:
        raise ValueError(f"Source {source!r} produced no train segments; its corpus is empty or every "
                         f"document is shorter than min_tokens={config.min_tokens}.")
      entries[source] = {"splits": splits}
      log(f"segments {source}: " + ", ".join(
          f"{split} {v['segments']} segments / {v['tokens']:,} tokens" for split, v in splits.items()))
    cache.write_json_atomic(tmp / "manifest.json", {
        "version": STORE_VERSION,
        "config": dataclasses.asdict(config),
        "vocab": {"path": str(pathlib.Path(vocab_path).resolve()), "sha256": vocab_sha,
                  "size": processor.get_piece_size()},
        "labeller": labeller.name,
        "corpora": {s: cache.sha256_json(m) for s, m in manifests.items()},
        "sources": entries,
    })
  return SegmentStore(out)
