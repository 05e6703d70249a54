"""Multimodal grain pipeline: host-side image preprocessing, batch layout, determinism, exact resume, blind rows."""

import io

import jax
import numpy as np
import pytest
from PIL import Image

from visual_priors.data import vocab
from visual_priors.data.multimodal import chat, pipeline

VISUAL = 4
SIZE = 16
SEQ = 48


@pytest.fixture(scope="module")
def template(small_vocab):
  return chat.ChatTemplate(small_vocab, chat.ChatConfig(num_visual_tokens=VISUAL, system_prompt=""))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """12 items; every third is text-only; image i is a flat colour of value 10 * i, saved as PNG."""
  folder = tmp_path_factory.mktemp("images")
  items = []
  for i in range(12):
    item = {"id": f"item{i}", "conversations": [{"from": "human", "value": f"<image>\nWhat is item {i}?"},
                                                 {"from": "gpt", "value": f"It is number {i}."}]}
    if i % 3:
      path = folder / f"{i}.png"
      Image.fromarray(np.full((20 + i, 30, 3), 10 * i, np.uint8)).save(path)
      item["image"] = str(path)
    else:
      item["conversations"][0]["value"] = f"What is item {i}?"
    items.append(item)
  return items


def config(**overrides):
  return pipeline.MultimodalConfig(**{"batch_size": 4, "seq_len": SEQ, "image_size": SIZE, **overrides})


def answers_of(template, batch):
  """The answer text of each row, read back from the supervised targets."""
  out = []
  for targets, weights in zip(batch["decoder_target_tokens"], batch["decoder_loss_weights"]):
    ids = targets[weights == 1]
    assert ids[-1] == vocab.EOS_ID
    out.append(template.processor.decode(ids[:-1].tolist()))
  return out


def test_batches_have_the_contract_layout_and_preprocessed_images(template, records):
  batch = next(iter(pipeline.instruct_dataset(records, template, config(), 0, 1)))
  assert set(batch) == set(pipeline.INSTRUCT_FEATURES)
  assert batch["images"].shape == (4, SIZE, SIZE, 3) and batch["images"].dtype == np.float32
  assert batch["has_image"].shape == (4,) and batch["has_image"].dtype == np.int32
  for name in pipeline.INSTRUCT_FEATURES[:-2]:
    assert batch[name].shape == (4, SEQ) and batch[name].dtype == np.int32, name
  for row, answer in enumerate(answers_of(template, batch)):
    index = int(answer.removeprefix("It is number ").removesuffix("."))
    has_image = index % 3 != 0
    assert batch["has_image"][row] == has_image
    assert batch["decoder_image_mask"][row].sum() == VISUAL * has_image
    expected = 10 * index / 127.5 - 1.0 if has_image else 0.0  # flat colour, scaled to [-1, 1]
    np.testing.assert_allclose(batch["images"][row], expected, atol=1e-6)


def test_text_only_switch_withholds_every_image(template, records):
  blind = next(iter(pipeline.instruct_dataset(records, template, config(text_only=True), 0, 1)))
  seen = next(iter(pipeline.instruct_dataset(records, template, config(), 0, 1)))
  assert not blind["has_image"].any() and not blind["decoder_image_mask"].any() and not blind["images"].any()
  assert answers_of(template, blind) == answers_of(template, seen)  # same rows, same order
  in_rows = blind["decoder_segment_ids"] == 1
  assert (blind["decoder_target_tokens"][in_rows] != 0).all()  # no image slot (id 0) left in any row
  assert ((seen["decoder_target_tokens"] == 0) & (seen["decoder_segment_ids"] == 1)).sum() == VISUAL * seen[
      "has_image"].sum()


def test_same_seed_same_batches_other_seed_other_order(template, records):
  def first_answers(seed):
    it = iter(pipeline.instruct_dataset(records, template, config(seed=seed), 0, 1))
    return [answers_of(template, next(it)) for _ in range(3)]

  assert first_answers(1) == first_answers(1)
  assert first_answers(1) != first_answers(2)
  epochs = first_answers(1)  # 12 records, 4 per batch: three batches an epoch, then a new epoch order
  assert sorted(sum(epochs, [])) == sorted(f"It is number {i}." for i in range(12))
  it = iter(pipeline.instruct_dataset(records, template, config(seed=1), 0, 1))
  first, second = [sum((answers_of(template, next(it)) for _ in range(3)), []) for _ in range(2)]
  assert sorted(first) == sorted(second) and first != second


def test_iterator_state_resumes_exactly(template, records):
  dataset = pipeline.instruct_dataset(records, template, config(), 0, 1)
  it = iter(dataset)
  for _ in range(4):  # past the first epoch
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  resumed = iter(dataset)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for name in want:
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_hosts_split_an_epoch_into_disjoint_shares(template, records):
  seen = []
  for host in range(2):
    cfg = config(batch_size=4, num_epochs=1, drop_remainder=False)
    for batch in pipeline.instruct_dataset(records, template, cfg, host, 2):
      assert batch["images"].shape[0] <= 2
      seen += answers_of(template, batch)
  assert sorted(seen) == sorted(f"It is number {i}." for i in range(len(records)))


