"""Per-token log-likelihoods of token documents under a Decoder: windows, packing, one jit-compiled scorer.

A document is a token array d[0..N); it is read after a BOS (id 0, the pad id, as the pre-training
pipeline starts every packed example), so token d[j] is predicted from BOS + d[:j]. `score_documents`
returns, per document, the log-probability of every token from `score_from` on and whether it was the
model's greedy (argmax) choice; perplexity, zero-shot log-likelihoods and LAMBADA's last word all read
those arrays.

Long documents (rolling windows): the scored tokens are cut into consecutive windows of at most
`stride` tokens; the window that ends at token b sees the up to `seq_len` tokens before b (BOS
included while it still fits). With the default stride = seq_len (lm-eval-harness' rolling
log-likelihood) every token is scored once and the first token of a window sees only the window's
start; a smaller stride gives each token at least seq_len - stride tokens of context, at
seq_len / stride times the compute. A document of up to seq_len scored tokens is one window that also
keeps as much preceding context as fits (zero-shot contexts are cut from the left, as lm-eval does).

Packing: windows are sorted by length and packed next-fit into rows of `seq_len` with segment ids
(attention never crosses windows) and positions restarting at 0, and rows are batched `batch_size` at
a time (the last batch padded), so the scorer compiles once for (batch_size, seq_len).

Sharding: inside `sharding.activation_sharding(mesh, rules)` the rows are split over the mesh's batch axes
(batch_size rounded up to a multiple of them) and the model runs on the mesh as its weights are placed
(`train.upstream.load_trained(run, mesh=mesh)`); outside it everything runs on one device.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from visual_priors.data.vocab import PAD_ID
from visual_priors.models import sharding
from visual_priors.models.decoder import Decoder

BOS_ID = PAD_ID


@dataclasses.dataclass(frozen=True)
class Scored:
  """One document's scores for its tokens d[score_from:]: log-probabilities and greedy (argmax) hits."""

  log_probs: np.ndarray  # float64 (N - score_from,)
  greedy: np.ndarray  # bool (N - score_from,)

  def total(self, last: int | None = None) -> float:
    """Summed log-probability of all scored tokens, or of the `last` ones."""
    return float(self.log_probs[-last:].sum() if last else self.log_probs.sum())


@dataclasses.dataclass(frozen=True)
class _Window:
  document: int
  context_start: int  # index into the BOS-prefixed stream of the first input token
  start: int  # first scored document token
  end: int  # one past the last scored document token

  @property
  def length(self) -> int:
    return self.end - self.context_start


def windows(length: int, score_from: int, seq_len: int, stride: int, document: int = 0) -> list[_Window]:
  """The windows that score tokens [score_from, length) of a document (see the module docstring)."""
  if not 0 < stride <= seq_len:
    raise ValueError(f"stride={stride} must be in [1, seq_len={seq_len}].")
  out, start = [], score_from
  while start < length:
    end = length if length - start <= seq_len and start == score_from else min(start + stride, length)
    out.append(_Window(document, max(0, end - seq_len), start, end))
    start = end
  return out


def _token_scores(model: Decoder, inputs_bt: jax.Array, targets_bt: jax.Array, segments_bt: jax.Array,
                  positions_bt: jax.Array) -> tuple[jax.Array, jax.Array]:
  logits = model(inputs_bt, positions_bt=positions_bt, segment_ids_bt=segments_bt).astype(jnp.float32)
  picked = jnp.take_along_axis(logits, targets_bt[..., None], axis=-1)[..., 0]
  log_probs = picked - jax.nn.logsumexp(logits, axis=-1)
  return log_probs, jnp.argmax(logits, axis=-1) == targets_bt


@functools.lru_cache(maxsize=16)
def _compiled_scorer(graphdef: nnx.GraphDef, mesh: Any, rules: sharding.LogicalRules):
  """A jitted `(state, inputs, targets, segments, positions) -> (log_probs, greedy)`; on a mesh its activations
  are constrained like the training step's and its outputs come back replicated."""

  def score(state, *arrays):
    model = nnx.merge(graphdef, state)
    if mesh is None:
      return _token_scores(model, *arrays)
    with sharding.activation_sharding(mesh, rules):
      return _token_scores(model, *arrays)

  return jax.jit(score, out_shardings=None if mesh is None else sharding.replicated(mesh))


