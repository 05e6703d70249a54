"""A flaky LLM endpoint on 127.0.0.1: bounded retries, an error naming it, malformed replies never cached.

Faults: timeouts, 500s, dropped connections, bodies cut short, truncated JSON, empty labels. Good replies are cached;
the `data build` flags set the labeller's timeout, retries and concurrency.
"""

from __future__ import annotations

import json
import random
import shutil
import time

import pytest

from chat_server import DROP, ChatServer, Cut, completion
from visual_priors import cli
from visual_priors.data import corpora, labelling
from visual_priors.data.labelling import llm

TIMEOUT = 0.3  # the client's per-reply timeout in these tests
RETRIES = 2  # transport retries after the first try
SEGMENTS = {"Every prime p > 2 is odd.": "math", "def f(x):\n    return x + 1": "code",
            "We measured the growth rate in 40 samples.": "science",
            "A red kite above the green hill.": "visual-concept"}


def _good(body: dict) -> tuple[int, dict, dict]:
  return 200, {}, completion(json.dumps({"labels": [SEGMENTS[ChatServer.quoted(body)]]}))


def _timeout(body):
  time.sleep(3 * TIMEOUT)
  return _good(body)


# Transport faults: each retried (never parsed, so never cached).
TRANSPORT = {
    "timeout": (_timeout, "timed out"),
    "http-500": (lambda body: (500, {}, {"error": "overloaded"}), "HTTP Error 500"),
    "dropped-connection": (lambda body: (DROP, {}, None), "RemoteDisconnected"),
    "cut-mid-body": (lambda body: (200, {}, Cut(json.dumps(_good(body)[2]))), "IncompleteRead"),
    "truncated-json": (lambda body: (200, {}, json.dumps(_good(body)[2])[:-9]), "JSONDecodeError"),
}
# Malformed replies: delivered fine but naming no label set; asked again, never cached as "no labels".
MALFORMED = {
    "empty-labels": '{"labels": ""}',
    "truncated-labels-json": '{"labels": ["ma',
    "empty-reply": "",
}


@pytest.fixture
def server():
  fake = ChatServer(lambda path, body, number: _good(body))
  yield fake
  fake.close()


def _labeller(server, tmp_path, **overrides) -> llm.LlmLabeller:
  fields = dict(base_url=server.url, model="flaky-model", cache_path=str(tmp_path / "labels.sqlite"), concurrency=2,
                timeout_s=TIMEOUT, max_retries=RETRIES, backoff_base_s=0.001, backoff_max_s=0.01,
                max_parse_attempts=3)
  return llm.LlmLabeller(llm.LlmConfig(**{**fields, **overrides}))


def _endpoint(server) -> str:
  return server.url + "/chat/completions"


@pytest.mark.parametrize("fault", list(TRANSPORT))
def test_a_transport_fault_is_retried_and_the_good_reply_cached(server, tmp_path, fault):
  make_fault, _ = TRANSPORT[fault]
  server.respond = lambda path, body, number: make_fault(body) if number <= RETRIES else _good(body)
  text = next(iter(SEGMENTS))
  labeller = _labeller(server, tmp_path, concurrency=1)
  assert labeller.label([text]) == [frozenset({SEGMENTS[text]})]
  assert len(server.requests) == RETRIES + 1
  assert labeller.label([text]) == [frozenset({SEGMENTS[text]})]
  assert len(server.requests) == RETRIES + 1  # cached: not asked again


@pytest.mark.parametrize("fault", list(TRANSPORT))
def test_retries_run_out_in_bounded_time_with_an_error_naming_the_endpoint(server, tmp_path, fault):
  make_fault, signature = TRANSPORT[fault]
  server.respond = lambda path, body, number: make_fault(body)
  labeller = _labeller(server, tmp_path, concurrency=1)
  started = time.monotonic()
  with pytest.raises(llm.LabellingFailedError) as raised:
    labeller.label([next(iter(SEGMENTS))])
  assert time.monotonic() - started < (RETRIES + 1) * TIMEOUT + 5
  message = str(raised.value)
  assert _endpoint(server) in message and f"failed {RETRIES + 1} times" in message and signature in message, message
  assert len(server.requests) == RETRIES + 1
  assert len(labeller.cache) == 0


def test_a_dead_endpoint_is_given_up_after_a_few_requests_not_asked_for_every_segment(server, tmp_path):
  """The circuit breaker: after max_unavailable_in_a_row requests exhaust their retries, the rest are not sent."""
  server.respond = lambda path, body, number: (500, {}, {"error": "down"})
  labeller = _labeller(server, tmp_path, concurrency=2, max_unavailable_in_a_row=3)
  texts = [f"Segment number {i} of a long corpus." for i in range(40)]
  with pytest.raises(llm.LabellingFailedError) as raised:
    labeller.label(texts)
  assert "40 of 40 segments" in str(raised.value), raised.value
  with server.lock:
    sent = len(server.requests)
  # The three that tripped it and at most one per other thread in flight, each with its retries.
  assert sent <= (3 + 2) * (RETRIES + 1), sent
  assert len(labeller.cache) == 0
  # A batch that succeeds resets the count: a later call asks again.
  server.respond = lambda path, body, number: _good(body)
  assert labeller.label([next(iter(SEGMENTS))]) == [frozenset({"math"})]


