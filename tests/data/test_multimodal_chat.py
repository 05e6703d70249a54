"""Chat template: assistant-only loss that round-trips to the answers, image slots, truncation that cannot hide."""

import pickle

import numpy as np
import pytest

from visual_priors.data import vocab
from visual_priors.data.multimodal import chat

VISUAL = 6

# LLaVA / Cambrian-format items as users have them: image marker first or last or absent, multi-turn,
# a system turn, text-only, non-ASCII, whitespace that must survive.
LLAVA_ITEMS = [
    {"id": "single", "image": "a.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is the color of the bus?"},
        {"from": "gpt", "value": "The bus is red."}]},
    {"id": "multi", "image": "b.jpg", "conversations": [
        {"from": "human", "value": "How many people are there?\n<image>"},
        {"from": "gpt", "value": "3"},
        {"from": "human", "value": "Where are they standing?"},
        {"from": "gpt", "value": "On a sidewalk, next to a café; one holds an umbrella."},
        {"from": "human", "value": "Answer with one word: is it raining?"},
        {"from": "gpt", "value": "Yes"}]},
    {"id": "unmarked", "image": "c.jpg", "conversations": [
        {"from": "human", "value": "Describe the image briefly."},
        {"from": "gpt", "value": "A dog runs across a field of grass."}]},
    {"id": "system", "image": "d.jpg", "conversations": [
        {"from": "system", "value": "Answer with a single letter."},
        {"from": "human", "value": "<image>\nWhich shape is largest?\nA. circle\nB. square"},
        {"from": "gpt", "value": "B"}]},
    {"id": "text-only", "conversations": [
        {"from": "human", "value": "Write a function that adds two numbers."},
        {"from": "gpt", "value": "def add(a, b):\n    return a + b\n"}]},
    {"id": "unicode", "conversations": [
        {"user": "ignored", "from": "user", "value": "Traduis « bonjour » en 日本語."},
        {"from": "assistant", "value": "  こんにちは (konnichiwa) — 42 × 7 = 294"}]},
]


@pytest.fixture(scope="module")
def template(small_vocab):
  return chat.ChatTemplate(small_vocab, chat.ChatConfig(num_visual_tokens=VISUAL))


def answers(item):
  return [turn["value"] for turn in item["conversations"] if turn["from"] in ("gpt", "assistant")]


def assert_round_trip(template, item, encoded, with_image):
  """Every answer keeps its tokens and decodes back exactly; nothing else carries loss."""
  sp = template.processor
  texts = answers(item)
  assert len(encoded.assistant_spans) == len(texts)
  expected_mask = np.zeros(len(encoded), bool)
  for (start, end), text in zip(encoded.assistant_spans, texts):
    assert encoded.tokens[end - 1] == vocab.EOS_ID
    assert sp.decode(encoded.tokens[start:end - 1].tolist()) == text
    expected_mask[start:end] = True
  np.testing.assert_array_equal(encoded.loss_mask, expected_mask)
  assert encoded.loss_mask.sum() > 0
  assert encoded.image_slots.sum() == (VISUAL if with_image else 0)
  assert not (encoded.image_slots & encoded.loss_mask).any()
  assert (encoded.tokens[encoded.image_slots] == 0).all()
  assert (encoded.tokens[~encoded.image_slots] != 0).all()  # pad id 0 appears only in image slots
  assert (encoded.tokens == vocab.EOS_ID).sum() == len(texts)


@pytest.mark.parametrize("item", LLAVA_ITEMS, ids=[item["id"] for item in LLAVA_ITEMS])
def test_llava_items_round_trip_with_loss_only_on_answers(template, item):
  with_image = "image" in item
  encoded = template.encode(item["conversations"], with_image=with_image, sample_id=item["id"])
  assert_round_trip(template, item, encoded, with_image)
  features = chat.decoder_features(encoded, 512, sample_id=item["id"])
  weights = features["decoder_loss_weights"]
  targets = features["decoder_target_tokens"]
  sp = template.processor
  supervised = targets[weights == 1]
  # Decoding the supervised targets turn by turn (split at EOS) gives back exactly the answers.
  turns = np.split(supervised, np.flatnonzero(supervised == vocab.EOS_ID) + 1)[:-1]
  assert [sp.decode(turn[:-1].tolist()) for turn in turns] == answers(item)


