"""Tests for visual_priors.data.labelling.llm against a real HTTP server on 127.0.0.1 started by the test."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from chat_server import ChatServer, completion
from visual_priors.data.labelling import llm, prompt

# Each segment's true labels and the messy way the fake model writes them.
SEGMENTS = {
    "def f(x):\n    return x + 1": ({"code"}, '```json\n{"labels": ["Code Reasoning",]}\n```'),
    "A red kite above the green hill.": (
        {"visual-concept", "visual-attribute", "visual-relationship"},
        'Sure! Here is my answer: {"labels": ["visual concept", "Visual_Attribute", "visual relationship"]}'),
    "Every prime p > 2 is odd.": ({"math"}, "[\"math reasoning\"]"),
    "We measured the growth rate in 40 samples.": ({"science"}, "Labels: Science"),
    "The committee adjourned at noon.": (set(), "None"),
    "The cat sat on the mat while we fitted a model.": (
        {"visual-concept", "visual-relationship", "science"},
        "{'visual-concept': true, 'visual-relationship': True, 'science': 1, 'code': false}"),
}


class FakeChatServer(ChatServer):
  """The labelling endpoint: each segment answered in `SEGMENTS`' messy way unless a test scripts `respond`."""

  def __init__(self):
    super().__init__(self.messy_reply)

  def messy_reply(self, path, body, number):
    return 200, {}, completion(SEGMENTS[self.quoted(body)][1])

  def count(self, text: str) -> int:
    with self.lock:
      return sum(self.quoted(body) == text for body in self.requests)


@pytest.fixture
def server():
  fake = FakeChatServer()
  yield fake
  fake.close()


def make(server_url: str, tmp_path, sleep=time.sleep, **overrides) -> llm.LlmLabeller:
  fields = dict(base_url=server_url, model="test-model-32b", cache_path=str(tmp_path / "labels.sqlite"),
                concurrency=4, timeout_s=5.0, max_retries=3, backoff_base_s=0.001, backoff_max_s=0.01)
  return llm.LlmLabeller(llm.LlmConfig(**{**fields, **overrides}), sleep=sleep)


def test_messy_replies_are_parsed_and_the_request_is_well_formed(server, tmp_path):
  texts = list(SEGMENTS)
  labels = make(server.url, tmp_path).label(texts)
  assert labels == [frozenset(SEGMENTS[t][0]) for t in texts]
  assert len(server.requests) == len(texts)
  body = server.requests[0]
  assert body["model"] == "test-model-32b"
  assert body["temperature"] == 0
  assert [m["role"] for m in body["messages"]] == ["system", "user"]
  assert body["messages"][0]["content"] == prompt.SYSTEM_PROMPT
  assert sorted(server.quoted(b) for b in server.requests) == sorted(texts)


def test_the_cache_prevents_resending(server, tmp_path):
  texts = list(SEGMENTS)
  first = make(server.url, tmp_path).label(texts + texts[:2])  # Duplicates are asked once.
  assert len(server.requests) == len(texts)
  again = make(server.url, tmp_path).label(list(reversed(texts)))  # A new labeller on the same file.
  assert len(server.requests) == len(texts)
  assert again == list(reversed(first[:len(texts)]))
  make(server.url, tmp_path, model="other-model").label(texts[:1])  # The model is part of the key.
  assert len(server.requests) == len(texts) + 1


def test_500_and_429_are_retried_until_the_right_answer(server, tmp_path):
  def flaky(path, body, number):
    text = server.quoted(body)
    seen = server.count(text)
    if seen == 1:
      return 500, {}, {"error": "overloaded"}
    if seen == 2:
      return 429, {"Retry-After": "0"}, {"error": "slow down"}
    return server.messy_reply(path, body, number)

  server.respond = flaky
  texts = list(SEGMENTS)
  assert make(server.url, tmp_path).label(texts) == [frozenset(SEGMENTS[t][0]) for t in texts]
  assert len(server.requests) == 3 * len(texts)
  assert all(server.count(t) == 3 for t in texts)


def test_retry_after_is_honoured_and_backoff_grows_with_jitter(server, tmp_path):
  def throttled(path, body, number):
    if number == 1:
      return 429, {"Retry-After": "7"}, {"error": "rate limited"}
    if number in (2, 3, 4):
      return 503, {}, {"error": "unavailable"}
    return server.messy_reply(path, body, number)

  server.respond = throttled
  slept = []
  labeller = make(server.url, tmp_path, sleep=slept.append, concurrency=1, max_retries=5,
                  backoff_base_s=0.5, backoff_max_s=100.0)
  text = "Every prime p > 2 is odd."
  assert labeller.label([text]) == [frozenset({"math"})]
  assert slept[0] == 7.0
  # Attempts 1, 2, 3 after the first: uniform in [d/2, d] with d = 0.5 * 2^attempt.
  for attempt, delay in zip((1, 2, 3), slept[1:]):
    assert 0.5 * 2 ** attempt / 2 <= delay <= 0.5 * 2 ** attempt
  assert len(slept) == 4


