"""Language evaluation: windowed/packed log-likelihoods against a plain loop, perplexities, the task runner."""

from __future__ import annotations

import json
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.data import categories, vocab
from visual_priors.eval import language, loglik
from visual_priors.models import scales
from visual_priors.models.decoder import Decoder
from visual_priors.names import UnknownNameError
from visual_priors.train import config as config_lib, pretrain, upstream

VOCAB = 50


def _decoder(vocab_size: int = VOCAB, seed: int = 0) -> Decoder:
  return Decoder(scales.get_scale("nano", vocab_size=vocab_size, attention_impl="xla"), rngs=nnx.Rngs(seed))


def _constant(vocab_size: int) -> Decoder:
  """A decoder whose logits are all zero: every token has probability 1 / vocab_size."""
  model = _decoder(vocab_size)
  model.lm_head.kernel[...] = jnp.zeros_like(model.lm_head.kernel[...])
  return model


@pytest.fixture(scope="module")
def model() -> Decoder:
  return _decoder()


@nnx.jit
def _logits(model: Decoder, tokens_bt):
  return model(tokens_bt)


def _plain_log_probs(model: Decoder, context: np.ndarray, width: int = 24) -> np.ndarray:
  """log-softmax of the next token after `context` (one unpacked row; causal, so right padding is inert)."""
  padded = np.zeros((1, width), np.int32)
  padded[0, :len(context)] = context
  logits = np.asarray(_logits(model, jnp.asarray(padded)))[0, len(context) - 1].astype(np.float64)
  return logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()


@pytest.mark.parametrize("length,score_from,seq_len,stride", [(5, 0, 8, 8), (20, 0, 8, 8), (20, 7, 8, 3),
                                                              (9, 8, 8, 8), (30, 2, 8, 1)])
def test_windows_cover_each_scored_token_once_within_seq_len(length, score_from, seq_len, stride):
  windows = loglik.windows(length, score_from, seq_len, stride)
  covered = [j for w in windows for j in range(w.start, w.end)]
  assert covered == list(range(score_from, length))
  assert all(w.length <= seq_len and w.context_start <= w.start for w in windows)
  if length - score_from <= seq_len:  # one window keeping as much context as fits
    assert len(windows) == 1 and windows[0].context_start == max(0, length - seq_len)
  with pytest.raises(ValueError, match="stride"):
    loglik.windows(length, score_from, seq_len, seq_len + 1)


