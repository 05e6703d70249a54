"""Multiple-choice accuracy of an MLLM by log-likelihood: each candidate answer scored as the assistant's reply.

A question becomes one chat row per candidate: the user turn is `<image>\\n` + the prompt, the assistant
turn the candidate; the candidate's score is the summed log-probability of its answer tokens and closing
EOS (the tokens the chat template supervises), and the prediction is the best-scoring candidate.

Candidates ("answer_with"):
  * "letter" (default): the option letters "A", "B", ... with the lettered options in the prompt, as the
    instruction data asks multiple-choice questions ("Answer with the option's letter ..."); this is the
    answer-letter likelihood.
  * "text": the option texts themselves (cloze-style scoring, no letters needed).
Yes/no questions (no choices) score "Yes" against "No". The prompt is the row's own "prompt" when it has
one (the generated evaluation rows carry the exact training format), else the question formatted as the
instruction data formats it (`gen_questions.format_prompt`).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from visual_priors.data import cache
from visual_priors.data.multimodal import chat
from visual_priors.data.multimodal.gen_questions import format_prompt
from visual_priors.data.multimodal.pipeline import load_image
from visual_priors.models import sharding
from visual_priors.models.mllm import MLLM

ANSWER_MODES = ("letter", "text")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_YES_NO = ("Yes", "No")


@dataclasses.dataclass(frozen=True)
class Question:
  """One question, ready to score: the candidates and the index of the correct one."""

  id: str
  image: Any  # a path, encoded bytes, a uint8 array, or None for a text-only question
  prompt: str
  candidates: tuple[str, ...]
  answer_index: int
  group: str | None = None


def to_question(row: Mapping[str, Any], answer_with: str = "letter") -> Question:
  """A Question from an evaluation row {"id"?, "image", "question", "choices" (list or null), "answer", ...}.

  The answer is the correct choice's text (or its letter); rows without choices must be yes/no.
  """
  if answer_with not in ANSWER_MODES:
    raise ValueError(f"answer_with={answer_with!r}; choose one of {ANSWER_MODES}.")
  sample_id = str(row.get("id", ""))
  choices, answer = row.get("choices"), str(row["answer"])
  if choices is None:
    if answer.lower() not in ("yes", "no"):
      raise ValueError(f"Question {sample_id!r} has no choices and answer {answer!r}; only yes/no questions "
                       "can be scored without choices.")
    candidates, index = _YES_NO, 0 if answer.lower() == "yes" else 1
    prompt = row.get("prompt") or format_prompt(row["question"], None)
  else:
    choices = [str(c) for c in choices]
    if len(choices) > len(_LETTERS) or len(choices) < 2:
      raise ValueError(f"Question {sample_id!r} has {len(choices)} choices; 2 to {len(_LETTERS)} are supported.")
    if answer in choices:
      index = choices.index(answer)
    elif len(answer) == 1 and answer.upper() in _LETTERS[:len(choices)]:
      index = _LETTERS.index(answer.upper())
    else:
      raise ValueError(f"Question {sample_id!r}: answer {answer!r} is neither a choice nor a choice's letter "
                       f"(choices {choices}).")
    if answer_with == "letter":
      candidates = tuple(_LETTERS[:len(choices)])
      prompt = row.get("prompt") or format_prompt(row["question"], choices)
    else:
      candidates = tuple(choices)
      prompt = format_prompt(row["question"], None)
  return Question(id=sample_id, image=row.get("image"), prompt=prompt, candidates=tuple(candidates),
                  answer_index=index, group=row.get("group"))


def read_questions(path: str | pathlib.Path, answer_with: str = "letter") -> list[Question]:
  """Questions from a JSONL file of evaluation rows; relative image paths resolve against its folder."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"No evaluation file at {path}.")
  questions = []
  for row in cache.iter_jsonl(path, "replace it with an intact copy (or regenerate the data set it came from)"):
    if isinstance(row.get("image"), str):
      row["image"] = str((path.parent / row["image"]).resolve())
    questions.append(to_question(row, answer_with))
  return questions


