"""Tests for visual_priors.eval.judge: the offline rule judge, reply parsing, and LlmJudge against a local server."""

from __future__ import annotations

import json

import pytest

from chat_server import ChatServer, completion
from visual_priors.data.labelling import llm, reply
from visual_priors.eval import judge as judge_lib

CHOICES = ["4", "6", "8", "10"]
GOOD = "The image shows a dog and a bird. A dog has 4 legs and a bird has 2 legs, so 4 + 2 = 6. The answer is B."


@pytest.mark.parametrize("trace, coherent, reason", [
    (GOOD, True, "answers '6' consistently"),
    ("There is a dog and a bird; 2 + 2 * 2 = 6 legs in total. Final answer: (B)", True, "answers '6'"),
    ("The answer is B.", False, "degenerate: 4 words"),
    ("dog dog dog dog dog dog dog dog dog dog dog dog", False, "repetitive"),
    ("I see a dog and a bird in this image, and they have some legs.", False, "no final answer stated"),
    ("I see a dog and a bird in this picture. The answer is E.", False, "final answer 'E' is not one of the options"),
    ("I see a dog and a bird here. The answer is A. No wait, the answer is (B) 6.", False,
     "contradictory final answers: 4 vs 6"),
    ("The answer is B because a dog and a bird have six legs.", False, "no reasoning before the final answer"),
    ("I see two animals in the image here. 4 + 2 = 7. The answer is B.", False, "wrong arithmetic: 4 + 2 = 7"),
    ("I see two animals in the image here. 4 + 2 = 6. The answer is C.", False,
     "final answer 8 contradicts the computed 6"),
    ("A dog has four legs and a bird has two, six together. The answer is eight (C).", True, "answers '8'"),
])
def test_rule_judge_follows_its_documented_rule(trace, coherent, reason):
  verdict = judge_lib.RuleJudge().judge("How many legs do the animals have in total?", CHOICES, "6", trace)
  assert verdict["coherent"] is coherent
  assert reason in verdict["reason"]
  assert set(verdict) == {"coherent", "reason"}


def test_rule_judge_on_open_questions_and_its_settings():
  rule = judge_lib.RuleJudge(min_words=3, min_reasoning_words=2)
  assert rule.judge("How many cats?", None, "3", "I count the cats: 1 + 1 + 1 = 3. The answer is 3.")["coherent"]
  assert not rule.judge("How many cats?", None, "3", "I count them: 1 + 1 = 2. The answer is 3.")["coherent"]
  assert rule.name != judge_lib.RuleJudge().name  # settings are part of the judge's identity
  with pytest.raises(ValueError, match="min_words"):
    judge_lib.RuleJudge(min_words=0)


def test_parse_verdict_accepts_messy_replies_and_refuses_others():
  assert judge_lib.parse_verdict('```json\n{"coherent": true, "reason": "ok"}\n```') == {"coherent": True,
                                                                                          "reason": "ok"}
  assert judge_lib.parse_verdict('Verdict: {"coherent": "no", "reason": "contradicts itself"}')["coherent"] is False
  assert judge_lib.parse_verdict("Coherent: yes, the steps follow.")["coherent"] is True
  with pytest.raises(reply.UnparseableReplyError):
    judge_lib.parse_verdict("The reasoning seems fine to me.")


class FakeJudgeServer(ChatServer):
  """The judge endpoint: a trace is coherent iff it states "answer is", unless a test scripts `respond`."""

  def __init__(self):
    super().__init__(self.rule_reply)

  def rule_reply(self, path, body, number):
    coherent = "answer is" in self.quoted(body)
    return 200, {}, completion(f'Here you go: {{"coherent": {json.dumps(coherent)}, "reason": "checked"}}')


@pytest.fixture
def server():
  fake = FakeJudgeServer()
  yield fake
  fake.close()


