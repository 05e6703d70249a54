"""Zero-shot multiple choice: one fixture per benchmark format, scoring by log-likelihood, built-in tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

from visual_priors.data import vocab
from visual_priors.eval import builtin_tasks, loglik, zero_shot
from visual_priors.models import scales
from visual_priors.models.decoder import Decoder
from visual_priors.names import UnknownNameError

# One row per format, in the layout the public releases use; the expected (contexts, continuations, label).
FIXTURES = {
    "piqa": ({"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Eat the lid.", "label": 0},
             ["Question: Open a jar\nAnswer:"] * 2, [" Twist the lid.", " Eat the lid."], 0),
    "hellaswag": ({"activity_label": "Cooking", "ctx_a": "A man cuts onions.", "ctx_b": "he",
                   "endings": ["fries them [title] well.", "sings.", "flies.", "sleeps."], "label": 0},
                  ["Cooking: A man cuts onions. He"] * 4, [" fries them. well.", " sings.", " flies.", " sleeps."], 0),
    "winogrande": ({"sentence": "The cup fell off the table because _ was wobbly.", "option1": "the cup",
                    "option2": "the table", "answer": "2"},
                   ["The cup fell off the table because the cup", "The cup fell off the table because the table"],
                   [" was wobbly."] * 2, 1),
    "arc_easy": ({"question": {"stem": "What melts ice?", "choices": [{"text": "heat", "label": "A"},
                                                                      {"text": "cold", "label": "B"}]},
                  "answerKey": "A"}, ["Question: What melts ice?\nAnswer:"] * 2, [" heat", " cold"], 0),
    "arc_challenge": ({"question": "Which is a gas?", "choices": {"text": ["rock", "steam", "wood"],
                                                                  "label": ["1", "2", "3"]}, "answerKey": "2"},
                      ["Question: Which is a gas?\nAnswer:"] * 3, [" rock", " steam", " wood"], 1),
    "copa": ({"premise": "The man broke his toe.", "choice1": "He dropped a hammer on his foot.",
              "choice2": "He got a hole in his sock.", "question": "cause", "label": 0},
             ["The man broke his toe because"] * 2,
             [" he dropped a hammer on his foot.", " he got a hole in his sock."], 0),
    "sciq": ({"question": "What do plants make?", "distractor1": "rocks", "distractor2": "steel",
              "distractor3": "plastic", "correct_answer": "sugar", "support": "Plants photosynthesise."},
             ["Plants photosynthesise.\nQuestion: What do plants make?\nAnswer:"] * 4,
             [" rocks", " steel", " plastic", " sugar"], 3),
    "openbookqa": ({"question_stem": "The sun is a", "choices": {"text": ["star", "planet"], "label": ["A", "B"]},
                    "answerKey": "A"}, ["The sun is a"] * 2, [" star", " planet"], 0),
    "boolq": ({"question": "is the sky blue", "passage": "The sky is blue.", "answer": True},
              ["The sky is blue.\nQuestion: is the sky blue?\nAnswer:"] * 2, [" no", " yes"], 1),
}


@pytest.mark.parametrize("task", sorted(FIXTURES))
def test_each_format_becomes_the_lm_eval_prompt(task, tmp_path):
  row, contexts, continuations, label = FIXTURES[task]
  (tmp_path / task).mkdir()
  path = tmp_path / task / ("test.jsonl" if task in ("arc_easy", "arc_challenge", "sciq", "openbookqa")
                            else "validation.jsonl")
  path.write_text(json.dumps(row) + "\n\n" + json.dumps(row) + "\n")
  assert zero_shot.find_file(tmp_path, task) == path
  items = zero_shot.read_items(path, task)
  assert len(items) == 2 and zero_shot.read_items(path, task, limit=1) == items[:1]
  assert items[0] == zero_shot.Item(tuple(contexts), tuple(continuations), label)


def test_other_released_layouts_and_bad_rows(tmp_path):
  obqa_ai2 = {"question": {"stem": "The sun is a", "choices": [{"text": "star", "label": "A"},
                                                              {"text": "planet", "label": "B"}]}, "answerKey": "B"}
  assert zero_shot.parse_openbookqa(obqa_ai2).label == 1
  assert zero_shot.parse_boolq({"question": "q", "passage": "p", "label": 0}).label == 0
  hellaswag = zero_shot.parse_hellaswag({"ctx": "A dog runs.", "endings": ["a", "b"], "label": 1})
  assert hellaswag.contexts[0] == "A dog runs."
  (tmp_path / "copa.jsonl").write_text(json.dumps({**FIXTURES["copa"][0], "question": "why"}) + "\n")
  with pytest.raises(ValueError, match="copa.jsonl line 1.*cause"):
    zero_shot.read_items(tmp_path / "copa.jsonl", "copa")
  (tmp_path / "arc_easy.jsonl").write_text(json.dumps({**FIXTURES["arc_easy"][0], "answerKey": "E"}) + "\n")
  with pytest.raises(ValueError, match="answerKey 'E'"):
    zero_shot.read_items(tmp_path / "arc_easy.jsonl", "arc_easy")
  with pytest.raises(ValueError, match="exactly one"):
    zero_shot.parse_winogrande({"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"})
  with pytest.raises(UnknownNameError, match="piqa"):
    zero_shot.find_file(tmp_path, "pika")
  assert zero_shot.find_file(tmp_path, "boolq") is None


def test_accuracy_and_length_normalised_accuracy_on_a_hand_case():
  # Choice 0 has the higher total log-likelihood; per character, choice 1 wins (-3/10 > -2/4).
  item = zero_shot.same_context("Q:", [" abc", " abcdefghi"], 1)
  other = zero_shot.same_context("Q:", [" x", " y"], 0)
  scores = [np.array([-2.0, -3.0]), np.array([-1.0, -5.0])]
  assert zero_shot.accuracies([item, other], scores) == {"accuracy": 50.0, "accuracy_norm": 100.0}
  rows = zero_shot.task_rows("piqa", [item, other], scores)
  assert rows == [{"benchmark": "piqa", "group": None, "metric": "accuracy", "value": 50.0, "count": 2},
                  {"benchmark": "piqa", "group": None, "metric": "accuracy_norm", "value": 100.0, "count": 2}]


def test_choice_scores_are_continuation_log_likelihoods(small_vocab):
  processor = vocab.load_processor(small_vocab)
  model = Decoder(scales.get_scale("nano", vocab_size=processor.get_piece_size(), attention_impl="xla"),
                  rngs=nnx.Rngs(0))
  items = [zero_shot.Item(*FIXTURES["winogrande"][1:3], 1), zero_shot.Item(*FIXTURES["piqa"][1:3], 0)]
  scores = zero_shot.choice_scores(model, processor.encode, items, seq_len=64, batch_size=2)
  for item, item_scores in zip(items, scores):
    for context, continuation, score in zip(item.contexts, item.continuations, item_scores):
      whole, split = loglik.split_continuation(processor.encode, context, continuation)
      [alone] = loglik.score_documents(model, [np.array(whole)], seq_len=64, batch_size=2, score_from=[split])
      assert score == pytest.approx(alone.total(), abs=1e-4)
      assert len(alone.log_probs) == len(whole) - split == len(processor.encode(context + continuation)) - split


def test_builtin_tasks_are_deterministic_four_choice_sets_with_the_answer_among_them():
  for name in builtin_tasks.TASKS:
    items = builtin_tasks.build(name, seed=3)
    assert items == builtin_tasks.build(name, seed=3) and 200 <= len(items) <= 400
    assert all(len(set(i.continuations)) == builtin_tasks.CHOICES for i in items)
    labels = np.bincount([i.label for i in items], minlength=4)
    assert labels.min() > len(items) / 10  # the answer's position is shuffled
  assert builtin_tasks.build("arithmetic", seed=4) != builtin_tasks.build("arithmetic", seed=3)
  first = builtin_tasks.build("arithmetic", seed=0)[0]
  question = first.contexts[0].split("What is ")[1].split("?")[0].split()
  a, op, b = int(question[0]), question[1], int(question[2])
  assert first.continuations[first.label] == f" {a + b if op == 'plus' else a - b}"
  colour = builtin_tasks.build("object_colour")[0]
  assert colour.contexts[0] == "The colour of a ripe banana is" and colour.continuations[colour.label] == " yellow"
  assert builtin_tasks.number_word(42) == "forty-two" and builtin_tasks.number_word(105) == "one hundred and five"
  with pytest.raises(UnknownNameError, match="counting"):
    builtin_tasks.build("countin")