def _pack(items: Sequence[_Window], seq_len: int) -> list[list[_Window]]:
  """Next-fit packing of windows (longest first) into rows of seq_len tokens."""
  rows: list[list[_Window]] = []
  used = seq_len
  for item in sorted(items, key=lambda w: -w.length):
    if used + item.length > seq_len:
      rows.append([])
      used = 0
    rows[-1].append(item)
    used += item.length
  return rows


def score_documents(model: Decoder, documents: Sequence[np.ndarray], *, seq_len: int, batch_size: int = 8,
                    score_from: Sequence[int] | None = None, stride: int | None = None) -> list[Scored]:
  """Scores of each document's tokens from `score_from[i]` (default 0) on; see the module docstring."""
  if seq_len < 2 or batch_size < 1:
    raise ValueError(f"seq_len={seq_len} must be >= 2 and batch_size={batch_size} >= 1.")
  stride = seq_len if stride is None else stride
  starts = [0] * len(documents) if score_from is None else list(score_from)
  if len(starts) != len(documents):
    raise ValueError(f"{len(starts)} score_from values for {len(documents)} documents.")
  vocab_size = model.config.vocab_size
  streams, work = [], []
  for index, (document, start) in enumerate(zip(documents, starts)):
    document = np.asarray(document, np.int64)
    if document.ndim != 1 or not 0 <= start < len(document):
      raise ValueError(f"Document {index}: score_from={start} outside its {len(document)} tokens (a document "
                       "needs at least one token to score).")
    if document.min() < 0 or document.max() >= vocab_size:
      raise ValueError(f"Document {index} has token ids outside [0, {vocab_size}) (the model's vocabulary); "
                       "was it encoded with another tokenizer?")
    streams.append(np.concatenate([[BOS_ID], document]))
    work += windows(len(document), start, seq_len, stride, index)
  batch_size = sharding.batch_multiple(batch_size)
  graphdef, state = nnx.split(model)
  scorer = _compiled_scorer(graphdef, sharding.active_mesh(), sharding.active_rules())
  log_probs = [np.zeros(len(s) - 1 - start) for s, start in zip(streams, starts)]
  greedy = [np.zeros(len(s) - 1 - start, bool) for s, start in zip(streams, starts)]
  rows = _pack(work, seq_len)
  for first in range(0, len(rows), batch_size):
    chunk = rows[first:first + batch_size]
    arrays = {name: np.zeros((batch_size, seq_len), np.int32) for name in ("inputs", "targets", "segments",
                                                                            "positions")}
    for r, row in enumerate(chunk):
      offset = 0
      for s, window in enumerate(row, 1):
        stream, n = streams[window.document], window.length
        arrays["inputs"][r, offset:offset + n] = stream[window.context_start:window.end]
        arrays["targets"][r, offset:offset + n] = stream[window.context_start + 1:window.end + 1]
        arrays["segments"][r, offset:offset + n] = s
        arrays["positions"][r, offset:offset + n] = np.arange(n)
        offset += n
    scores, hits = scorer(state, *(sharding.put_batch(arrays[k]) for k in ("inputs", "targets", "segments",
                                                                            "positions")))
    scores, hits = np.asarray(scores, np.float64), np.asarray(hits)
    for r, row in enumerate(chunk):
      offset = 0
      for window in row:
        # Row offset of document token j is offset + (j - context_start), as the input there is token j - 1.
        lo = offset + window.start - window.context_start
        hi = offset + window.end - window.context_start
        into = slice(window.start - starts[window.document], window.end - starts[window.document])
        log_probs[window.document][into] = scores[r, lo:hi]
        greedy[window.document][into] = hits[r, lo:hi]
        offset += window.length
  return [Scored(lp, g) for lp, g in zip(log_probs, greedy)]


def split_continuation(encode, context: str, continuation: str) -> tuple[list[int], int]:
  """(tokens of context + continuation, index of the first continuation token), lm-eval-harness style.

  The whole string is encoded once, so the continuation's tokens are those the model reads in place;
  trailing spaces of the context move to the continuation. The split is the longest common prefix of
  the whole encoding and the context's own encoding (equal to the context's length unless a token
  spans the boundary). Raises if the continuation adds no token.
  """
  stripped = context.rstrip(" ")
  continuation = context[len(stripped):] + continuation
  whole = list(encode(stripped + continuation))
  context_ids = list(encode(stripped)) if stripped else []
  split = 0
  while split < min(len(context_ids), len(whole)) and context_ids[split] == whole[split]:
    split += 1
  if split >= len(whole):
    raise ValueError(f"Continuation {continuation!r} adds no token after context {stripped[-60:]!r}.")
  return whole, split
