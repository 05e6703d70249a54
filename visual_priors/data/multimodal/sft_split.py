"""The SFT-data ablation: label instruction items perception / reasoning / other, then drop 50% or 100% of a kind.

Labellers (`SftLabeller`: `name`, `kinds(records) -> [kind]`):
* "rule" (offline): an item's own "kind" field when it has one (the generator writes it), else a keyword
  rule: reasoning cues (why / explain / calculate / solve / prove / step by step, arithmetic, code) win;
  otherwise an item with an image and a perception cue (colour, shape, count, where, read the text,
  describe, is there ...) is perception; everything else is other.
* "endpoint": a chat model behind an OpenAI-compatible endpoint (an LLM sees the conversation; a VLM can
  also be sent the image, `send_images=True`). The request, retry and backoff policy and the sqlite reply
  cache are those of `labelling.llm.LlmLabeller`, reused as they are; this module adds the prompt, the
  reply parsing and a per-item thread pool shaped like `LlmLabeller.label`'s (cache first, the first
  rejection stops the queue, failures reported together after the rest are cached).

Variants (the paper's five configs): full, perception-50, perception-100, reasoning-50, reasoning-100.
Which items a removal drops is a seeded permutation per kind, so the 50% set is half of the 100% set
and reruns drop the same items. The runner applies a variant to the instruction data before SFT
(`adapt.sft_data`: the removal, and which labeller names the kinds).
"""

from __future__ import annotations

import base64
import functools
import dataclasses
import hashlib
import json
import mimetypes
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import ml_collections
import numpy as np

from visual_priors import names
from visual_priors.data.labelling import base, label_cache, llm, reply
from visual_priors.data.multimodal import chat

KINDS = ("perception", "reasoning", "other")
VARIANTS = {"full": {}, "perception-50": {"perception": 0.5}, "perception-100": {"perception": 1.0},
            "reasoning-50": {"reasoning": 0.5}, "reasoning-100": {"reasoning": 1.0}}

_REASONING_CUES = re.compile(
    r"\b(why|explain\w*|reason\w*|infer\w*|deduc\w*|prove|proof|calculat\w*|comput\w*|solve|solution|"
    r"equation|step[- ]by[- ]step|therefore|hence|what would happen|predict\w*|conclu\w*|implies|"
    r"probability|percent\w*|average|sum of|difference between|total cost)\b"
    r"|\d\s*[-+*/×÷^=]\s*\d|```|\bdef \w+\(|#include|\bfunction\s*\w*\(", re.I)
_PERCEPTION_CUES = re.compile(
    r"\b(colou?rs?|shapes?|how many|count|number of|where (is|are)|located|position|left|right|above|below|"
    r"behind|next to|read|text|written|says?|label(?:ed|led)?|describe|description|what (is|are) (in|on|shown|"
    r"visible)|is there|are there|visible|see|appears?|looks?|objects?|size|largest|smallest|bigger|"
    r"smaller|ocr)\b", re.I)