def test_blind_rows_drop_the_image_slots_but_keep_every_answer(template):
  item = LLAVA_ITEMS[1]
  encoded = template.encode(item["conversations"], with_image=False, sample_id=item["id"])
  assert_round_trip(template, item, encoded, with_image=False)
  assert "<image>" not in template.processor.decode(encoded.tokens.tolist())


def test_decoder_features_shift_inputs_and_mark_image_slots_on_the_input_side(template):
  item = LLAVA_ITEMS[0]
  encoded = template.encode(item["conversations"], with_image=True)
  seq_len = len(encoded) + 5
  f = chat.decoder_features(encoded, seq_len)
  assert all(v.shape == (seq_len,) and v.dtype == np.int32 for v in f.values())
  n = len(encoded)
  np.testing.assert_array_equal(f["decoder_target_tokens"][:n], encoded.tokens)
  np.testing.assert_array_equal(f["decoder_input_tokens"][1:n + 1], encoded.tokens)
  assert f["decoder_input_tokens"][0] == 0
  mask = f["decoder_image_mask"].astype(bool)
  assert mask.sum() == VISUAL
  slots = np.flatnonzero(mask)
  np.testing.assert_array_equal(slots, np.arange(slots[0], slots[0] + VISUAL))  # one contiguous run
  assert (f["decoder_input_tokens"][mask] == 0).all()
  assert (f["decoder_loss_weights"][mask] == 0).all()
  np.testing.assert_array_equal(f["decoder_segment_ids"], (np.arange(seq_len) < n).astype(np.int32))
  np.testing.assert_array_equal(f["decoder_positions"][:n], np.arange(n))
  assert not f["decoder_positions"][n:].any() and not f["decoder_loss_weights"][n:].any()


def test_truncation_that_removes_every_answer_raises_naming_the_sample(template):
  item = LLAVA_ITEMS[0]
  encoded = template.encode(item["conversations"], with_image=True, sample_id="single")
  first_supervised = int(np.flatnonzero(encoded.loss_mask)[0])
  with pytest.raises(chat.NoSupervisedTokensError, match=r"'single'.*seq_len=.*raise seq_len"):
    chat.decoder_features(encoded, first_supervised, sample_id="single")
  kept = chat.decoder_features(encoded, first_supervised + 1)
  assert kept["decoder_loss_weights"].sum() == 1


def test_a_conversation_without_answers_cannot_be_encoded_for_training(template):
  question_only = [{"from": "human", "value": "<image>\nWhat is this?"}]
  with pytest.raises(ValueError, match="must end with an assistant turn"):
    template.encode(question_only, with_image=True, sample_id="q")
  hollow = chat.EncodedChat(np.array([5, 6], np.int32), np.zeros(2, bool), np.zeros(2, bool), ())
  with pytest.raises(chat.NoSupervisedTokensError, match="no assistant tokens"):
    chat.decoder_features(hollow, 8)


@pytest.mark.parametrize("conversations, message", [
    ([{"from": "gpt", "value": "hi"}, {"from": "human", "value": "q"}], "where a user turn was expected"),
    ([{"from": "human", "value": "q"}, {"from": "human", "value": "q"}], "where a assistant turn"),
    ([{"from": "robot", "value": "q"}], "is from 'robot'"),
    ([{"from": "human", "value": "<image> and <image>"}, {"from": "gpt", "value": "a"}], "one image"),
    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "see <image>"}], "assistant turn"),
    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}, {"from": "human", "value": "<image>"},
      {"from": "gpt", "value": "b"}], "first user turn"),
    ([{"value": "q"}], "expected"),
])
def test_malformed_conversations_fail_clearly(template, conversations, message):
  with pytest.raises(ValueError, match=message):
    template.encode(conversations, with_image=True, sample_id="bad")


