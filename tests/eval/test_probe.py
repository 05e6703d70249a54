"""Tests for visual_priors.eval.probe: prompts, metrics, the resumable traces file, item loading, model binding."""

from __future__ import annotations

import json

import pytest

from visual_priors.eval import probe
from visual_priors.eval.judge import Judge, RuleJudge

ITEMS = [
    {"id": "k1", "image": None, "question": "How many legs do the animals have in total?", "choices": ["4", "6"],
     "answer": "6", "group": "Knowledge"},
    {"id": "k2", "image": None, "question": "Which object is a fruit?", "choices": ["apple", "dog"],
     "answer": "apple", "group": "Knowledge"},
    {"id": "v1", "image": None, "question": "How many dogs are there?", "choices": None, "answer": "2",
     "group": "Vision-Centric"},
]
# A coherent trace for k1 and v1 (per the rule judge), a degenerate one for k2.
REPLIES = {
    "k1": "A dog has 4 legs and a bird has 2 legs, so 4 + 2 = 6 legs. The answer is B.",
    "k2": "apple apple",
    "v1": "I can see one dog on the left and one on the right: 1 + 1 = 2. The answer is 2.",
}


class FakeGenerate:
  """Answers by question id (recovered from the prompt); counts requests; can fail after some calls."""

  def __init__(self, fail_after_calls: int | None = None):
    self.requests: list[dict] = []
    self.calls = 0
    self.fail_after_calls = fail_after_calls

  def __call__(self, requests):
    if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
      raise RuntimeError("device lost")
    self.calls += 1
    self.requests += list(requests)
    by_question = {item["question"]: item["id"] for item in ITEMS}
    return [REPLIES[by_question[r["prompt"].split("\n")[0]]] for r in requests]


class CountingJudge(RuleJudge):
  def __init__(self, name: str = "counting"):
    super().__init__()
    self.name = name
    self.judged = 0

  def judge_many(self, items):
    self.judged += len(items)
    return super().judge_many(items)


def test_probe_prompt_asks_for_detailed_explanations():
  prompt = probe.probe_prompt("How many legs?", ["4", "6"])
  assert prompt.startswith("How many legs?\nA. 4\nB. 6\n")
  assert "detailed explanations" in prompt.lower() and "<option letter>" in prompt
  assert "<option letter>" not in probe.probe_prompt("How many dogs?", None)


def test_metrics_rows_and_trace_file(tmp_path):
  generate = FakeGenerate()
  rows = probe.evaluate_probe(ITEMS, generate, RuleJudge(), tmp_path, chunk_size=2)
  table = {(r["benchmark"], r["metric"]): r for r in rows}
  assert table["reasoning_probe", "logical_soundness"]["value"] == pytest.approx(200 / 3)
  words = [len(REPLIES[i].split()) for i in ("k1", "k2", "v1")]
  assert table["reasoning_probe", "reasoning_depth"]["value"] == pytest.approx(sum(words) / 3)
  assert table["reasoning_probe", "logical_soundness"]["count"] == 3
  assert table["reasoning_probe/Knowledge", "logical_soundness"]["value"] == 50.0
  assert table["reasoning_probe/Knowledge", "logical_soundness"]["group"] == "Knowledge"
  assert table["reasoning_probe/Vision-Centric", "reasoning_depth"]["value"] == words[2]
  assert table["reasoning_probe", "logical_soundness"]["group"] is None
  assert len(rows) == 6
  assert [r["image"] for r in generate.requests] == [None] * 3
  records = [json.loads(line) for line in (tmp_path / probe.TRACES_FILE).read_text().splitlines()]
  assert [r["id"] for r in records] == ["k1", "k2", "v1"]
  assert records[1]["coherent"] is False and "degenerate" in records[1]["reason"]
  assert records[0]["trace"] == REPLIES["k1"] and records[0]["judge"] == RuleJudge().name


def test_an_interrupted_probe_resumes_without_regenerating(tmp_path):
  with pytest.raises(RuntimeError, match="device lost"):
    probe.evaluate_probe(ITEMS, FakeGenerate(fail_after_calls=1), RuleJudge(), tmp_path, chunk_size=2)
  saved = (tmp_path / probe.TRACES_FILE).read_text().splitlines()
  assert [json.loads(line)["id"] for line in saved if "trace" in json.loads(line)] == ["k1", "k2"]
  resumed = FakeGenerate()
  judge = CountingJudge(RuleJudge().name)  # the same judge identity: stored verdicts are kept
  rows = probe.evaluate_probe(ITEMS, resumed, judge, tmp_path, chunk_size=2)
  assert [r["prompt"].split("\n")[0] for r in resumed.requests] == [ITEMS[2]["question"]]
  assert judge.judged == 1
  fresh = probe.evaluate_probe(ITEMS, FakeGenerate(), RuleJudge(), tmp_path / "fresh", chunk_size=2)
  assert rows == fresh