@pytest.mark.parametrize("fault", list(MALFORMED))
def test_a_malformed_reply_is_asked_again_and_never_cached(server, tmp_path, fault):
  text = next(iter(SEGMENTS))
  server.respond = lambda path, body, number: (200, {}, completion(MALFORMED[fault]))
  labeller = _labeller(server, tmp_path)
  with pytest.raises(llm.LabellingFailedError) as raised:
    labeller.label([text])
  assert _endpoint(server) in str(raised.value) and "could not be parsed" in str(raised.value)
  assert len(server.requests) == 3  # max_parse_attempts, then it stops
  assert len(labeller.cache) == 0  # never stored as "no labels"
  server.respond = lambda path, body, number: (200, {}, completion(MALFORMED[fault])) if number == 4 else _good(body)
  assert labeller.label([text]) == [frozenset({SEGMENTS[text]})]  # a malformed reply, then a good one
  assert len(server.requests) == 5 and len(labeller.cache) == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_a_mix_of_every_fault_labels_everything_in_bounded_time_and_requests(server, tmp_path, seed):
  rng = random.Random(seed)
  faults = [make for make, _ in TRANSPORT.values()]
  faults += [lambda body, reply=reply: (200, {}, completion(reply)) for reply in MALFORMED.values()]

  def chaos(path, body, number):
    with server.lock:
      draw = rng.random()
      fault = rng.choice(faults)
    return fault(body) if draw < 0.5 else _good(body)

  server.respond = chaos
  labeller = _labeller(server, tmp_path, concurrency=4, max_retries=8, max_parse_attempts=8)
  started = time.monotonic()
  assert labeller.label(list(SEGMENTS)) == [frozenset({label}) for label in SEGMENTS.values()]
  assert len(server.requests) <= len(SEGMENTS) * 9 * 8
  assert time.monotonic() - started < 60
  asked = len(server.requests)
  assert labeller.label(list(SEGMENTS)) == [frozenset({label}) for label in SEGMENTS.values()]
  assert len(server.requests) == asked  # every good reply was cached


class _Stop(BaseException):
  pass


def test_data_build_flags_set_the_labellers_timeout_retries_and_concurrency(server, tmp_path, monkeypatch, capsys):
  built = []
  real = labelling.make_labeller
  monkeypatch.setattr(labelling, "make_labeller", lambda config: built.append(real(config)) or built[-1])

  def stop(*args, **kwargs):
    raise _Stop()

  monkeypatch.setattr(corpora, "build_corpora", stop)  # stop once the labeller is made (before any download)
  base = ["data", "build", "--cache-dir", str(tmp_path), "--labeller", "llm", "--llm-url", server.url,
          "--llm-model", "m"]
  with pytest.raises(_Stop):
    cli.main([*base, "--llm-timeout", "2.5", "--llm-retries", "1", "--llm-concurrency", "3"])
  with pytest.raises(_Stop):
    cli.main(base)
  given, default = (labeller.config for labeller in built)
  assert (given.timeout_s, given.max_retries, given.concurrency) == (2.5, 1, 3)
  assert (default.timeout_s, default.max_retries, default.concurrency) == (120.0, 6, 8)  # LlmConfig's defaults
  capsys.readouterr()
  assert cli.main(["data", "build", "--cache-dir", str(tmp_path), "--llm-retries", "1"]) == 2
  assert "--labeller llm" in capsys.readouterr().err
  assert cli.main([*base, "--llm-concurrency", "0"]) == 2
  assert "concurrency must be >= 1" in capsys.readouterr().err


def test_data_build_against_a_dead_endpoint_stops_in_bounded_time_naming_it(server, tmp_path, small_corpus_args,
                                                                           capsys):
  cache_dir = tmp_path / "cache"
  shutil.copytree(small_corpus_args["cache_dir"] / "corpora", cache_dir / "corpora")
  server.respond = lambda path, body, number: (500, {}, {"error": "down"})
  started = time.monotonic()
  code = cli.main(["data", "build", "--sources", "code", "--max-mb-per-source", "0.05", "--vocab-size", "500",
                   "--segment-length", "1024", "--cache-dir", str(cache_dir), "--labeller", "llm", "--llm-url",
                   server.url, "--llm-model", "m", "--llm-timeout", "1", "--llm-retries", "1",
                   "--llm-concurrency", "4"])
  seconds = time.monotonic() - started
  error = capsys.readouterr().err.strip()
  assert code == 2 and error.startswith("error: ") and "\n" not in error, error
  assert _endpoint(server) in error and "failed 2 times" in error and "HTTP Error 500" in error, error
  assert seconds < 60
  with server.lock:
    assert len(server.requests) % 2 == 0  # each segment asked exactly twice (the try and its one retry)