def _candidate_rows(questions: Sequence[Question], template: chat.ChatTemplate, seq_len: int,
                    image_size: int) -> Iterable[dict[str, np.ndarray]]:
  for question in questions:
    with_image = question.image is not None
    image = load_image(question.image, image_size) if with_image else np.zeros((image_size,) * 2 + (3,), np.float32)
    user = {"from": "human", "value": f"{chat.IMAGE_TOKEN}\n{question.prompt}" if with_image else question.prompt}
    for candidate in question.candidates:
      encoded = template.encode([user, {"from": "gpt", "value": candidate}], with_image=with_image,
                                sample_id=question.id)
      if len(encoded) > seq_len:
        raise ValueError(f"Question {question.id!r} with answer {candidate!r} takes {len(encoded)} tokens, more "
                         f"than seq_len={seq_len}; raise seq_len to score it.")
      row = chat.decoder_features(encoded, seq_len, sample_id=question.id)
      row["images"] = image
      yield row


def _answer_log_likelihood(model: MLLM, batch: dict[str, jax.Array]) -> jax.Array:
  """Per row: the summed log-probability of the loss-weighted target tokens."""
  logits = model(batch["images"], batch["decoder_input_tokens"], positions_bt=batch["decoder_positions"],
                 segment_ids_bt=batch["decoder_segment_ids"], image_mask_bt=batch["decoder_image_mask"])
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  target = jnp.take_along_axis(log_probs, batch["decoder_target_tokens"][..., None], axis=-1)[..., 0]
  return jnp.sum(target * batch["decoder_loss_weights"], axis=-1)


@functools.lru_cache(maxsize=16)
def _compiled_scorer(graphdef: nnx.GraphDef, mesh: Any, rules: sharding.LogicalRules):
  """A jitted `(state, batch) -> per-row log-likelihood`; on a mesh its activations are constrained like the
  training step's and its output comes back replicated."""

  def score(state, batch):
    model = nnx.merge(graphdef, state)
    if mesh is None:
      return _answer_log_likelihood(model, batch)
    with sharding.activation_sharding(mesh, rules):
      return _answer_log_likelihood(model, batch)

  return jax.jit(score, out_shardings=None if mesh is None else sharding.replicated(mesh))


def candidate_scores(model: MLLM, questions: Sequence[Question], template: chat.ChatTemplate, *, seq_len: int,
                     batch_size: int = 32) -> list[np.ndarray]:
  """Per question, the log-likelihood of each candidate (rows batched; the last batch padded and trimmed).

  Inside `sharding.activation_sharding(mesh, rules)` the rows are split over the mesh's batch axes (batch_size
  rounded up to a multiple of them) and the model runs on the mesh as its weights are placed.
  """
  image_size = model.config.vision.image_size
  batch_size = sharding.batch_multiple(batch_size)
  graphdef, state = nnx.split(model)
  scorer = _compiled_scorer(graphdef, sharding.active_mesh(), sharding.active_rules())
  scores: list[float] = []
  pending: list[dict[str, np.ndarray]] = []

  def flush() -> None:
    count = len(pending)
    pending.extend([pending[0]] * (batch_size - count))
    batch = {name: sharding.put_batch(np.stack([row[name] for row in pending])) for name in pending[0]}
    scores.extend(np.asarray(scorer(state, batch))[:count].tolist())
    pending.clear()

  for row in _candidate_rows(questions, template, seq_len, image_size):
    pending.append(row)
    if len(pending) == batch_size:
      flush()
  if pending:
    flush()
  result, start = [], 0
  for question in questions:
    result.append(np.asarray(scores[start:start + len(question.candidates)]))
    start += len(question.candidates)
  return result


def evaluate(model: MLLM, questions: Sequence[Question], template: chat.ChatTemplate, *, seq_len: int,
             batch_size: int = 32) -> dict[str, Any]:
  """Accuracy (and the chance level: the mean of 1 / candidates) over `questions`, overall and per group."""
  if not questions:
    raise ValueError("No questions to evaluate.")
  scores = candidate_scores(model, questions, template, seq_len=seq_len, batch_size=batch_size)
  correct = [int(np.argmax(s)) == q.answer_index for q, s in zip(questions, scores)]
  by_group: dict[str, list[bool]] = {}
  for question, hit in zip(questions, correct):
    by_group.setdefault(question.group or "all", []).append(hit)
  return {
      "accuracy": float(np.mean(correct)),
      "chance": float(np.mean([1 / len(q.candidates) for q in questions])),
      "count": len(questions),
      "groups": {group: float(np.mean(hits)) for group, hits in sorted(by_group.items())},
      "predictions": [q.candidates[int(np.argmax(s))] for q, s in zip(questions, scores)],
  }
