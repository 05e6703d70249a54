"""Answer extraction and matching on realistic (and tricky) model replies."""

from __future__ import annotations

import pytest

from visual_priors.eval import answers

ANIMALS = ["dog", "cat", "cow", "pig"]


@pytest.mark.parametrize("output, expected", [
    # Stage 1: answer letters.
    ("The correct answer is (B)", 1),
    ("The correct answer is (B).", 1),
    ("Answer: B", 1),
    ("answer is B", 1),
    ("The answer is option C", 2),
    ("ANSWER: D", 3),
    ("Answer: (c)", 2),
    ("B", 1),
    ("B.", 1),
    ("B)", 1),
    ("(B)", 1),
    ("  C  \n", 2),
    ("(D) pig", 3),
    ("D. pig", 3),
    ("A. dog\nB. cat", 0),  # a leading lettered option
    ("It has to be the cow (C)", 2),  # trailing "(C)"
    ("I think it is B.", 1),  # standalone letter ending a sentence
    ("I think it is B", 1),
    ("C is correct.", 2),
    ("I think B is the right answer", 1),
    ("Looking closely, A could fit but the answer is B.", 1),  # the cue wins over the first standalone letter
    ("Answer: A. Explanation: ... so the final answer is C", 2),  # the last cue wins
    ("Option (A) is wrong; (C) is right", 2),  # two cues: the last one
    ("The answer is E", None),  # E is not among four options, and nothing else matches
    ("E. cat", 1),  # out-of-range letter: falls through to the option text
    # Letters inside words, articles and pronouns are not answers.
    ("A cat", 1),
    ("I think it's a cat", 1),
    ("A dog is sitting on the sofa", 0),
    ("The answer is a cow", 2),
    ("I do not know", None),
    ("It is in the U.S. somewhere", None),
    # Stage 2: the reply is an option's text.
    ("Cat", 1),
    ("  pig. ", 3),
    ("COW!", 2),
    # Stage 3: options inside the reply, whole words only.
    ("There is a pig in the image.", 3),
    ("The animal shown is most likely a dog, sitting on grass.", 0),
    ("catalogue", None),
    ("The cow and the dog", 2),  # equally long: the one mentioned first
])
def test_extract_choice(output, expected):
  assert answers.extract_choice(output, ANIMALS) == expected


@pytest.mark.parametrize("output, expected", [
    ("dark red", 1),
    ("It is dark red.", 1),
    ("red", 0),
    ("The triangle is red.", 0),
    ("Red", 0),
    ("reddish", None),
])
def test_longest_contained_option_wins(output, expected):
  assert answers.extract_choice(output, ["red", "dark red", "blue"]) == expected


def test_letters_past_the_option_count_are_ignored():
  assert answers.extract_letter("F", 6) == 5
  assert answers.extract_letter("F", 4) is None
  assert answers.extract_choice("The answer is (I)", [str(i) for i in range(9)]) == 8


def test_numbers_as_options():
  options = ["12", "2", "20", "21"]
  assert answers.extract_choice("2", options) == 1
  assert answers.extract_choice("There are 12 legs.", options) == 0  # "2" is not matched inside "12"
  assert answers.extract_choice("B. 2", options) == 1


def test_extract_choice_rejects_no_options():
  with pytest.raises(ValueError, match="at least one option"):
    answers.extract_choice("A", [])


@pytest.mark.parametrize("output, expected", [
    ("Yes", "yes"),
    ("yes.", "yes"),
    ("No, there is no dog.", "no"),
    ("NO", "no"),
    ("Not really; no.", "no"),  # "Not" is not "no"
    ("The answer is yes, there is a dog, no doubt.", "yes"),
    ("Nobody knows", None),
    ("I cannot tell.", None),
])
def test_extract_yes_no(output, expected):
  assert answers.extract_yes_no(output) == expected


@pytest.mark.parametrize("text, expected", [
    ("Two dogs.", "2 dogs"),
    ("The Red one", "red 1"),
    ("1,000", "1000"),
    ("an apple", "apple"),
    ("Yes!", "yes"),
    ("dont", "don't"),
    ("none", "0"),
    ("3.5", "3.5"),
    ("left-hand side", "left hand side"),
    ("coca-cola, inc", "coca cola inc"),  # per mark: "," (followed by a space) removed, "-" spaced
    ("left - right", "left right"),
    ("  Tab\tand\nnewline ", "tab and newline"),
])
def test_normalize_answer(text, expected):
  assert answers.normalize_answer(text) == expected


def test_vqa_soft_accuracy_matches_the_official_leave_one_out_average():
  assert answers.vqa_accuracy("2", ["2"] * 10) == 1.0
  assert answers.vqa_accuracy("two", ["2"] * 3 + ["3"] * 7) == pytest.approx(0.9)  # 3 of 10: 7 * 1 + 3 * 2/3
  assert answers.vqa_accuracy("2", ["2"] * 2 + ["3"] * 8) == pytest.approx(0.6)
  assert answers.vqa_accuracy("2", ["2"] + ["3"] * 9) == pytest.approx(0.3)
  assert answers.vqa_accuracy("5", ["2"] * 10) == 0.0
  assert answers.vqa_accuracy("The Stop sign", ["stop sign"]) == 1.0  # one reference: exact match


def test_exact_match_normalises_both_sides():
  assert answers.exact_match("The dog.", "dog") == 1.0
  assert answers.exact_match("Three", ["3", "three"]) == 1.0
  assert answers.exact_match("a dog running", "dog") == 0.0
  with pytest.raises(ValueError, match="No reference"):
    answers.exact_match("x", [])


@pytest.mark.parametrize("output, reference, expected", [
    ("20", "20", 1.0),
    ("20.9", "20", 1.0),  # within 5%
    ("21.5", "20", 0.0),
    ("The value is 1,050.", "1000", 1.0),
    ("45%", "45", 1.0),
    ("0", "0", 1.0),
    ("Yes", "yes", 1.0),
    ("Mar", "March", 0.0),
])
def test_relaxed_accuracy(output, reference, expected):
  assert answers.relaxed_accuracy(output, reference) == expected


def test_contains_match_and_handwriting():
  assert answers.contains_match("The sign says STOP here", ["stop"]) == 1.0
  assert answers.contains_match("It says GO", ["stop", "halt"]) == 0.0
  assert answers.contains_nospace_match("x ^ { 2 } + 1", ["x^{2}+1"]) == 1.0


@pytest.mark.parametrize("output, reference, precision, expected", [
    ("3", "3", None, 1.0),
    ("The answer is 3.", "3", None, 1.0),
    ("Answer: 2.5 cm, as 5/2 = 2.5", "2.5", 1, 1.0),
    ("1.49", "1.5", 1, 1.0),
    ("1.44", "1.5", 1, 0.0),
    ("There are 4 apples and 7 pears, 11 fruits", "11", None, 1.0),  # no cue: the last number
    ("blue", "Blue", None, 1.0),  # a text reference: exact match
    ("no number here", "4", None, 0.0),
])
def test_numeric_match(output, reference, precision, expected):
  assert answers.numeric_match(output, reference, precision) == expected