def test_a_new_judge_rejudges_stored_traces_and_limit_selects_the_first_items(tmp_path):
  probe.evaluate_probe(ITEMS, FakeGenerate(), RuleJudge(), tmp_path)
  untouched = FakeGenerate()

  class Strict(Judge):
    name = "strict"

    def judge(self, question, choices, answer, trace):
      return {"coherent": False, "reason": "strict"}

  rows = probe.evaluate_probe(ITEMS, untouched, Strict(), tmp_path, limit=2)
  assert untouched.requests == []
  assert {(r["benchmark"], r["metric"]): r["value"] for r in rows}["reasoning_probe", "logical_soundness"] == 0.0
  assert all(r["count"] == 2 for r in rows)
  records = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / probe.TRACES_FILE).read_text().split("\n")
             if line}
  assert records["k1"]["judge"] == "strict" and records["v1"]["judge"] == RuleJudge().name  # other items kept


def test_bad_items_and_settings_are_refused(tmp_path):
  with pytest.raises(ValueError, match="occurs twice"):
    probe.evaluate_probe([ITEMS[0], ITEMS[0]], FakeGenerate(), RuleJudge(), tmp_path)
  with pytest.raises(ValueError, match=r"lacks \['id'\]"):
    probe.evaluate_probe([{"question": "q", "answer": "a"}], FakeGenerate(), RuleJudge(), tmp_path)
  with pytest.raises(ValueError, match="No probe items"):
    probe.evaluate_probe([], FakeGenerate(), RuleJudge(), tmp_path)
  with pytest.raises(ValueError, match="limit must be >= 1"):
    probe.evaluate_probe(ITEMS, FakeGenerate(), RuleJudge(), tmp_path, limit=0)
  with pytest.raises(ValueError, match="returned 0 replies for 3 requests"):
    probe.evaluate_probe(ITEMS, lambda requests: [], RuleJudge(), tmp_path)


def test_load_probe_items_keeps_the_probe_groups_and_resolves_images(tmp_path):
  (tmp_path / "eval").mkdir()
  rows = [{**ITEMS[0], "image": "images/a.png"}, {**ITEMS[2], "group": "General", "id": "g1"}, ITEMS[2]]
  path = tmp_path / "eval" / "gen_mixed.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
  items = probe.load_probe_items([path])
  assert [i["id"] for i in items] == ["k1", "v1"]
  assert items[0]["image"] == str((tmp_path / "eval" / "images" / "a.png").resolve())
  assert len(probe.load_probe_items([path], groups=None)) == 3
  with pytest.raises(FileNotFoundError, match="No evaluation file"):
    probe.load_probe_items([tmp_path / "missing.jsonl"])


def test_model_generate_binds_generate_replies():
  calls = []

  def generate_replies(model, template, requests, *, image_size, max_new_tokens=64, batch_size=8, blind=False):
    calls.append((model, template, list(requests), image_size, max_new_tokens, batch_size, blind))
    return ["reply"] * len(requests)

  generate = probe.model_generate("model", "template", image_size=32, max_new_tokens=200, batch_size=4,
                                  generate_replies=generate_replies)
  assert generate([{"prompt": "p", "image": None}]) == ["reply"]
  assert calls == [("model", "template", [{"prompt": "p", "image": None}], 32, 200, 4, False)]


@pytest.mark.slow
def test_the_probe_runs_on_a_real_tiny_mllm_through_generate_replies(tmp_path):
  import numpy as np  # pylint: disable=import-outside-toplevel
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  from visual_priors.data.multimodal import chat  # pylint: disable=import-outside-toplevel
  from visual_priors.eval import decode  # pylint: disable=import-outside-toplevel
  from visual_priors.models import scales  # pylint: disable=import-outside-toplevel
  from visual_priors.models.mllm import MLLM, MLLMConfig  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import get_encoder  # pylint: disable=import-outside-toplevel

  texts = [item["question"] for item in ITEMS] + list(REPLIES.values()) + [probe.INSTRUCTION]
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts * 4), model_prefix=str(tmp_path / "spm"), vocab_size=400, model_type="unigram",
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False, minloglevel=2,
      num_threads=1)
  template = chat.ChatTemplate(tmp_path / "spm.model", chat.ChatConfig(num_visual_tokens=4))
  config = MLLMConfig(vision=get_encoder("vit-nano", pool_type="none", num_classes=0),
                      llm=scales.get_scale("nano", vocab_size=template.processor.get_piece_size(),
                                           attention_impl="xla"), num_visual_tokens=4)
  model = nnx.jit(lambda: MLLM(config, rngs=nnx.Rngs(1)))()  # one compiled init: eager init is slow on CPU
  rng = np.random.default_rng(0)
  items = [{**item, "image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)} for item in ITEMS[:2]]
  generate = probe.model_generate(model, template, image_size=16, max_new_tokens=6, batch_size=2)
  rows = probe.evaluate_probe(items, generate, RuleJudge(), tmp_path / "probe")
  records = [json.loads(line) for line in (tmp_path / "probe" / probe.TRACES_FILE).read_text().splitlines()]
  direct = decode.generate_replies(model, template, [{"prompt": r["prompt"], "image": i["image"]}
                                                     for r, i in zip(records, items)], image_size=16, max_new_tokens=6)
  assert [r["trace"] for r in records] == direct
  assert {(r["benchmark"], r["metric"]) for r in rows} >= {("reasoning_probe", "logical_soundness"),
                                                            ("reasoning_probe", "reasoning_depth")}