def test_packed_scores_equal_a_plain_loop_over_contexts(model):
  rng = np.random.default_rng(0)
  documents = [rng.integers(1, VOCAB, n) for n in (3, 12, 5, 16, 1, 9)]
  starts = [0, 4, 2, 0, 0, 8]
  scored = loglik.score_documents(model, documents, seq_len=16, batch_size=2, score_from=starts)
  for document, start, result in zip(documents, starts, scored):
    stream = np.concatenate([[loglik.BOS_ID], document])
    expected = [_plain_log_probs(model, stream[:j + 1]) for j in range(start, len(document))]
    np.testing.assert_allclose(result.log_probs, [e[document[j]] for e, j in zip(expected, range(start, 99))],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(result.greedy, [e.argmax() == document[j]
                                                  for e, j in zip(expected, range(start, 99))])
    assert result.total() == pytest.approx(result.log_probs.sum())
    assert result.total(last=1) == pytest.approx(result.log_probs[-1])


def test_rolling_windows_with_stride_one_give_every_token_seq_len_of_context(model):
  document = np.random.default_rng(1).integers(1, VOCAB, 21)
  seq_len = 6
  [result] = loglik.score_documents(model, [document], seq_len=seq_len, batch_size=4, stride=1)
  stream = np.concatenate([[loglik.BOS_ID], document])
  for j, value in enumerate(result.log_probs):
    context = stream[max(0, j + 1 - seq_len):j + 1]
    assert value == pytest.approx(_plain_log_probs(model, context)[document[j]], abs=1e-4)
  # Disjoint windows (stride = seq_len) score the same tokens, the first of each window with less context.
  [disjoint] = loglik.score_documents(model, [document], seq_len=seq_len)
  assert disjoint.log_probs.shape == result.log_probs.shape
  np.testing.assert_allclose(disjoint.log_probs[:seq_len], result.log_probs[:seq_len], atol=1e-4)


def test_score_documents_refuses_bad_input(model):
  with pytest.raises(ValueError, match="outside"):
    loglik.score_documents(model, [np.array([1, 2])], seq_len=8, score_from=[2])
  with pytest.raises(ValueError, match="vocabulary"):
    loglik.score_documents(model, [np.array([1, VOCAB])], seq_len=8)
  with pytest.raises(ValueError, match="score_from values"):
    loglik.score_documents(model, [np.array([1, 2])], seq_len=8, score_from=[0, 0])


def test_split_continuation_matches_separate_encodings(small_vocab):
  processor = vocab.load_processor(small_vocab)
  whole, split = loglik.split_continuation(processor.encode, "The opposite of hot is", " cold")
  assert whole == processor.encode("The opposite of hot is cold")
  assert whole[:split] == processor.encode("The opposite of hot is") and split < len(whole)
  # A trailing space of the context moves to the continuation.
  assert loglik.split_continuation(processor.encode, "The opposite of hot is ", "cold") == (whole, split)
  with pytest.raises(ValueError, match="adds no token"):
    loglik.split_continuation(processor.encode, "Answer:", "")


def test_constant_logits_give_perplexity_equal_to_the_vocabulary_size(small_store, small_vocab, tmp_path):
  size = vocab.load_processor(small_vocab).get_piece_size()
  constant = _constant(size)
  rows = language.store_perplexity(constant, small_store, seq_len=64, batch_size=4, limit=6, log=lambda _: None)
  names = {r["benchmark"] for r in rows}
  assert {f"val/{s}" for s in small_store.sources} <= names
  assert all(r["metric"] == "perplexity" and r["value"] == pytest.approx(size, rel=1e-4) for r in rows)
  per_source = {r["benchmark"]: r["count"] for r in rows if r["group"] == "source"}
  assert per_source == {f"val/{s}": int(small_store.lengths(s, "validation")[:6].sum()) for s in small_store.sources}
  categories_seen = {r["benchmark"] for r in rows if r["group"] == "category"}
  assert categories_seen <= {f"val/cat:{c}" for c in categories.CATEGORIES} and categories_seen

  (tmp_path / "wiki.test.raw").write_text(" = Apple = \n Apples are red @-@ green .\n = = Taste = = \n Sweet .\n"
                                          " = Pear = \n Pears are green , too .\n")
  [wiki] = language.wikitext_perplexity(constant, vocab.load_processor(small_vocab).encode,
                                        tmp_path / "wiki.test.raw", seq_len=64)
  assert wiki["value"] == pytest.approx(size, rel=1e-4)
  (tmp_path / "lambada.jsonl").write_text(json.dumps({"text": "the cat sat on the mat"}) + "\n")
  lam = language.lambada(constant, vocab.load_processor(small_vocab).encode, tmp_path / "lambada.jsonl", seq_len=64)
  assert lam[0]["value"] == pytest.approx(size, rel=1e-4)
  assert lam[1] == {"benchmark": "lambada", "group": None, "metric": "accuracy", "value": 0.0, "count": 1}


def test_wikitext_articles_split_at_top_level_headings_and_undo_spacing():
  text = " = Apple = \n\n Apples are red @-@ green , mostly .\n = = Taste = = \n Sweet .\n = Pear = \n Pears .\n"
  articles = language.wikitext_articles(text)
  assert len(articles) == 2
  assert articles[0].startswith("= Apple =") and "red-green, mostly." in articles[0] and "= = Taste" in articles[0]
  assert articles[1] == "= Pear = \n Pears."


def test_lambada_accuracy_counts_a_last_word_whose_tokens_are_all_greedy(small_vocab, tmp_path, monkeypatch):
  processor = vocab.load_processor(small_vocab)
  texts = ["the cat sat on the mat", "one two three four"]
  (tmp_path / "lambada.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))

  def fake_scores(model, documents, **kwargs):
    # Every token greedy in the first passage; in the second, all but the last word's final token.
    out = []
    for i, d in enumerate(documents):
      greedy = np.ones(len(d), bool)
      greedy[-1] = i == 0
      out.append(loglik.Scored(np.full(len(d), -math.log(2.0)), greedy))
    return out

  monkeypatch.setattr(loglik, "score_documents", fake_scores)
  ppl, accuracy = language.lambada(None, processor.encode, tmp_path / "lambada.jsonl", seq_len=16)
  assert ppl["value"] == pytest.approx(2.0) and ppl["count"] == sum(len(processor.encode(t)) for t in texts)
  assert accuracy["value"] == 50.0 and accuracy["count"] == 2


def _write_task_files(root: pathlib.Path) -> None:
  (root / "piqa").mkdir(parents=True)
  (root / "piqa" / "validation.jsonl").write_text(
      "".join(json.dumps({"goal": f"Open jar {i}", "sol1": "twist the lid", "sol2": "eat the lid", "label": 0}) + "\n"
              for i in range(3)))
  (root / "wiki.test.raw").write_text(" = Apple = \n Apples are red .\n")


def test_evaluate_language_rows_means_and_missing_tasks(small_store, small_vocab, tmp_path):
  _write_task_files(tmp_path)
  size = vocab.load_processor(small_vocab).get_piece_size()
  model = _decoder(size)
  lines = []
  rows = language.evaluate_language(model, small_vocab, store=small_store, data_root=tmp_path, seq_len=64,
                                    batch_size=4, limit=5, log=lines.append)
  by = {(r["benchmark"], r["metric"]): r for r in rows}
  assert ("piqa", "accuracy") in by and ("piqa", "accuracy_norm") in by and by["piqa", "accuracy"]["count"] == 3
  assert ("wikitext", "perplexity") in by and ("lambada", "perplexity") not in by
  for name in ("arithmetic", "object_colour", "antonyms", "counting"):
    assert by[f"builtin/{name}", "accuracy"]["count"] == 5
  assert by["language", "perplexity_mean"]["value"] == by["wikitext", "perplexity"]["value"]
  assert by["language", "zero_shot_mean"] == {"benchmark": "language", "group": None, "metric": "zero_shot_mean",
                                              "value": by["piqa", "accuracy"]["value"], "count": 1}
  builtin = [by[f"builtin/{n}", "accuracy"]["value"] for n in language.BUILTIN_TASKS]
  assert by["language", "zero_shot_builtin_mean"]["value"] == pytest.approx(np.mean(builtin))
  [missing] = [line for line in lines if "not scored for want of data" in line]  # one line for all of them
  assert "lambada" in missing and "hellaswag" in missing and "wikitext" not in missing
  assert all(r["value"] > 0 for r in rows if r["metric"] == "perplexity")

  with pytest.raises(FileNotFoundError, match="lambada"):
    language.evaluate_language(model, small_vocab, data_root=tmp_path, tasks=["lambada"], seq_len=64)
  with pytest.raises(FileNotFoundError, match="segment store"):
    language.evaluate_language(model, small_vocab, tasks=["val"], seq_len=64)
  with pytest.raises(UnknownNameError, match="wikitext"):
    language.evaluate_language(model, small_vocab, tasks=["wikitxt"], seq_len=64)
  with pytest.raises(ValueError, match="pieces"):
    language.evaluate_language(_decoder(VOCAB), small_vocab, tasks=["counting"], seq_len=64)


@pytest.mark.slow
def test_load_trained_restores_the_trained_weights(tmp_path):
  """The loaded decoder's NLL on the run's eval set, through the scorer, equals the trainer's final eval loss."""
  rng = np.random.default_rng(3)
  documents = rng.integers(1, VOCAB, (8, 16))
  eval_batch = {"decoder_input_tokens": np.concatenate([np.zeros((8, 1), np.int64), documents[:, :-1]], 1),
                "decoder_target_tokens": documents, "decoder_segment_ids": np.ones((8, 16), np.int32),
                "decoder_positions": np.tile(np.arange(16), (8, 1)), "decoder_loss_weights": np.ones((8, 16))}
  eval_batch = {k: np.asarray(v, np.int32) for k, v in eval_batch.items()}
  train_rows = [eval_batch] * 4
  config = config_lib.default_config()
  config.scale, config.compute_dtype, config.model.vocab_size = "nano", "float32", VOCAB
  config.model.attention_impl = "xla"
  config.batch_size, config.seq_len, config.num_steps, config.token_budget = 8, 16, 3, 0
  config.optimizer.warmup_steps, config.optimizer.peak_lr = 1, 1e-2
  config.eval_every_steps = config.checkpoint.every_steps = 3
  config.work_dir = str(tmp_path / "run")
  pretrain.pretrain(config, train_data=lambda: _Repeat(train_rows), eval_sets={"held": lambda: [eval_batch]})
  decoder, manifest = upstream.load_trained(tmp_path / "run")
  assert decoder.config.vocab_size == VOCAB and manifest["stage"] == "pretrain"
  nll = -sum(s.total() for s in loglik.score_documents(decoder, list(documents), seq_len=16))
  assert nll / documents.size == pytest.approx(manifest["final_metrics"]["eval/held/loss"], rel=1e-4)
  fresh = -sum(s.total() for s in loglik.score_documents(_decoder(VOCAB, seed=42), list(documents), seq_len=16))
  assert abs(fresh - nll) > 1e-3  # the weights are the trained ones, not an initialisation
  with pytest.raises(ValueError, match="not recorded"):
    upstream.vocabulary(manifest)
  with pytest.raises(FileNotFoundError, match="manifest.json"):
    upstream.load_trained(tmp_path)


class _Repeat:
  """A minimal grain-style iterator (get_state/set_state) over a fixed list of batches."""

  def __init__(self, batches):
    self.batches, self.index = batches, 0

  def __iter__(self):
    return self

  def __next__(self):
    batch = self.batches[self.index % len(self.batches)]
    self.index += 1
    return batch

  def get_state(self):
    return {"index": self.index}

  def set_state(self, state):
    self.index = state["index"]
