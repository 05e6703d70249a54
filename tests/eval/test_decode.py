"""Greedy decoding with a KV cache equals re-running the full forward; chat replies in order, blind without images."""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from visual_priors.data.multimodal import chat
from visual_priors.eval import decode
from visual_priors.models import scales, sharding
from visual_priors.models.decoder import Decoder
from visual_priors.models.mllm import MLLM, MLLMConfig
from visual_priors.models.vision import get_encoder

VOCAB = 300  # prompt ids are drawn below this (the tiny template has more pieces)
VISUAL = 4  # visual tokens per image
IMAGE = 16  # vit-nano's image size
NEW = 8
REFERENCE_WIDTH = 32


_TEXTS = ["What colour is the square?", "How many circles are there?", "Is there a red triangle?",
          "Describe the picture.", "The square is blue.", "There are three circles.", "Yes, on the left.",
          "A chat between a user and an assistant.", "USER: ASSISTANT:"]


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory) -> pathlib.Path:
  """A real SentencePiece model over a tiny vocabulary (byte fallback, so any text encodes)."""
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  prefix = tmp_path_factory.mktemp("spm") / "tiny"
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(_TEXTS * 4), model_prefix=str(prefix), vocab_size=400, model_type="unigram",
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False, minloglevel=2,
      num_threads=1)
  return pathlib.Path(f"{prefix}.model")


@pytest.fixture(scope="module")
def template(vocab_path) -> chat.ChatTemplate:
  """No system prompt: with this vocabulary the default one would be ~150 byte tokens, slowing every decode."""
  return chat.ChatTemplate(vocab_path, chat.ChatConfig(num_visual_tokens=VISUAL, system_prompt=""))


@pytest.fixture(scope="module")
def mllm(template) -> MLLM:
  assert template.processor.get_piece_size() > VOCAB
  config = MLLMConfig(vision=get_encoder("vit-nano", pool_type="none", num_classes=0),
                      llm=scales.get_scale("nano", vocab_size=template.processor.get_piece_size(),
                                           attention_impl="xla"),
                      num_visual_tokens=VISUAL)
  # An rbg key: its random-init programs compile in half the time of threefry's on a CPU.
  return MLLM(config, rngs=nnx.Rngs(jax.random.key(6, impl="rbg")))


@pytest.fixture(scope="module")
def decoder(mllm) -> Decoder:
  return mllm.llm


@nnx.jit
def _forward(model, images, tokens, mask):
  return model(tokens) if images is None else model(images, tokens, image_mask_bt=mask)


def _uncached(model, prompt, steps, eos_id, image=None, mask=None):
  """Re-runs the full forward on prompt + generated so far and takes the last argmax, until EOS."""
  width = REFERENCE_WIDTH  # right-padded to one width, one compile (causal: padding never reaches earlier logits)
  assert prompt.size + steps <= width
  sequence = np.zeros(width, np.int32)
  sequence[:prompt.size] = prompt
  full_mask = np.zeros(width, np.int32)
  if mask is not None:
    full_mask[:prompt.size] = mask
  generated = []
  for n in range(prompt.size, prompt.size + steps):
    images = None if image is None else image[None]
    logits = _forward(model, images, sequence[None], full_mask[None])
    token = int(np.argmax(np.asarray(logits)[0, n - 1]))
    if token == eos_id:
      break
    generated.append(token)
    sequence[n] = token
  return generated


def _eos_mid_sequence(references: list[list[int]]) -> int:
  """A token that first appears mid-way in some row's EOS-free reference: using it as EOS stops that row early."""
  for row in references:
    for i in range(2, len(row) - 1):
      if row[i] not in row[:i]:
        return row[i]
  raise AssertionError(f"No row introduces a new token mid-way: {references}")


def _expected(references: list[list[int]], eos_id: int) -> list[list[int]]:
  return [row[:row.index(eos_id)] if eos_id in row else row for row in references]


def _prompts(seed: int, lengths) -> list[np.ndarray]:
  rng = np.random.default_rng(seed)
  return [np.concatenate([[0], rng.integers(2, VOCAB, n - 1)]).astype(np.int32) for n in lengths]


