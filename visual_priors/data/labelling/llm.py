"""Segment labelling by an LLM behind any OpenAI-compatible chat-completions endpoint (e.g. a vLLM server).

One segment per request (simple to parse, and each reply is cached on its own), a thread pool of
`concurrency` requests in flight, retries with exponential backoff and jitter on connection errors,
timeouts, HTTP 429 and 5xx (Retry-After honoured), no retry on other 4xx, and a sqlite cache so a
re-run sends no request for segments it already labelled. Standard library HTTP only (urllib).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import email.utils
import http.client
import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import ml_collections

from visual_priors.data import cache
from visual_priors.data.labelling import base, label_cache, prompt, reply

T = TypeVar("T")
K = TypeVar("K")
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))


class EndpointRejectedError(RuntimeError):
  """The endpoint refused a request for a reason a retry cannot fix (auth, bad request, unknown model)."""


class EndpointUnavailableError(RuntimeError):
  """The endpoint kept failing (connection, timeout, 429, 5xx) through every retry."""


class EndpointDownError(EndpointUnavailableError):
  """Several requests in a row failed through every retry: the rest of the batch was not sent."""


class LabellingFailedError(RuntimeError):
  """Some segments got no label set; the ones that did are cached."""


def failure_summary(failures: Mapping[Any, Exception], asked: int, what: str, done: str) -> str:
  """The message of a batch in which `failures` of `asked` requests failed, the rest `done` and cached."""
  first = next(iter(failures.values()))
  return (f"{len(failures)} of {asked} {what} ({asked - len(failures)} were {done} and cached; re-running asks "
          f"only for the rest). First error: {type(first).__name__}: {first}")


@dataclasses.dataclass(frozen=True)
class LlmConfig:
  """Where and how to ask. `api_key_env` names the environment variable holding the key ("" = no auth)."""

  base_url: str
  model: str
  api_key_env: str = ""
  cache_path: str = ""  # "" -> <cache_root>/labels/llm_cache.sqlite
  concurrency: int = 8
  timeout_s: float = 120.0
  max_retries: int = 6  # Transport retries per request, after the first try.
  backoff_base_s: float = 1.0
  backoff_max_s: float = 60.0
  retry_after_max_s: float = 600.0  # Cap on a server's Retry-After.
  max_parse_attempts: int = 3  # Requests per segment whose replies fail to parse before giving up.
  # After this many requests in a row fail through all their retries, the endpoint is taken as down and the
  # batch's remaining requests are not sent (a dead server fails a build in bounded time, not per segment).
  max_unavailable_in_a_row: int = 4
  max_tokens: int = 64

  def __post_init__(self):
    if not self.base_url.startswith(("http://", "https://")):
      raise ValueError(f"base_url {self.base_url!r} must start with http:// or https:// "
                       "(e.g. http://localhost:8000/v1).")
    for field in ("concurrency", "max_parse_attempts", "max_tokens", "max_unavailable_in_a_row"):
      if getattr(self, field) < 1:
        raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}.")
    for field in ("timeout_s", "backoff_base_s", "backoff_max_s", "retry_after_max_s", "max_retries"):
      if getattr(self, field) < 0:
        raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}.")


class LlmLabeller:
  """Labels segments by asking a chat model; see the module docstring for the request policy."""

  def __init__(self, config: LlmConfig, sleep: Callable[[float], None] = time.sleep):
    self.config = config
    self.name = f"llm-{prompt.PROMPT_VERSION}:{config.model}"
    self._url = config.base_url.rstrip("/") + "/chat/completions"
    self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if config.api_key_env:
      key = os.environ.get(config.api_key_env)
      if not key:
        raise ValueError(f"Environment variable {config.api_key_env!r} (api_key_env) is not set; export "
                         "the endpoint's API key there, or set api_key_env='' for a server without auth.")
      self._headers["Authorization"] = f"Bearer {key}"
    cache_path = config.cache_path or cache.cache_root() / "labels" / "llm_cache.sqlite"
    self.cache = label_cache.LabelCache(cache_path)
    self._sleep = sleep
    self._random = random.Random()

  def label(self, texts: Sequence[str]) -> list[frozenset[str]]:
    keys = [label_cache.segment_key(prompt.PROMPT_VERSION, self.config.model, text) for text in texts]
    masks = self.cache.get_many(keys)
    todo = {key: text for key, text in zip(keys, texts) if key not in masks}

    def keep(key: str, labels: frozenset[str]) -> None:
      masks[key] = base.labels_to_mask(labels)
      self.cache.put(key, masks[key], self.config.model, prompt.PROMPT_VERSION)

    failures = self.ask_each({key: functools.partial(self._ask_labels, text) for key, text in todo.items()}, keep)
    if failures:
      raise LabellingFailedError(failure_summary(failures, len(todo), f"segments sent to {self._url} got no label set",
                                                 "labelled"))
    return [base.mask_to_labels(masks[key]) for key in keys]

  def _ask_labels(self, text: str, rejections: list[Exception]) -> frozenset[str]:
    return self.ask(prompt.segment_messages(text), reply.parse_labels,
                    lambda _, answer: prompt.repair_messages(text, answer), rejections)

  def ask_each(self, requests: Mapping[K, Callable[[list[Exception]], T]],
               keep: Callable[[K, T], None]) -> dict[K, Exception]:
    """Runs `requests` (each a call of `ask`, given the batch's shared rejection list) on `concurrency`
    threads, handing each result to `keep` as it arrives, so what succeeded is kept (cached) when others
    fail. Returns the failures (unparseable replies, an unavailable endpoint) by key; the endpoint's first
    refusal is raised, and the requests still queued are then never sent."""
    failures: dict[K, Exception] = {}
    if not requests:
      return failures
    rejections: list[Exception] = []
    unavailable_in_a_row = 0
    pool = concurrent.futures.ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="llm")
    try:
      futures = {pool.submit(request, rejections): key for key, request in requests.items()}
      for future in concurrent.futures.as_completed(futures):
        try:
          value = future.result()
        except (reply.UnparseableReplyError, EndpointUnavailableError) as e:
          failures[futures[future]] = e
          unavailable_in_a_row = unavailable_in_a_row + 1 if isinstance(e, EndpointUnavailableError) else 0
          if unavailable_in_a_row == self.config.max_unavailable_in_a_row and not rejections:
            rejections.append(EndpointDownError(
                f"{self._url} is down: {unavailable_in_a_row} requests in a row failed through all their retries "
                f"(last: {e}); the batch's remaining requests were not sent"))
          continue
        unavailable_in_a_row = 0
        keep(futures[future], value)
    finally:
      pool.shutdown(wait=True, cancel_futures=True)
    return failures

  def ask(self, messages: list[dict[str, Any]], parse: Callable[[str], T],
          repair: Callable[[list[dict[str, Any]], str], list[dict[str, Any]]],
          rejections: list[Exception]) -> T:
    """`parse` of one chat completion of `messages`, re-asking with `repair(messages, bad reply)` until a reply
    parses, at most max_parse_attempts times. `rejections`, shared by one batch's requests, records the
    endpoint's first refusal (or that it is down); later requests then fail without being sent."""
    if rejections:  # Not sent: the endpoint refused an earlier request, or is down.
      raise type(rejections[0])(str(rejections[0]))
    attempt = 1
    while True:
      try:
        answer = self._complete(messages)
      except EndpointRejectedError as e:
        rejections.append(e)
        raise
      try:
        return parse(answer)
      except reply.UnparseableReplyError as e:
        if attempt >= self.config.max_parse_attempts:
          raise reply.UnparseableReplyError(f"{attempt} replies in a row could not be parsed; last: {e}") from e
      messages = repair(messages, answer)
      attempt += 1

  def _complete(self, messages: list[dict[str, str]]) -> str:
    """The assistant message text of one chat completion, retrying transient failures."""
    body = json.dumps({"model": self.config.model, "messages": messages, "temperature": 0,
                       "max_tokens": self.config.max_tokens}).encode("utf-8")
    for attempt in range(self.config.max_retries + 1):
      try:
        return _message_text(self._post(body))
      except urllib.error.HTTPError as e:
        detail = _error_body(e)
        if e.code not in _RETRYABLE_STATUS:
          raise EndpointRejectedError(
              f"{self._url} answered HTTP {e.code} ({detail}); not retrying. Check base_url, model "
              f"{self.config.model!r} and the API key in ${self.config.api_key_env or '<none set>'}.") from e
        error: Exception = e
        retry_after = self._retry_after(e.headers)
        delay = self._backoff(attempt) if retry_after is None else retry_after
      except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        # URLError: refused/unreachable; OSError covers timeouts and resets; ValueError: a non-JSON body.
        error, delay = e, self._backoff(attempt)
      if attempt == self.config.max_retries:
        break
      self._sleep(delay)
    raise EndpointUnavailableError(f"{self._url} failed {self.config.max_retries + 1} times; last error: "
                                   f"{type(error).__name__}: {error}")

  def _post(self, body: bytes) -> Any:
    request = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")
    with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
      return json.loads(response.read())

  def _backoff(self, attempt: int) -> float:
    """Exponential backoff with jitter: a uniform draw in [d/2, d], d = base * 2^attempt capped."""
    ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** attempt)
    return self._random.uniform(ceiling / 2, ceiling)

  def _retry_after(self, headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped; None if absent."""
    value = headers.get("Retry-After") if headers else None
    if not value:
      return None
    try:
      seconds = float(value)
    except ValueError:
      try:
        seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
      except (TypeError, ValueError):
        return None
    return min(max(seconds, 0.0), self.config.retry_after_max_s)


def _message_text(completion: Any) -> str:
  """choices[0].message.content of a chat completion; an empty string when missing (parsing then fails)."""
  try:
    content = completion["choices"][0]["message"]["content"]
  except (KeyError, IndexError, TypeError):
    return ""
  return content if isinstance(content, str) else ""


def _error_body(error: urllib.error.HTTPError) -> str:
  try:
    return error.read().decode("utf-8", "replace")[:300] or error.reason
  except OSError:
    return str(error.reason)


@base.register_labeller("llm")
def _from_config(config: ml_collections.ConfigDict) -> LlmLabeller:
  defaults = {f.name: f.default for f in dataclasses.fields(LlmConfig) if f.default is not dataclasses.MISSING}
  return LlmLabeller(LlmConfig(**base.config_fields(config, defaults, required=("base_url", "model"))))