def test_rows_left_without_loss_raise_unless_dropped(template, records):
  long_question = dict(records[1], id="long", conversations=[
      {"from": "human", "value": "<image>\n" + "why " * 60}, {"from": "gpt", "value": "Because."}])
  data = [long_question] + records[1:4]
  with pytest.raises(chat.NoSupervisedTokensError, match="'long'"):
    next(iter(pipeline.instruct_dataset(data, template, config(shuffle=False), 0, 1)))
  # One record in 21 (under MAX_DROPPED_FRACTION) is dropped; the rest train.
  few = [long_question] + [dict(records[1 + i % 3], id=f"r{i}") for i in range(20)]
  cfg = config(shuffle=False, drop_unsupervised=True, batch_size=4, num_epochs=1)
  batches = list(pipeline.instruct_dataset(few, template, cfg, 0, 1))
  assert sum(len(b["decoder_loss_weights"]) for b in batches) == 20
  assert all((b["decoder_loss_weights"].sum(axis=1) > 0).all() for b in batches)


def test_dropping_many_rows_fails_before_training_naming_the_seq_len_needed(template, records):
  """A silently shrunken data set (the answers of most image questions cut off) is refused, with the fix."""
  long_question = dict(records[1], id="long", conversations=[
      {"from": "human", "value": "<image>\n" + "why " * 60}, {"from": "gpt", "value": "Because."}])
  with pytest.raises(ValueError, match=r"1 of 4 instruction records \(1 with an image\) lose every answer token at "
                     r"seq_len=\d+.*Raise seq_len to at least \d+"):
    pipeline.instruct_dataset([long_question] + records[1:4], template, config(drop_unsupervised=True), 0, 1)
  # When no row keeps an answer token, the repeated stream would wait forever: it fails at once too.
  with pytest.raises(ValueError, match="1 of 1 instruction records"):
    pipeline.instruct_dataset([long_question], template, config(drop_unsupervised=True), 0, 1)
  needed = int(str(pytest.raises(ValueError, pipeline.instruct_dataset, [long_question] * 3, template,
                                 config(drop_unsupervised=True), 0, 1).value).rsplit("at least ", 1)[1].split()[0])
  batch = next(iter(pipeline.instruct_dataset([long_question] * 3, template,
                                              config(drop_unsupervised=True, seq_len=needed, batch_size=3), 0, 1)))
  assert (batch["decoder_loss_weights"].sum(axis=1) > 0).all()


def test_caption_batches_hold_eos_terminated_padded_caption_ids(small_vocab, records):
  pairs = [{"image": r["image"], "caption": f"a flat picture number {i}"}
           for i, r in enumerate(records) if "image" in r]
  cfg = config(seq_len=12, shuffle=False)
  batch = next(iter(pipeline.caption_dataset(pairs, small_vocab, cfg, 0, 1)))
  assert set(batch) == set(pipeline.CAPTION_FEATURES)
  assert batch["images"].shape == (4, SIZE, SIZE, 3) and batch["text_tokens"].shape == (4, 12)
  assert batch["text_tokens"].dtype == np.int32
  sp = vocab.load_processor(small_vocab)
  for tokens, pair in zip(batch["text_tokens"], pairs):
    ids = tokens[tokens != 0].tolist()
    assert ids[-1] == vocab.EOS_ID and sp.decode(ids[:-1]) == pair["caption"]
  truncated = next(iter(pipeline.caption_dataset(pairs, small_vocab, config(seq_len=3, shuffle=False), 0, 1)))
  assert (truncated["text_tokens"][:, -1] == vocab.EOS_ID).all()


def test_images_load_from_paths_bytes_and_arrays_alike(tmp_path):
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (40, 24, 3), np.uint8)
  path = tmp_path / "x.png"
  Image.fromarray(pixels).save(path)
  encoded = io.BytesIO()
  Image.fromarray(pixels).save(encoded, format="PNG")
  from_path = pipeline.load_image(str(path), 12)
  np.testing.assert_array_equal(pipeline.load_image(encoded.getvalue(), 12), from_path)
  np.testing.assert_array_equal(pipeline.load_image(pixels, 12), from_path)
  assert from_path.shape == (12, 12, 3) and from_path.min() >= -1 and from_path.max() <= 1
  gray = pipeline.load_image(np.full((8, 8), 255, np.uint8), 4)
  np.testing.assert_array_equal(gray, np.ones((4, 4, 3), np.float32))
  rgba = np.concatenate([np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 1), 255, np.uint8)], axis=-1)
  np.testing.assert_array_equal(pipeline.load_image(rgba, 8), -np.ones((8, 8, 3), np.float32))
  with pytest.raises(FileNotFoundError, match="missing.png"):
    pipeline.load_image(str(tmp_path / "missing.png"), 8)
  with pytest.raises(ValueError, match="uint8"):
    pipeline.load_image(pixels.astype(np.float32), 8)


def test_downscaling_is_antialiased():
  """A one-pixel checkerboard shrunk 8x averages to mid-grey; point sampling would alias to black or white."""
  board = (np.indices((128, 128)).sum(axis=0) % 2 * 255).astype(np.uint8)
  small = pipeline.load_image(board, 16)
  assert np.abs(small).max() < 0.05


def test_global_batch_shards_every_multimodal_feature(template, records):
  batch = next(iter(pipeline.instruct_dataset(records, template, config(batch_size=8), 0, 1)))
  mesh = jax.make_mesh((8,), ("data",))
  out = pipeline.to_global_batch(batch, mesh)
  assert set(out) == set(pipeline.INSTRUCT_FEATURES)
  assert out["images"].shape == (8, SIZE, SIZE, 3) and out["has_image"].shape == (8,)
  assert len(out["decoder_image_mask"].sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(out["decoder_image_mask"]), batch["decoder_image_mask"])
