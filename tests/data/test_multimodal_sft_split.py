"""SFT-data ablation: rule and endpoint labellers (a local HTTP server), removal variants, the runner's use of them."""

import base64
import json

import pytest

from chat_server import ChatServer, completion
from visual_priors import experiment, names
from visual_priors.data.labelling import llm
from visual_priors.data.multimodal import loaders, sft_split
from visual_priors.experiment import sft
from visual_priors.experiment.stage import StageContext

# Items with the kind a careful reader gives them, and the messy way the fake model replies.
ITEMS = [
    ({"id": "colour", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is the car?"}, {"from": "gpt", "value": "Red."}]},
     "perception", '```json\n{"kind": "perception"}\n```'),
    ({"id": "ocr", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nRead the text on the sign."}, {"from": "gpt", "value": "STOP"}]},
     "perception", "Perception."),
    ({"id": "math", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nThe chart shows sales of 12 and 30. Calculate the total."},
        {"from": "gpt", "value": "12 + 30 = 42"}]},
     "reasoning", 'Sure: {"kind": "reasoning"}'),
    ({"id": "why", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nWhy is the ground wet?"}, {"from": "gpt", "value": "It rained."}]},
     "reasoning", '{"kind": "Reasoning"}'),
    ({"id": "code", "conversations": [
        {"from": "human", "value": "Write def add(a, b) in Python."},
        {"from": "gpt", "value": "```python\ndef add(a, b):\n  return a + b\n```"}]},
     "reasoning", "reasoning"),
    ({"id": "chat", "conversations": [
        {"from": "human", "value": "Write a haiku about spring."}, {"from": "gpt", "value": "Soft rain on blossoms."}]},
     "other", '{"kind": "other"}'),
    ({"id": "caption", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nGive this photo a title."}, {"from": "gpt", "value": "Morning"}]},
     "other", "other"),
]


def test_rule_labeller_uses_the_kind_field_then_keywords():
  labeller = sft_split.make_sft_labeller({"kind": "rule"})
  records = [dict(item, image="x" if "image" in item else None) for item, _, _ in ITEMS]
  assert labeller.kinds(records) == [kind for _, kind, _ in ITEMS]
  overridden = [dict(records[0], kind="reasoning"), dict(records[2], kind="perception")]
  assert labeller.kinds(overridden) == ["reasoning", "perception"]
  with pytest.raises(names.UnknownNameError, match="Did you mean 'perception'"):
    labeller.kinds([dict(records[0], kind="perceptoin")])


def test_rule_labeller_reads_the_generated_kinds(tmp_path):
  from visual_priors.data.multimodal import generate

  generate.generate(tmp_path, seed=1, n_captions=0, n_instruct=30, n_eval_per_benchmark=0, n_mle_per_level=0,
                    objects="shapes", log=lambda _: None)
  items = loaders.read_items(tmp_path / "instruct.json")
  records = loaders.load_llava(tmp_path / "instruct.json")
  kinds = sft_split.RuleSftLabeller().kinds(records)
  assert kinds == [item["kind"] for item in items]
  assert set(kinds) == set(sft_split.KINDS)


def test_removal_variants_drop_seeded_nested_shares_of_one_kind():
  kinds = ["perception"] * 9 + ["reasoning"] * 6 + ["other"] * 5
  variants = sft_split.removal_variants(kinds, seed=7)
  assert set(variants) == {"full", "perception-50", "perception-100", "reasoning-50", "reasoning-100"}
  assert variants["full"].tolist() == list(range(20))

  def count(name, kind):
    return sum(kinds[i] == kind for i in variants[name])

  # Half of 9 is 4.5; the removed share rounds up to 5, so 4 stay.
  assert (count("perception-50", "perception"), count("perception-100", "perception")) == (4, 0)
  assert (count("reasoning-50", "reasoning"), count("reasoning-100", "reasoning")) == (3, 0)
  for name in ("perception-50", "perception-100"):
    assert count(name, "reasoning") == 6 and count(name, "other") == 5
  assert set(variants["perception-100"]) <= set(variants["perception-50"])
  again = sft_split.removal_variants(kinds, seed=7)
  assert all((again[n] == variants[n]).all() for n in variants)
  other_seed = sft_split.removal_variants(kinds, seed=8)
  assert any((other_seed[n] != variants[n]).any() for n in ("perception-50", "reasoning-50"))
  with pytest.raises(ValueError, match="Unknown SFT kinds"):
    sft_split.removal_variants(["perception", "vision"])


class FakeKindServer(ChatServer):
  """The SFT-data labelling endpoint answering from `ITEMS`, after any statuses in `status_script`."""

  def __init__(self):
    super().__init__(self.scripted)
    self.status_script: list[int] = []  # statuses to answer before replying normally

  def scripted(self, path, body, number):
    with self.lock:
      status = self.status_script.pop(0) if self.status_script else 200
    return status, {}, self.answer(body) if status == 200 else {"error": "scripted"}

  @staticmethod
  def answer(body: dict) -> dict:
    if body["messages"][-1]["role"] == "user" and body["messages"][-1]["content"] == sft_split.REPAIR_PROMPT:
      text = '{"kind": "other"}'
    else:
      sample = body["messages"][1]["content"][0]["text"]
      text = next(reply for item, _, reply in ITEMS if item["conversations"][-1]["value"] in sample)
      if "haiku" in sample:
        text = "I cannot decide."  # unparseable: the labeller must ask again
    return completion(text)


@pytest.fixture
def server():
  fake = FakeKindServer()
  yield fake
  fake.close()


def endpoint_labeller(server, tmp_path, **fields):
  return sft_split.make_sft_labeller({"kind": "endpoint", "base_url": server.url, "model": "fake-vlm",
                                      "cache_path": str(tmp_path / "cache.sqlite"), "backoff_base_s": 0.0,
                                      "max_retries": 2, "concurrency": 3, **fields})


def test_endpoint_labeller_parses_messy_replies_repairs_and_caches(server, tmp_path):
  records = [dict(item, image=None) for item, _, _ in ITEMS]
  labeller = endpoint_labeller(server, tmp_path)
  assert labeller.kinds(records) == [kind for _, kind, _ in ITEMS]
  assert len(server.requests) == len(ITEMS) + 1  # the haiku reply was unparseable and asked again
  assert all(body["model"] == "fake-vlm" and body["temperature"] == 0 for body in server.requests)
  assert endpoint_labeller(server, tmp_path).kinds(records[::-1]) == [kind for _, kind, _ in ITEMS][::-1]
  assert len(server.requests) == len(ITEMS) + 1  # every answer came from the cache


def test_endpoint_labeller_sends_images_to_a_vlm(server, tmp_path):
  image = tmp_path / "a.png"
  image.write_bytes(b"\x89PNG fake bytes")
  record = dict(ITEMS[0][0], image=str(image))
  assert endpoint_labeller(server, tmp_path, send_images=True).kinds([record]) == ["perception"]
  (content,) = [m["content"] for m in server.requests[0]["messages"] if m["role"] == "user"]
  assert content[0]["text"].startswith("Sample:\n<<<\n[image]\nUSER: <image>")
  assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()


def test_endpoint_labeller_retries_unavailability_and_stops_on_rejection(server, tmp_path):
  records = [dict(item, image=None) for item, _, _ in ITEMS[:2]]
  server.status_script = [503, 429]
  assert endpoint_labeller(server, tmp_path).kinds(records) == ["perception", "perception"]
  server.status_script = [401] * 10
  with pytest.raises(llm.EndpointRejectedError, match="HTTP 401"):
    endpoint_labeller(server, tmp_path, concurrency=1).kinds([dict(item, image=None) for item, _, _ in ITEMS[2:]])
  assert len(server.requests) == 4 + 1  # one refused request; the queued items were never sent
  server.status_script = [503] * 10
  with pytest.raises(llm.LabellingFailedError, match="1 of 1 items got no kind"):
    endpoint_labeller(server, tmp_path, concurrency=1).kinds([dict(ITEMS[3][0], image=None)])


def test_an_experiment_removes_the_items_its_endpoint_labeller_names(server, tmp_path):
  instruct = tmp_path / "instruct.json"
  instruct.write_text(json.dumps([item for item, _, _ in ITEMS if "image" not in item]))
  rule = experiment.apply_overrides(experiment.base_config(), ["adapt.sft_data.remove=reasoning",
                                                               "adapt.sft_data.fraction=1.0"])
  endpoint = experiment.apply_overrides(rule, ["adapt.sft_data.labeller.kind=endpoint",
                                               f"adapt.sft_data.labeller.url={server.url!r}",
                                               "adapt.sft_data.labeller.model=fake-vlm"])
  keys = [experiment.stage_identities(c)["sft"].key for c in (rule, endpoint)]
  assert keys[0] != keys[1]  # the labeller's model enters the key of a removal
  ctx = StageContext(config=endpoint, stage="sft", key="k", out_dir=tmp_path, log=lambda _: None,
                                devices=None, outputs={"mmdata": {"instruct": str(instruct), "images": None}})
  kept, _, info = sft.instruction_records(ctx)
  assert [record["id"] for record in kept] == ["chat"]  # the code item: reasoning to the model, removed
  assert info["kinds"] == {"perception": 0, "reasoning": 0, "other": 1}
  assert len(server.requests) == 3  # one per item, and the haiku item asked again
  with pytest.raises(ValueError, match="needs adapt.sft_data.labeller.url"):
    experiment.validate(experiment.apply_overrides(rule, ["adapt.sft_data.labeller.kind=endpoint"]))


def test_sft_labeller_configs_fail_clearly(server, tmp_path):
  with pytest.raises(ValueError, match="Did you mean 'send_images'"):
    endpoint_labeller(server, tmp_path, send_image=True)
  with pytest.raises(ValueError, match="needs model"):
    sft_split.make_sft_labeller({"kind": "endpoint", "base_url": server.url})
  with pytest.raises(names.UnknownNameError, match="'endpoint'"):
    sft_split.make_sft_labeller({"kind": "endpiont"})
  with pytest.raises(ValueError, match="has no 'kind'"):
    sft_split.make_sft_labeller({})


@pytest.mark.parametrize("answer, kind", [
    ('{"kind": "perception"}', "perception"), ("```json\n{\"kind\":\"other\"}\n```", "other"),
    ("The kind is reasoning.", "reasoning"), ('{"label": "x"} then {"kind": "reasoning"}', "reasoning")])
def test_parse_kind_reads_json_or_one_kind_word(answer, kind):
  assert sft_split.parse_kind(answer) == kind


@pytest.mark.parametrize("answer", ["", "perception or reasoning", "no idea", '{"kind": "vision"}'])
def test_parse_kind_rejects_ambiguous_replies(answer):
  from visual_priors.data.labelling import reply

  with pytest.raises(reply.UnparseableReplyError):
    sft_split.parse_kind(answer)
