"""The LLaVA-v1-style chat template: conversations -> token ids, image slots and assistant-only loss.

Layout (plain-text roles, no vocabulary change; `<image>` becomes `num_visual_tokens` slots):

    {system} USER: <image>\\n{question} ASSISTANT: {answer}</s> USER: {question 2} ASSISTANT: {answer 2}</s>

Each text piece (the prompt before the image, the prompt after it up to "ASSISTANT:", each answer) is
tokenized on its own and the ids are concatenated, so the tokens of an answer are exactly
`encode(answer)`: nothing depends on re-tokenizing the joined string, which is how LLaVA-style code
gets "tokenization mismatch" samples whose loss is silently 0. SentencePiece's dummy prefix turns the
boundary between two pieces into one space. Only assistant answers and the EOS closing each of them
carry loss; image slots hold token id 0 and are marked separately.

Feature alignment (seqio decoder features, one conversation per row): `decoder_target_tokens` is the
sequence, `decoder_input_tokens` the sequence shifted right behind a BOS of 0, and
`decoder_image_mask` marks the positions of `decoder_input_tokens` that are image slots: the positions
whose input embeddings the MLLM replaces with visual tokens, in order.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from visual_priors.data import vocab

IMAGE_TOKEN = "<image>"
DEFAULT_SYSTEM_PROMPT = ("A chat between a curious user and an artificial intelligence assistant. "
                         "The assistant gives helpful, detailed, and polite answers to the user's questions.")
# The system prompts an experiment names (adapt.system_prompt): LLaVA-v1's, or none (shorter rows, for CPU demos).
SYSTEM_PROMPTS = {"llava-v1": DEFAULT_SYSTEM_PROMPT, "none": ""}
_USER_ROLES = ("human", "user")
_ASSISTANT_ROLES = ("gpt", "assistant")


class NoSupervisedTokensError(ValueError):
  """A training conversation has no token left that carries loss (every answer truncated away, or none)."""


@dataclasses.dataclass(frozen=True)
class ChatConfig:
  num_visual_tokens: int = 576
  system_prompt: str = DEFAULT_SYSTEM_PROMPT  # "" = none; a conversation's own "system" turn overrides it
  user_role: str = "USER"
  assistant_role: str = "ASSISTANT"

  def __post_init__(self):
    if self.num_visual_tokens < 1:
      raise ValueError(f"num_visual_tokens={self.num_visual_tokens} must be >= 1.")


@dataclasses.dataclass(frozen=True)
class EncodedChat:
  """One tokenized conversation, before truncation and shifting.

  tokens: int32 (n,), image slots hold 0. loss_mask: bool (n,), the assistant answers and their EOS.
  image_slots: bool (n,). assistant_spans: [start, end) token range of each answer, its EOS included.
  """

  tokens: np.ndarray
  loss_mask: np.ndarray
  image_slots: np.ndarray
  assistant_spans: tuple[tuple[int, int], ...]

  def __len__(self) -> int:
    return int(self.tokens.size)


class LazyProcessor:
  """The SentencePiece processor of a vocabulary file, loaded on first use; pickles as its path (grain workers)."""

  def __init__(self, vocab_path: str | pathlib.Path):
    self.vocab_path = pathlib.Path(vocab_path)
    self._processor = None

  def __getstate__(self) -> dict[str, Any]:
    return {**self.__dict__, "_processor": None}

  def get(self):
    if self._processor is None:
      self._processor = vocab.load_processor(self.vocab_path)
    return self._processor


class ChatTemplate:
  """Tokenizes conversations with the project's SentencePiece vocabulary (loaded lazily; picklable)."""

  def __init__(self, vocab_path: str | pathlib.Path, config: ChatConfig = ChatConfig()):
    self.config = config
    self._lazy = LazyProcessor(vocab_path)

  @property
  def processor(self):
    return self._lazy.get()

  def encode(self, conversations: Sequence[Mapping[str, str]], *, with_image: bool,
             sample_id: str = "") -> EncodedChat:
    """A training conversation (alternating user/assistant turns, ending with an answer).

    `with_image` expands the one `<image>` of the first user turn (prepended when the turn has none)
    into image slots; without it the marker is dropped and no slot is made (text-only and "blind" rows).
    """
    system, turns = _split_turns(conversations, sample_id)
    if not turns or turns[-1][0] != "assistant":
      raise ValueError(f"Conversation {sample_id!r} must end with an assistant turn to be trained on; "
                       f"it has roles {[role for role, _ in turns]}.")
    return self._encode(system, turns, with_image, sample_id)

  def encode_prompt(self, conversations: Sequence[Mapping[str, str]], *, with_image: bool,
                    sample_id: str = "") -> EncodedChat:
    """A generation prompt: the conversation so far, ending with a user turn, then "ASSISTANT:"."""
    system, turns = _split_turns(conversations, sample_id)
    if not turns or turns[-1][0] != "user":
      raise ValueError(f"Prompt {sample_id!r} must end with a user turn; it has roles "
                       f"{[role for role, _ in turns]}.")
    return self._encode(system, turns, with_image, sample_id)

  def render(self, conversations: Sequence[Mapping[str, str]]) -> str:
    """The template as text (image marker and EOS shown as `<image>` and `</s>`), for reading and logs."""
    system, turns = _split_turns(conversations, "")
    system = self.config.system_prompt if system is None else system
    parts = [system] if system else []
    for role, text in turns:
      if role == "user":
        parts.append(f"{self.config.user_role}: {text} {self.config.assistant_role}:")
      else:
        parts.append(f"{text}</s>")
    return " ".join(parts)

  def _encode(self, system: str | None, turns: list[tuple[str, str]], with_image: bool,
              sample_id: str) -> EncodedChat:
    system = self.config.system_prompt if system is None else system
    user, assistant = f"{self.config.user_role}:", f" {self.config.assistant_role}:"
    pieces: list[tuple[str, str]] = []  # (kind, text) with kind in prompt | image | answer
    for index, (role, text) in enumerate(turns):
      if role == "assistant":
        pieces.append(("answer", text))
        continue
      head = f"{system} {user}" if index == 0 and system else user
      before, after = _split_image(text, first_user_turn=index == 0, with_image=with_image, sample_id=sample_id)
      if after is None:
        pieces.append(("prompt", f"{head} {before}{assistant}"))
      else:  # piece boundaries read as one space (SentencePiece's dummy prefix)
        pieces += [("prompt", f"{head} {before}" if before.strip() else head), ("image", ""),
                   ("prompt", after + assistant if after.strip() else assistant.lstrip())]

    ids: list[np.ndarray] = []
    loss: list[np.ndarray] = []
    spans: list[tuple[int, int]] = []
    length = 0
    for kind, text in pieces:
      if kind == "image":
        piece = np.zeros(self.config.num_visual_tokens, np.int32)
      else:
        piece = np.asarray(self.processor.encode(text), np.int32)
        if kind == "answer":
          piece = np.append(piece, np.int32(vocab.EOS_ID))
          spans.append((length, length + piece.size))
      ids.append(piece)
      loss.append(np.full(piece.size, kind == "answer"))
      length += piece.size
    tokens = np.concatenate(ids).astype(np.int32)
    slots = np.concatenate([np.full(p.size, k == "image") for p, (k, _) in zip(ids, pieces)])
    return EncodedChat(tokens, np.concatenate(loss), slots, tuple(spans))