def make(server, tmp_path, **overrides) -> judge_lib.LlmJudge:
  fields = dict(base_url=server.url, model="judge-32b", cache_path=str(tmp_path / "judge.sqlite"), concurrency=3,
                timeout_s=5.0, max_retries=2, backoff_base_s=0.001, backoff_max_s=0.01, max_tokens=128)
  return judge_lib.LlmJudge(llm.LlmConfig(**{**fields, **overrides}))


ITEMS = [{"question": "How many legs?", "choices": CHOICES, "answer": "6", "trace": GOOD},
         {"question": "How many legs?", "choices": CHOICES, "answer": "6", "trace": "Dogs. Birds. Legs."},
         {"question": "Is there a cat?", "choices": None, "answer": "Yes",
          "trace": "I see a cat, so the answer is yes."}]


def test_llm_judge_sends_a_versioned_prompt_and_caches_verdicts(server, tmp_path):
  verdicts = make(server, tmp_path).judge_many(ITEMS)
  assert [v["coherent"] for v in verdicts] == [True, False, True]
  assert all(v["reason"] == "checked" for v in verdicts)
  assert len(server.requests) == 3
  body = next(b for b in server.requests if server.quoted(b) == GOOD)
  assert body["model"] == "judge-32b" and body["temperature"] == 0 and body["max_tokens"] == 128
  assert body["messages"][0] == {"role": "system", "content": judge_lib.SYSTEM_PROMPT}
  assert "B. 6" in body["messages"][1]["content"] and "Reference answer: 6" in body["messages"][1]["content"]
  again = make(server, tmp_path)  # a new judge on the same cache file sends nothing
  assert again.judge(**ITEMS[0]) == verdicts[0]
  assert len(server.requests) == 3
  make(server, tmp_path, model="other-judge").judge(**ITEMS[0])  # the model is part of the key
  assert len(server.requests) == 4
  assert judge_lib.PROMPT_VERSION in again.name


def test_llm_judge_retries_server_errors_and_repairs_unreadable_replies(server, tmp_path):
  def flaky(path, body, number):
    if number == 1:
      return 503, {}, {"error": "busy"}
    if number == 2:
      return 200, {}, completion("Looks reasonable.")
    return server.rule_reply(path, body, number)

  server.respond = flaky
  assert make(server, tmp_path, concurrency=1).judge(**ITEMS[0])["coherent"] is True
  assert len(server.requests) == 3
  assert server.requests[2]["messages"][-2:] == [{"role": "assistant", "content": "Looks reasonable."},
                                                 {"role": "user", "content": judge_lib.REPAIR_PROMPT}]


def test_llm_judge_reports_failures_and_keeps_successes(server, tmp_path):
  def picky(path, body, number):
    if "Dogs. Birds." in server.quoted(body):
      return 200, {}, completion("No idea.")
    return server.rule_reply(path, body, number)

  server.respond = picky
  judge = make(server, tmp_path, max_parse_attempts=2)
  with pytest.raises(judge_lib.JudgingFailedError, match="1 of 3 traces got no verdict"):
    judge.judge_many(ITEMS)
  assert len(judge.cache) == 2
  server.respond = lambda path, body, number: (401, {}, {"error": "bad key"})
  with pytest.raises(llm.EndpointRejectedError, match="HTTP 401"):
    make(server, tmp_path, concurrency=1).judge_many([{**ITEMS[0], "trace": "new trace"}])


def test_make_judge_from_probe_settings(server, tmp_path):
  assert isinstance(judge_lib.make_judge({"judge": "rule"}), judge_lib.RuleJudge)
  made = judge_lib.make_judge({"judge": "llm", "url": server.url, "model": "m", "enabled": True,
                               "cache_path": str(tmp_path / "c.sqlite")})
  assert isinstance(made, judge_lib.LlmJudge) and made.config.max_tokens == 128
  with pytest.raises(ValueError, match="needs eval.probe.url"):
    judge_lib.make_judge({"judge": "llm", "url": "", "model": ""})
  with pytest.raises(KeyError, match="rule"):
    judge_lib.make_judge({"judge": "rules"})
