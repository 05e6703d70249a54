"""Multiple-choice scoring: questions from evaluation rows, candidate log-likelihoods, accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sentencepiece as spm
from flax import nnx
from PIL import Image

from visual_priors.data.multimodal import chat
from visual_priors.eval import multiple_choice
from visual_priors.models import scales
from visual_priors.models.mllm import MLLM, MLLMConfig, feature_extractor
from visual_priors.models.vision import get_encoder

VISUAL = 4
ROW = {"id": "q1", "image": "images/q1.png", "question": "What colour is the circle?",
       "choices": ["blue", "red", "green", "pink"], "answer": "red", "answer_letter": "B",
       "prompt": "What colour is the circle?\nA. blue\nB. red\nC. green\nD. pink\n"
                 "Answer with the option's letter from the given choices directly.",
       "group": "General", "type": "multiple_choice"}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> chat.ChatTemplate:
  folder = tmp_path_factory.mktemp("vocab")
  texts = [ROW["prompt"], "Is there a star in the image?", "Answer the question using a single word or phrase.",
           "USER: ASSISTANT: Yes No blue red green pink A B C D"] * 20
  spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=str(folder / "spm"), vocab_size=60,
                                 pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2,
                                 num_threads=1)
  return chat.ChatTemplate(folder / "spm.model", chat.ChatConfig(num_visual_tokens=VISUAL, system_prompt=""))


@pytest.fixture(scope="module")
def model(template) -> MLLM:
  vocab_size = template.processor.get_piece_size()
  config = MLLMConfig(vision=feature_extractor(get_encoder("vit-nano")),
                      llm=scales.get_scale("nano", vocab_size=vocab_size, attention_impl="xla"),
                      num_visual_tokens=VISUAL)
  return MLLM(config, rngs=nnx.Rngs(0))


def _image(seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def test_rows_become_questions_with_letter_text_or_yes_no_candidates():
  letter = multiple_choice.to_question(ROW)
  assert letter.candidates == ("A", "B", "C", "D") and letter.answer_index == 1
  assert letter.prompt == ROW["prompt"] and letter.group == "General"
  text = multiple_choice.to_question(ROW, answer_with="text")
  assert text.candidates == tuple(ROW["choices"]) and text.answer_index == 1
  assert text.prompt == "What colour is the circle?\nAnswer the question using a single word or phrase."
  by_letter = multiple_choice.to_question({**ROW, "answer": "c", "prompt": None})
  assert by_letter.answer_index == 2 and "C. green" in by_letter.prompt  # formatted as the instruction data
  yes_no = multiple_choice.to_question({"question": "Is there a star?", "choices": None, "answer": "No",
                                        "image": None})
  assert yes_no.candidates == ("Yes", "No") and yes_no.answer_index == 1
  with pytest.raises(ValueError, match="neither a choice"):
    multiple_choice.to_question({**ROW, "answer": "purple"})
  with pytest.raises(ValueError, match="only yes/no"):
    multiple_choice.to_question({**ROW, "choices": None, "answer": "3"})
  with pytest.raises(ValueError, match="answer_with"):
    multiple_choice.to_question(ROW, answer_with="logit")


def test_read_questions_resolves_images_against_the_files_folder(tmp_path):
  (tmp_path / "images").mkdir()
  Image.fromarray(_image(0)).save(tmp_path / "images" / "q1.png")
  (tmp_path / "bench.jsonl").write_text(json.dumps(ROW) + "\n\n")
  [question] = multiple_choice.read_questions(tmp_path / "bench.jsonl")
  assert question.image == str(tmp_path / "images" / "q1.png")
  with pytest.raises(FileNotFoundError):
    multiple_choice.read_questions(tmp_path / "missing.jsonl")


def test_candidate_scores_are_each_answers_log_likelihood(model, template):
  questions = [multiple_choice.Question("q1", _image(1), "What colour is the circle?", ("blue", "red", "green"), 1),
               multiple_choice.Question("q2", None, "Is there a star in the image?", ("Yes", "No"), 0)]
  scores = multiple_choice.candidate_scores(model, questions, template, seq_len=64, batch_size=3)
  assert [s.shape for s in scores] == [(3,), (2,)]
  with pytest.raises(ValueError, match="raise seq_len"):
    multiple_choice.candidate_scores(model, questions, template, seq_len=16)
  # One row at a time, by hand: log-softmax of the logits at the answer's supervised positions.
  for question, question_scores in zip(questions, scores):
    for candidate, score in zip(question.candidates, question_scores):
      with_image = question.image is not None
      user = f"<image>\n{question.prompt}" if with_image else question.prompt
      encoded = template.encode([{"from": "human", "value": user}, {"from": "gpt", "value": candidate}],
                                with_image=with_image)
      row = chat.decoder_features(encoded, 64)
      image = (question.image.astype(np.float32) / 127.5 - 1)[None] if with_image else None
      logits = np.asarray(model(image, row["decoder_input_tokens"][None],
                                image_mask_bt=row["decoder_image_mask"][None]))[0].astype(np.float64)
      log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
      picked = log_probs[np.arange(64), row["decoder_target_tokens"]] * row["decoder_loss_weights"]
      assert row["decoder_loss_weights"].sum() == len(template.processor.encode(candidate)) + 1
      np.testing.assert_allclose(score, picked.sum(), rtol=1e-4, atol=1e-4)


def test_accuracy_chance_and_groups_follow_the_best_scoring_candidate(model, template, monkeypatch):
  questions = [multiple_choice.Question("a", None, "p", ("A", "B"), 0, "General"),
               multiple_choice.Question("b", None, "p", ("A", "B", "C", "D"), 3, "OCR & Chart"),
               multiple_choice.Question("c", None, "p", ("A", "B", "C", "D"), 1, "OCR & Chart")]
  fixed = [np.array([-1.0, -2.0]), np.array([-5.0, -4.0, -3.0, -0.5]), np.array([-0.1, -2.0, -3.0, -4.0])]
  monkeypatch.setattr(multiple_choice, "candidate_scores", lambda *args, **kwargs: fixed)
  result = multiple_choice.evaluate(model, questions, template, seq_len=16)
  assert result["accuracy"] == pytest.approx(2 / 3)
  assert result["chance"] == pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3)
  assert result["groups"] == {"General": 1.0, "OCR & Chart": 0.5}
  assert result["predictions"] == ["A", "D", "A"] and result["count"] == 3
  with pytest.raises(ValueError, match="No questions"):
    multiple_choice.evaluate(model, [], template, seq_len=16)