def _split_turns(conversations: Sequence[Mapping[str, str]], sample_id: str) -> tuple[str | None, list]:
  """(system prompt override or None, [(user|assistant, text)]) with alternation checked."""
  system = None
  turns: list[tuple[str, str]] = []
  for position, turn in enumerate(conversations):
    if not isinstance(turn, Mapping) or "from" not in turn or "value" not in turn:
      raise ValueError(f"Conversation {sample_id!r} turn {position} is {turn!r}; expected "
                       "{'from': 'human'|'gpt'|'system', 'value': str}.")
    speaker, text = str(turn["from"]).lower(), turn["value"]
    if not isinstance(text, str):
      raise ValueError(f"Conversation {sample_id!r} turn {position} has a non-text value {text!r}.")
    if speaker == "system" and position == 0:
      system = text
      continue
    if speaker in _USER_ROLES:
      role = "user"
    elif speaker in _ASSISTANT_ROLES:
      role = "assistant"
    else:
      raise ValueError(f"Conversation {sample_id!r} turn {position} is from {turn['from']!r}; expected one of "
                       f"{_USER_ROLES + _ASSISTANT_ROLES} (or 'system' as the first turn).")
    expected = "user" if len(turns) % 2 == 0 else "assistant"
    if role != expected:
      raise ValueError(f"Conversation {sample_id!r} turn {position} is a {role} turn where a {expected} turn "
                       "was expected: turns must alternate user, assistant, ... starting with the user.")
    if role == "assistant" and IMAGE_TOKEN in text:
      raise ValueError(f"Conversation {sample_id!r} has {IMAGE_TOKEN} in an assistant turn ({position}); "
                       "the image goes in the first user turn.")
    turns.append((role, text))
  return system, turns