def test_decoder_cached_greedy_equals_uncached_with_an_eos_stop(decoder):
  prompts = _prompts(0, (4, 11, 2, 7, 17))  # buckets 16 and 32; the last batch of 2 is padded to 4
  references = [_uncached(decoder, p, NEW, eos_id=-1) for p in prompts]
  eos_id = _eos_mid_sequence(references)
  expected = _expected(references, eos_id)
  assert any(len(row) < NEW for row in expected) and any(len(row) == NEW for row in expected)
  got = decode.greedy_decode(decoder, prompts, max_new_tokens=NEW, eos_id=eos_id, batch_size=4)
  assert [row.tolist() for row in got] == expected
  assert all(row.dtype == np.int32 for row in got)


def test_mllm_cached_greedy_equals_uncached_with_images_and_a_text_only_row(mllm):
  rng = np.random.default_rng(1)
  prompts, masks = [], []
  for before, after in ((2, 3), (5, 9), (1, 1), (0, 0)):  # the last row is text-only
    slots = VISUAL if before else 0
    tokens = np.concatenate([[0], rng.integers(2, VOCAB, before), np.zeros(slots), rng.integers(2, VOCAB, after + 1)])
    prompts.append(tokens.astype(np.int32))
    masks.append(np.concatenate([np.zeros(1 + before), np.ones(slots), np.zeros(after + 1)]).astype(np.int32))
  images = rng.uniform(-1, 1, (len(prompts), IMAGE, IMAGE, 3)).astype(np.float32)
  references = [_uncached(mllm, p, NEW, -1, image, mask) for p, image, mask in zip(prompts, images, masks)]
  eos_id = _eos_mid_sequence(references)
  got = decode.greedy_decode(mllm, prompts, max_new_tokens=NEW, eos_id=eos_id, images=images, image_masks=masks,
                             batch_size=4)
  assert [row.tolist() for row in got] == _expected(references, eos_id)
  # The image matters: another image changes some reply.
  other = decode.greedy_decode(mllm, prompts, max_new_tokens=NEW, eos_id=eos_id, images=-images, image_masks=masks,
                               batch_size=4)
  assert [row.tolist() for row in other] != [row.tolist() for row in got]
  assert other[3].tolist() == got[3].tolist()  # ... but not the text-only row's


def test_one_new_token_and_prompt_lengths_in_one_bucket_share_one_compile(decoder):
  assert [decode.prompt_bucket(n) for n in (1, 16, 17, 600, 1024)] == [16, 16, 32, 1024, 1024]
  rules = sharding.DEFAULT_LOGICAL_AXIS_RULES
  generate = decode._compiled_generate(nnx.split(decoder)[0], 1, -1, None, rules)  # pylint: disable=protected-access
  for lengths in ((5, 3), (12, 16), (2, 9)):  # all in bucket 16
    prompts = _prompts(3, lengths)
    got = decode.greedy_decode(decoder, prompts, max_new_tokens=1, eos_id=-1, batch_size=2)
    assert [row.tolist() for row in got] == [_uncached(decoder, p, 1, -1) for p in prompts]
  assert generate._cache_size() == 1  # pylint: disable=protected-access


def test_decoding_under_a_mesh_matches_uncached(decoder):
  prompts = _prompts(4, (6, 13, 3, 9))
  expected = [_uncached(decoder, p, 5, -1) for p in prompts]
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  graphdef, state = nnx.split(decoder)
  placed = nnx.merge(graphdef, jax.device_put(state, replicated))
  with sharding.activation_sharding(mesh):
    got = decode.greedy_decode(placed, prompts, max_new_tokens=5, eos_id=-1, batch_size=4)
  assert [row.tolist() for row in got] == expected
  with sharding.activation_sharding(mesh), pytest.raises(ValueError, match="batch_size=6 is not a multiple of the 4"):
    decode.greedy_decode(placed, prompts, max_new_tokens=5, batch_size=6)


