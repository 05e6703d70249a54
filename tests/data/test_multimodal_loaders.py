"""Loaders: LLaVA/Cambrian JSON + image folder, caption JSONL, TFDS image-text datasets on disk, MLE-Bench rows."""

import io
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from visual_priors.data.multimodal import loaders, pipeline


def png_bytes(value: int, shape=(6, 5, 3)) -> bytes:
  out = io.BytesIO()
  Image.fromarray(np.full(shape, value, np.uint8)).save(out, format="PNG")
  return out.getvalue()


@pytest.fixture
def image_folder(tmp_path):
  folder = tmp_path / "images"
  (folder / "coco").mkdir(parents=True)
  for name, value in (("coco/a.png", 10), ("b.png", 200)):
    (folder / name).write_bytes(png_bytes(value))
  return folder


LLAVA = [
    {"id": "1", "image": "coco/a.png", "kind": "perception", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Dark."}]},
    {"id": "2", "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]},
    {"image": "b.png", "conversations": [{"from": "human", "value": "Describe."}, {"from": "gpt", "value": "Bright."}]},
]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_llava_items_resolve_images_in_the_folder_and_keep_their_fields(tmp_path, image_folder, suffix):
  path = tmp_path / f"llava{suffix}"
  path.write_text(json.dumps(LLAVA) if suffix == ".json" else "\n".join(json.dumps(i) for i in LLAVA) + "\n")
  records = loaders.load_llava(path, image_folder)
  assert [r["id"] for r in records] == ["1", "2", "llava-2"]
  assert records[0]["image"] == str((image_folder / "coco/a.png").resolve())
  assert records[1]["image"] is None
  assert records[0]["kind"] == "perception" and records[0]["conversations"] == LLAVA[0]["conversations"]
  np.testing.assert_allclose(pipeline.load_image(records[2]["image"], 2), 200 / 127.5 - 1, atol=1e-6)


def test_llava_missing_image_fails_at_load_time_naming_the_file(tmp_path, image_folder):
  items = LLAVA + [{"id": "gone", "image": "coco/missing.jpg", "conversations": LLAVA[0]["conversations"]}]
  path = tmp_path / "data.json"
  path.write_text(json.dumps(items))
  with pytest.raises(FileNotFoundError, match=r"'gone'.*coco/missing\.jpg"):
    loaders.load_llava(path, image_folder)


@pytest.mark.parametrize("item, message", [
    ({"id": "x", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]},
     "no 'image' field"),
    ({"id": "x", "image": ["b.png", "b.png"], "conversations": LLAVA[0]["conversations"]}, "several images"),
    ({"id": "x", "image": "b.png"}, "no 'conversations'"),
])
def test_llava_malformed_items_fail_clearly(tmp_path, image_folder, item, message):
  path = tmp_path / "bad.json"
  path.write_text(json.dumps([item]))
  with pytest.raises(ValueError, match=message):
    loaders.load_llava(path, image_folder)


def test_llava_file_must_hold_a_list(tmp_path):
  path = tmp_path / "dict.json"
  path.write_text(json.dumps({"conversations": []}))
  with pytest.raises(ValueError, match="expected a list"):
    loaders.load_llava(path)
  with pytest.raises(FileNotFoundError, match="nowhere.json"):
    loaders.load_llava(tmp_path / "nowhere.json")


def test_caption_rows_resolve_relative_to_their_file(tmp_path, image_folder):
  path = image_folder / "captions.jsonl"
  path.write_text(json.dumps({"image": "b.png", "caption": "a bright square"}) + "\n")
  (record,) = loaders.load_captions(path)
  assert record == {"id": "captions-0", "caption": "a bright square", "image": str((image_folder / "b.png").resolve())}


class TinyPairs(tfds.core.GeneratorBasedBuilder):
  """Five flat-colour images with nested captions, prepared offline."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "picture": tfds.features.Image(shape=(None, None, 3)),
        "meta": {"text": tfds.features.Text()},
        "number": np.int32}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(5)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {"picture": np.full((8, 6, 3), 20 * i, np.uint8), "meta": {"text": f"caption {i}"}, "number": i}


@pytest.mark.parametrize("file_format", ["array_record", "tfrecord"])
def test_tfds_dataset_on_disk_gives_image_caption_records(tmp_path, file_format):
  TinyPairs(data_dir=str(tmp_path), file_format=file_format).download_and_prepare()
  records = loaders.load_tfds_image_text("tiny_pairs", tmp_path, image_key="picture", caption_key="meta/text")
  assert len(records) == 5
  seen = set()
  for index in range(len(records)):
    record = records[index]
    number = int(record["caption"].removeprefix("caption "))
    seen.add(number)
    np.testing.assert_allclose(pipeline.load_image(record["image"], 3), 20 * number / 127.5 - 1, atol=1e-6)
    assert record["id"] == f"tiny_pairs/train/{index}"
  assert seen == set(range(5))
  with pytest.raises(KeyError, match="'caption'.*meta"):
    loaders.load_tfds_image_text("tiny_pairs", tmp_path, image_key="picture")[0]
  with pytest.raises(ValueError, match="no split 'validation'"):
    loaders.load_tfds_image_text("tiny_pairs", tmp_path, split="validation")


def test_tfds_dataset_not_prepared_says_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError, match="tfds build tiny_pairs"):
    loaders.load_tfds_image_text("tiny_pairs", tmp_path / "empty")


MLE_ROWS = [
    {"image": "coco/a.png", "question": "Which of the following objects appears in the image?",
     "choices": ["cat", "dog", "car", "tree"], "answer": "dog", "sub_task": "existence_0-30"},
    {"image": "b.png", "question": "Which of the following objects appears in the image?",
     "choices": ["lamp", "boat", "cup", "bird"], "answer": "cup", "sub_task": "existence_60-100"},
]


def test_mle_bench_jsonl_rows(tmp_path, image_folder):
  path = tmp_path / "mle_bench.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in MLE_ROWS))
  records = loaders.load_mle_bench(path, image_folder)
  assert [r["id"] for r in records] == ["mle_bench-0", "mle_bench-1"]
  assert records[1]["image"] == str((image_folder / "b.png").resolve())
  assert {k: records[0][k] for k in ("question", "choices", "answer", "sub_task")} == {
      k: MLE_ROWS[0][k] for k in ("question", "choices", "answer", "sub_task")}


def test_mle_bench_parquet_rows_with_image_bytes_and_structs(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  rows = [dict(MLE_ROWS[0], image=png_bytes(30)),
          dict(MLE_ROWS[1], image={"bytes": png_bytes(90), "path": "b.png"})]
  path = tmp_path / "test-00000.parquet"
  pq.write_table(pa.Table.from_pylist(rows[:1]), path)
  (first,) = loaders.load_mle_bench(path)
  np.testing.assert_allclose(pipeline.load_image(first["image"], 2), 30 / 127.5 - 1, atol=1e-6)
  pq.write_table(pa.Table.from_pylist(rows[1:]), path)
  (second,) = loaders.load_mle_bench(path)
  np.testing.assert_allclose(pipeline.load_image(second["image"], 2), 90 / 127.5 - 1, atol=1e-6)
  assert second["choices"] == MLE_ROWS[1]["choices"] and second["sub_task"] == "existence_60-100"


@pytest.mark.parametrize("row, message", [
    ({k: v for k, v in MLE_ROWS[0].items() if k != "sub_task"}, "lacks \\['sub_task'\\]"),
    (dict(MLE_ROWS[0], answer="zebra"), "not one of its choices"),
    (dict(MLE_ROWS[0], image="nope.png"), "nope.png"),
])
def test_mle_bench_bad_rows_fail_clearly(tmp_path, image_folder, row, message):
  path = tmp_path / "rows.jsonl"
  path.write_text(json.dumps(row) + "\n")
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    loaders.load_mle_bench(path, image_folder)
  with pytest.raises(ValueError, match=".jsonl or .parquet"):
    loaders.load_mle_bench(tmp_path / "rows.csv")


def test_damaged_data_files_name_the_line(tmp_path):
  rows = tmp_path / "captions.jsonl"
  rows.write_text('{"image": "a.png", "caption": "x"}\n{"image": "b.png", "cap\n')
  with pytest.raises(ValueError, match=r"captions.jsonl line 2: invalid JSON \(Unterminated string at column 20\); "
                                       r"the file is damaged or truncated: fix or regenerate it"):
    loaders.read_items(rows)
  items = tmp_path / "instruct.json"
  items.write_text('[\n  {"id": "1"},\n  {"id": \n')
  with pytest.raises(ValueError, match=r"instruct.json line 4 column 1: invalid JSON \(Expecting value\)"):
    loaders.read_items(items)