def test_auth_errors_are_not_retried(server, tmp_path):
  server.respond = lambda path, body, number: (401, {}, {"error": {"message": "invalid api key"}})
  labeller = make(server.url, tmp_path, concurrency=1)
  with pytest.raises(llm.EndpointRejectedError, match="HTTP 401.*invalid api key"):
    labeller.label(list(SEGMENTS))
  assert len(server.requests) == 1
  parallel = make(server.url, tmp_path, concurrency=2)
  with pytest.raises(llm.EndpointRejectedError, match="HTTP 401.*invalid api key"):
    parallel.label(list(SEGMENTS))
  assert len(server.requests) <= 1 + 2  # At most the requests already in flight.


def test_unparseable_replies_are_retried_a_bounded_number_of_times_then_reported(server, tmp_path):
  server.respond = lambda path, body, number: (200, {}, completion("I think this text is about whales."))
  labeller = make(server.url, tmp_path, max_parse_attempts=3)
  with pytest.raises(llm.LabellingFailedError, match="1 of 1 segments.*could not be parsed"):
    labeller.label(["A whale."])
  assert len(server.requests) == 3
  repair = server.requests[1]["messages"]
  assert repair[-2] == {"role": "assistant", "content": "I think this text is about whales."}
  assert repair[-1]["content"] == prompt.REPAIR_PROMPT
  assert len(labeller.cache) == 0  # Nothing was stored as "no labels".


def test_a_repaired_reply_is_accepted(server, tmp_path):
  def second_try(path, body, number):
    return 200, {}, completion("Hmm, hard to say." if number == 1 else '{"labels": ["none"]}')

  server.respond = second_try
  assert make(server.url, tmp_path).label(["The committee adjourned."]) == [frozenset()]
  assert len(server.requests) == 2


def test_successes_are_cached_when_other_segments_fail(server, tmp_path):
  bad = "The committee adjourned at noon."

  def one_bad(path, body, number):
    if server.quoted(body) == bad:
      return 200, {}, completion("no idea")
    return server.messy_reply(path, body, number)

  server.respond = one_bad
  texts = list(SEGMENTS)
  with pytest.raises(llm.LabellingFailedError, match=f"1 of {len(texts)} segments"):
    make(server.url, tmp_path, max_parse_attempts=2).label(texts)
  server.respond = server.messy_reply
  sent = len(server.requests)
  make(server.url, tmp_path).label(texts)
  assert len(server.requests) == sent + 1  # Only the failed segment is asked again.


def test_timeouts_are_retried(server, tmp_path):
  def slow_first(path, body, number):
    if number == 1:
      time.sleep(1.0)
    return server.messy_reply(path, body, number)

  server.respond = slow_first
  labeller = make(server.url, tmp_path, timeout_s=0.2, concurrency=1)
  assert labeller.label(["Every prime p > 2 is odd."]) == [frozenset({"math"})]
  assert len(server.requests) == 2


def test_an_unreachable_endpoint_is_reported_after_the_retries(tmp_path):
  with socket.socket() as probe:  # A port with nothing listening.
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
  slept = []
  labeller = make(f"http://127.0.0.1:{port}/v1", tmp_path, sleep=slept.append, max_retries=2)
  with pytest.raises(llm.LabellingFailedError, match="EndpointUnavailableError.*failed 3 times"):
    labeller.label(["A whale."])
  assert len(slept) == 2


def test_requests_run_concurrently(server, tmp_path):
  barrier = threading.Barrier(4, timeout=5.0)

  def together(path, body, number):
    if number <= 4:
      barrier.wait()  # Passes only if 4 requests are in flight at once.
    return server.messy_reply(path, body, number)

  server.respond = together
  texts = list(SEGMENTS)
  assert make(server.url, tmp_path, concurrency=4, max_retries=0).label(texts) == [
      frozenset(SEGMENTS[t][0]) for t in texts]


def test_api_key_from_the_named_environment_variable(server, tmp_path, monkeypatch):
  monkeypatch.setenv("LABELLER_TEST_KEY", "sk-test-123")
  make(server.url, tmp_path, api_key_env="LABELLER_TEST_KEY").label(["Every prime p > 2 is odd."])
  assert server.headers[0]["Authorization"] == "Bearer sk-test-123"
  monkeypatch.delenv("LABELLER_TEST_KEY")
  with pytest.raises(ValueError, match="LABELLER_TEST_KEY"):
    make(server.url, tmp_path, api_key_env="LABELLER_TEST_KEY")