def _split_image(text: str, *, first_user_turn: bool, with_image: bool,
                 sample_id: str) -> tuple[str, str | None]:
  """(text before the image, text after it or None when this turn holds no image slot)."""
  count = text.count(IMAGE_TOKEN)
  if count > 1 or (count and not first_user_turn):
    raise ValueError(f"Conversation {sample_id!r} has {IMAGE_TOKEN} {count} time(s) in a user turn "
                     f"{'after the first' if not first_user_turn else ''}; one image per conversation, "
                     "marked at most once in the first user turn, is supported.")
  if not with_image:
    for marker in (IMAGE_TOKEN + "\n", "\n" + IMAGE_TOKEN, IMAGE_TOKEN):
      text = text.replace(marker, "")
    return text, None
  if not first_user_turn:
    return text, None
  if not count:
    return "", text  # LLaVA's convention: an unmarked image goes first
  before, after = text.split(IMAGE_TOKEN)
  return before, after


def decoder_features(encoded: EncodedChat, seq_len: int, *, sample_id: str = "") -> dict[str, np.ndarray]:
  """One row of seqio decoder features (truncated/padded to `seq_len`) plus `decoder_image_mask`.

  Raises NoSupervisedTokensError when no loss-carrying token survives truncation.
  """
  n = min(len(encoded), seq_len)
  supervised = int(encoded.loss_mask[:n].sum())
  if supervised == 0:
    total = int(encoded.loss_mask.sum())
    cause = (f"all {total} supervised tokens lie beyond seq_len={seq_len} (the conversation has "
             f"{len(encoded)} tokens); raise seq_len or drop the sample" if total else
             "it has no assistant tokens at all")
    raise NoSupervisedTokensError(f"Conversation {sample_id!r} would train with loss 0: {cause}.")
  targets = np.zeros(seq_len, np.int32)
  targets[:n] = encoded.tokens[:n]
  slots = np.zeros(seq_len, np.int32)
  slots[:n] = encoded.image_slots[:n]
  inputs, image_mask = np.zeros(seq_len, np.int32), np.zeros(seq_len, np.int32)
  inputs[1:], image_mask[1:] = targets[:-1], slots[:-1]  # shifted right behind BOS 0, as seqio does
  weights = np.zeros(seq_len, np.int32)
  weights[:n] = encoded.loss_mask[:n]
  return {
      "decoder_input_tokens": inputs,
      "decoder_target_tokens": targets,
      "decoder_segment_ids": (np.arange(seq_len) < n).astype(np.int32),
      "decoder_positions": np.where(np.arange(seq_len) < n, np.arange(seq_len), 0).astype(np.int32),
      "decoder_loss_weights": weights,
      "decoder_image_mask": image_mask,
  }


def prompt_inputs(encoded: EncodedChat) -> tuple[np.ndarray, np.ndarray]:
  """(input tokens, image mask) int32 (n + 1,) of a generation prompt: BOS 0, then the prompt.

  The logits at the last position predict the first answer token.
  """
  tokens = np.concatenate([[0], encoded.tokens]).astype(np.int32)
  mask = np.concatenate([[False], encoded.image_slots]).astype(np.int32)
  return tokens, mask