class SftLabeller(Protocol):
  """Assigns each instruction record one of KINDS."""

  name: str  # Identity recorded in manifests; includes the rule's or the prompt's version and model.

  def kinds(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One kind per record, in order."""


def _turn_texts(record: Mapping[str, Any]) -> list[str]:
  return [str(turn.get("value", "")) for turn in record.get("conversations", [])]


class RuleSftLabeller:
  """The item's "kind" field, else the keyword rule of the module docstring."""

  name = "rule-v1"

  def kinds(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
    return [self._kind(record) for record in records]

  @staticmethod
  def _kind(record: Mapping[str, Any]) -> str:
    if record.get("kind") is not None:
      return names.lookup({k: k for k in KINDS}, record["kind"], f"SFT kind of item {record.get('id')!r}")
    text = "\n".join(_turn_texts(record)).replace(chat.IMAGE_TOKEN, " ")
    if _REASONING_CUES.search(text):
      return "reasoning"
    if record.get("image") is not None and _PERCEPTION_CUES.search(text):
      return "perception"
    return "other"


SYSTEM_PROMPT = "\n".join([
    "You sort samples of visual instruction-tuning data into exactly one of three kinds:",
    "- perception: answering needs recognising what is visible: objects, attributes such as colour, size or "
    "shape, counting, positions and spatial relations, reading text in the image (OCR), describing a scene.",
    "- reasoning: answering needs multi-step inference beyond looking: math, science, logic, code, reading a "
    "chart or diagram to compute or compare, knowledge-based questions, explaining causes or consequences.",
    "- other: neither, e.g. chit-chat, creative writing, translation, plain language tasks.",
    "A sample marked [image] comes with an image. Judge what the questions ask for, not how long the "
    'answers are. Reply with only a JSON object {"kind": "perception"} (or "reasoning", or "other").',
])
REPAIR_PROMPT = 'That reply could not be read. Answer with only {"kind": "perception"|"reasoning"|"other"}.'
PROMPT_VERSION = "sft-v1-" + hashlib.sha256(f"{SYSTEM_PROMPT}\n{REPAIR_PROMPT}".encode()).hexdigest()[:10]


def _repair(messages: list[dict], answer: str) -> list[dict]:
  """The first question again, the unreadable reply, and the request to answer in the format."""
  return messages[:2] + [{"role": "assistant", "content": answer}, {"role": "user", "content": REPAIR_PROMPT}]


def parse_kind(answer: str) -> str:
  """The kind in a reply: a JSON {"kind": ...} anywhere in it, else exactly one kind word; else unparseable."""
  for match in re.finditer(r"\{[^{}]*\}", answer):
    try:
      value = json.loads(match.group(0))
    except json.JSONDecodeError:
      continue
    kind = str(value.get("kind", "")).strip().lower() if isinstance(value, dict) else ""
    if kind in KINDS:
      return kind
  found = {word.lower() for word in re.findall(r"\b(perception|reasoning|other)\b", answer, re.I)}
  if len(found) == 1:
    return found.pop()
  raise reply.UnparseableReplyError(f"No single kind in the reply {answer[:200]!r}; expected one of {KINDS}.")


@dataclasses.dataclass(frozen=True)
class EndpointSftConfig:
  endpoint: llm.LlmConfig
  send_images: bool = False  # True for a VLM endpoint: the image goes along as a data: URL
  max_chars: int = 6000  # conversation text sent per item (the start is kept)


class EndpointSftLabeller:
  """Asks a chat model for each record's kind, with LlmLabeller's retries, backoff and reply cache."""

  def __init__(self, config: EndpointSftConfig):
    self.config = config
    self._endpoint = llm.LlmLabeller(config.endpoint)
    self._model_key = config.endpoint.model + ("+images" if config.send_images else "")
    self.name = f"llm-{PROMPT_VERSION}:{self._model_key}"

  def kinds(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
    requests = [self._request(record) for record in records]
    keys = [label_cache.segment_key(PROMPT_VERSION, self._model_key, text + digest)
            for text, _, digest in requests]
    found = self._endpoint.cache.get_many(keys)
    todo = {key: content for key, (_, content, _) in zip(keys, requests) if key not in found}

    def keep(key: str, kind: str) -> None:
      found[key] = KINDS.index(kind)
      self._endpoint.cache.put(key, found[key], self._model_key, PROMPT_VERSION)

    failures = self._endpoint.ask_each({key: functools.partial(self._ask, content) for key, content in todo.items()},
                                       keep)
    if failures:
      raise llm.LabellingFailedError(llm.failure_summary(
          failures, len(todo), f"items got no kind from {self.config.endpoint.base_url}", "labelled"))
    return [KINDS[found[key]] for key in keys]

  def _request(self, record: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]], str]:
    """(the conversation text, the user message content, a digest of the image sent or "")."""
    roles = {"human": "USER", "user": "USER", "gpt": "ASSISTANT", "assistant": "ASSISTANT", "system": "SYSTEM"}
    lines = [f"{roles.get(str(t.get('from', '')).lower(), 'USER')}: {t.get('value', '')}"
             for t in record.get("conversations", [])]
    marker = "[image]\n" if record.get("image") is not None else "[no image]\n"
    text = (marker + "\n".join(lines))[:self.config.max_chars]
    content: list[dict[str, Any]] = [{"type": "text", "text": f"Sample:\n<<<\n{text}\n>>>"}]
    digest = ""
    if self.config.send_images and record.get("image") is not None:
      data, mime = _image_bytes(record["image"])
      digest = "\0" + hashlib.sha256(data).hexdigest()
      url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
      content.append({"type": "image_url", "image_url": {"url": url}})
    return text, content, digest

  def _ask(self, content: list[dict[str, Any]], rejections: list[Exception]) -> str:
    """The kind one chat completion gives, re-asking with the bad reply shown up to max_parse_attempts times."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]
    return self._endpoint.ask(messages, parse_kind, _repair, rejections)


def _image_bytes(image: Any) -> tuple[bytes, str]:
  if isinstance(image, (bytes, bytearray)):
    return bytes(image), "image/png" if bytes(image[:4]) == b"\x89PNG" else "image/jpeg"
  path = pathlib.Path(image)
  return path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/jpeg"


def _endpoint_from_config(config: ml_collections.ConfigDict) -> EndpointSftLabeller:
  own = {"send_images": False, "max_chars": 6000}
  llm_defaults = {f.name: f.default for f in dataclasses.fields(llm.LlmConfig)
                  if f.default is not dataclasses.MISSING}
  fields = base.config_fields(config, {**llm_defaults, **own}, required=("base_url", "model"))
  extra = {key: fields.pop(key) for key in own}
  return EndpointSftLabeller(EndpointSftConfig(llm.LlmConfig(**fields), **extra))


_FACTORIES = {"rule": lambda config: RuleSftLabeller(), "endpoint": _endpoint_from_config}


def make_sft_labeller(config: ml_collections.ConfigDict | Mapping[str, Any]) -> SftLabeller:
  """{"kind": "rule"} or {"kind": "endpoint", "base_url", "model", ...LlmConfig fields, "send_images"}."""
  if "kind" not in config:
    raise ValueError(f"SFT labeller config {dict(config)} has no 'kind'; set it to one of {sorted(_FACTORIES)}.")
  factory = names.lookup(_FACTORIES, config["kind"], "SFT labeller kind")
  return factory(ml_collections.ConfigDict(dict(config)))


def removal_variants(kinds: Sequence[str], seed: int = 42) -> dict[str, np.ndarray]:
  """The kept item indices (ascending) of each variant in VARIANTS; a removed share is rounded half up."""
  kinds = np.asarray(kinds)
  unknown = set(kinds.tolist()) - set(KINDS)
  if unknown:
    raise ValueError(f"Unknown SFT kinds {sorted(unknown)}; expected {KINDS}.")
  variants = {}
  for name, removals in VARIANTS.items():
    keep = np.ones(kinds.size, bool)
    for kind, fraction in removals.items():
      members = np.flatnonzero(kinds == kind)
      order = np.random.default_rng([seed, KINDS.index(kind)]).permutation(members)
      keep[order[:int(np.floor(fraction * members.size + 0.5))]] = False  # rounded half up
    variants[name] = np.flatnonzero(keep)
  return variants