def test_bad_inputs_fail_before_compute(decoder, mllm):
  prompt = np.asarray([0, 5, 6], np.int32)
  image = np.zeros((1, IMAGE, IMAGE, 3), np.float32)
  cases = [
      (decoder, [np.zeros(0, np.int32)], {}, "non-empty 1-D integer"),
      (decoder, [np.asarray([0, decoder.config.vocab_size], np.int32)], {}, "outside"),
      (decoder, [prompt], {"max_new_tokens": 0}, "max_new_tokens=0"),
      (decoder, [prompt], {"images": image, "image_masks": [np.zeros(3)]}, "Only an MLLM"),
      (mllm, [prompt], {"images": image}, "together"),
      (mllm, [prompt], {"images": image, "image_masks": [np.ones(2)]}, "has shape"),
      (mllm, [prompt], {"images": image, "image_masks": [np.asarray([0, 1, 1])]}, "2 image slots"),
      (mllm, [prompt], {"images": image[:, :8], "image_masks": [np.zeros(3)]}, "one per prompt"),
  ]
  for model, prompts, kwargs, message in cases:
    with pytest.raises(ValueError, match=message):
      decode.greedy_decode(model, prompts, **{"max_new_tokens": 2, **kwargs})


# --- generate_replies on the tiny SentencePiece template ---

def _requests() -> list[dict]:
  rng = np.random.default_rng(8)
  pictures = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(3)]
  return [{"prompt": _TEXTS[0], "image": pictures[0]}, {"prompt": _TEXTS[1], "image": None},
          {"prompt": _TEXTS[2], "image": pictures[1]}, {"prompt": _TEXTS[3], "image": pictures[2]}]


def test_generate_replies_are_the_decoded_greedy_tokens_in_request_order(mllm, template, monkeypatch):
  """A fake decoder answers each prompt with its own last word: the replies must come back in order."""
  calls = []

  def fake_greedy(model, prompts, *, max_new_tokens, images=None, image_masks=None, batch_size=8, eos_id=1):
    calls.append({"images": images, "masks": image_masks, "batch_size": batch_size, "new": max_new_tokens})
    words = [template.processor.decode([int(t) for t in p[1:] if t]).split()[-2] for p in prompts]
    return [np.asarray(template.processor.encode(word), np.int32) for word in words]

  monkeypatch.setattr(decode, "greedy_decode", fake_greedy)
  requests = _requests()
  replies = decode.generate_replies(mllm, template, requests, image_size=IMAGE, max_new_tokens=5, batch_size=3)
  assert replies == [r["prompt"].split()[-1] for r in requests]
  # Images are loaded one batch at a time: batches of 3 and 1.
  assert [call["images"].shape for call in calls] == [(3, IMAGE, IMAGE, 3), (1, IMAGE, IMAGE, 3)]
  assert all(call["batch_size"] == 3 and call["new"] == 5 for call in calls)
  assert [int(mask.sum()) for call in calls for mask in call["masks"]] == [VISUAL, 0, VISUAL, VISUAL]
  assert not calls[0]["images"][1].any()  # the text-only request's image is blank

  calls.clear()
  decode.generate_replies(mllm, template, requests, image_size=IMAGE, blind=True)
  assert len(calls) == 1 and calls[0]["images"] is None and calls[0]["masks"] is None


def test_generate_replies_real_decode_batches_and_blind_uses_no_image(mllm, template):
  requests = _requests()
  replies = decode.generate_replies(mllm, template, requests, image_size=IMAGE, max_new_tokens=6, batch_size=3)
  assert len(replies) == len(requests) and all(isinstance(reply, str) for reply in replies)
  one_by_one = [decode.generate_replies(mllm, template, [r], image_size=IMAGE, max_new_tokens=6,
                                        batch_size=3)[0] for r in requests]
  assert replies == one_by_one
  blind = decode.generate_replies(mllm, template, requests, image_size=IMAGE, max_new_tokens=6, blind=True,
                                  batch_size=3)
  no_images = [{**r, "image": None} for r in requests]
  assert blind == decode.generate_replies(mllm, template, no_images, image_size=IMAGE, max_new_tokens=6,
                                          batch_size=3)


def test_generate_replies_checks_the_template_and_image_size(mllm, template, vocab_path):
  with pytest.raises(ValueError, match="image_size=32"):
    decode.generate_replies(mllm, template, _requests(), image_size=32)
  with pytest.raises(ValueError, match="contains <image>"):
    decode.generate_replies(mllm, template, [{"prompt": "<image>\nHi", "image": None}], image_size=IMAGE)
  other = chat.ChatTemplate(vocab_path, chat.ChatConfig(num_visual_tokens=9))
  with pytest.raises(ValueError, match="makes 9 image slots"):
    decode.generate_replies(mllm, other, _requests(), image_size=IMAGE)