def test_generation_prompt_is_a_prefix_of_the_training_sequence(template):
  item = LLAVA_ITEMS[1]
  convs = item["conversations"]
  full = template.encode(convs, with_image=True)
  for turns in (1, 3, 5):  # prompts ending at each user turn
    prompt = template.encode_prompt(convs[:turns], with_image=True)
    np.testing.assert_array_equal(prompt.tokens, full.tokens[:len(prompt)])
    np.testing.assert_array_equal(prompt.loss_mask, full.loss_mask[:len(prompt)])
    text = template.processor.decode(prompt.tokens[~prompt.image_slots].tolist())
    question = convs[turns - 1]["value"].replace("<image>", "").strip()
    assert text.endswith(" ASSISTANT:") and "  " not in text[-20:] and question in text
    tokens, mask = chat.prompt_inputs(prompt)
    assert tokens[0] == 0 and tokens.size == len(prompt) + 1 and mask.sum() == VISUAL
    np.testing.assert_array_equal(mask[1:], prompt.image_slots)
  with pytest.raises(ValueError, match="must end with a user turn"):
    template.encode_prompt(convs[:2], with_image=True)


def test_system_prompt_is_configurable_and_rendered(small_vocab):
  convs = LLAVA_ITEMS[0]["conversations"]
  plain = chat.ChatTemplate(small_vocab, chat.ChatConfig(num_visual_tokens=VISUAL, system_prompt=""))
  custom = chat.ChatTemplate(small_vocab, chat.ChatConfig(num_visual_tokens=VISUAL, system_prompt="Be brief."))
  assert plain.render(convs) == ("USER: <image>\nWhat is the color of the bus? ASSISTANT: The bus is red.</s>")
  assert custom.render(convs).startswith("Be brief. USER: <image>")
  sp = plain.processor
  no_system = plain.encode(convs, with_image=False)
  with_system = custom.encode(convs, with_image=False)
  assert sp.decode(no_system.tokens.tolist()).startswith("USER:")
  assert sp.decode(with_system.tokens.tolist()).startswith("Be brief. USER:")
  assert len(with_system) > len(no_system)


def test_template_pickles_without_its_processor(template):
  template.processor  # loaded
  clone = pickle.loads(pickle.dumps(template))
  convs = LLAVA_ITEMS[0]["conversations"]
  np.testing.assert_array_equal(clone.encode(convs, with_image=True).tokens,
                                template.encode(convs, with_image=True).tokens)


@pytest.fixture(scope="module")
def generated_instruct(tmp_path_factory):
  from visual_priors.data.multimodal import generate, loaders

  root = tmp_path_factory.mktemp("generated")
  generate.generate(root, seed=3, n_captions=0, n_instruct=48, n_eval_per_benchmark=0, n_mle_per_level=0,
                    objects="shapes", log=lambda _: None)
  return loaders.load_llava(root / "instruct.json")


def test_generated_instruct_items_all_keep_supervised_tokens(template, generated_instruct):
  assert len(generated_instruct) == 48
  assert any(r["image"] is None for r in generated_instruct) and any(r["image"] for r in generated_instruct)
  for record in generated_instruct:
    with_image = record["image"] is not None
    encoded = template.encode(record["conversations"], with_image=with_image, sample_id=record["id"])
    assert_round_trip(template, record, encoded, with_image)
    features = chat.decoder_features(encoded, 512, sample_id=record["id"])
    assert features["decoder_loss_weights"].sum() == encoded.loss_mask.sum()  # nothing truncated at 512
