"""The multiple-choice answer extraction, rule by rule, on realistic replies (docs/paper.md, answer extraction).

The paper's three steps, in order: (1) a regex for the answer letter, (2) the whole reply equal to an option's
text, (3) option texts contained in the reply, the longest winning. Two extra rules refine step 1 and never
overrule the three: markdown emphasis is read through, and a capital letter that belongs to an option's text
quoted in the reply ("Type A", "Hepatitis B", "Plan C") is not an answer letter.
"""

from __future__ import annotations

import pytest

from visual_priors.eval.answers import extract_choice

COLOURS = ["red", "blue", "green", "yellow"]
TYPES = ["Type B", "Type A", "Type C", "Type D"]
HEPATITIS = ["Hepatitis A", "Hepatitis B", "Hepatitis C"]
PLANS = ["Plan C", "Plan A", "Plan B"]
VITAMINS = ["Vitamin C", "Vitamin D", "Vitamin A", "Vitamin B"]
CITIES = ["New York", "New York City", "York"]
PETS = ["cat", "dog"]
COUNTS = ["2", "3", "4", "5"]
YES_NO = ["Yes", "No"]

CASES = [
    # rule, reply, options, expected option index (None: no answer)
    # --- 1. the answer letter
    ("letter: bare", "B", COLOURS, 1),
    ("letter: parenthesised", "(B)", COLOURS, 1),
    ("letter: with a period", "B.", COLOURS, 1),
    ("letter: leading with the option text", "B) blue", COLOURS, 1),
    ("letter: leading with a period and text", "A. red", COLOURS, 0),
    ("letter: lower case in parentheses", "(b)", COLOURS, 1),
    ("letter: after 'Answer:'", "Answer: C", COLOURS, 2),
    ("letter: after 'Answer:' in parentheses, lower case", "Answer: (d)", COLOURS, 3),
    ("letter: after 'The answer is'", "The answer is (D).", COLOURS, 3),
    ("letter: after 'The correct answer is'", "The correct answer is B.", COLOURS, 1),
    ("letter: after 'answer is option'", "I think the answer is option A.", COLOURS, 0),
    ("letter: 'Option B is correct'", "Option B is correct.", COLOURS, 1),
    ("letter: 'B is correct because'", "B is correct because the car is blue.", COLOURS, 1),
    ("letter: 'The correct option is C)'", "The correct option is C) green", COLOURS, 2),
    ("letter: explanation before the cue", "Let me look at the image. The sky is clear. Answer: A", COLOURS, 0),
    ("letter: explanation before, cue at the end", "The car in front is painted in a warm colour, and the "
     "light is bright. Therefore, the answer is (A).", COLOURS, 0),
    ("letter: cue, then an explanation mentioning another letter", "Answer: B\nExplanation: the sky is blue, "
     "not green (C).", COLOURS, 1),
    ("letter: options listed, then the cue", "(A) red (B) blue. The answer is B", COLOURS, 1),
    ("letter: cue wins over a mentioned colour", "The image shows a red car. The answer is B.", COLOURS, 1),
    ("letter: cue followed by the option text", "The answer is B, blue.", COLOURS, 1),
    ("letter: leading parenthesised with text", "(C) green", COLOURS, 2),
    ("letter: standalone in a sentence", "I'd go with C.", COLOURS, 2),
    ("letter: hedge, the final choice", "It might be B or C, but I'd say C.", COLOURS, 2),
    ("letter: hedge with a question mark", "I'm not sure, maybe A?", COLOURS, 0),
    ("letter: cue after an article 'A' used as a word", "A cat is sitting on the mat; the answer is D.", COLOURS, 3),
    ("letter: past the option count is not a letter", "Answer: E", COLOURS, None),
    ("letter: over numeric options", "C", COUNTS, 2),
    ("letter: over option texts that hold letters", "A", ["Type B", "Type A"], 0),
    ("letter: cue, then an option text with a letter", "The answer is B: Vitamin D", VITAMINS, 1),
    ("letter: cue, then a sentence with an option's letter", "The answer is C. Hepatitis C is caused by a virus.",
     HEPATITIS, 2),
    # --- markdown is read through (extra rule, step 1)
    ("markdown: bold letter", "**B**", COLOURS, 1),
    ("markdown: bold cue", "**Answer:** B", COLOURS, 1),
    ("markdown: bold parenthesised letter", "Answer: **(C)**", COLOURS, 2),
    ("markdown: heading then the letter", "### Answer\nD", COLOURS, 3),
    ("markdown: bold cue and letter with text after", "**Answer: D** (yellow)", COLOURS, 3),
    ("markdown: code span", "`A`", COLOURS, 0),
    # --- letters inside words are not answer letters
    ("not a letter: capital starting a word", "Based on the image, the bus is yellow.", COLOURS, 3),
    ("not a letter: article 'A'", "A dog.", PETS, 1),
    ("not a letter: 'I' as a pronoun", "I cannot determine this from the image.", COLOURS, None),
    ("not a letter: capitals of a word", "CAT", PETS, 0),
    # --- option texts that end in a capital letter (extra rule: quoted option text is not a letter)
    ("option text with a letter: exact reply", "Type A", TYPES, 1),
    ("option text with a letter: exact reply, first option", "Type A", ["Type A", "Type B"], 0),
    ("option text with a letter: Hepatitis B", "Hepatitis B", HEPATITIS, 1),
    ("option text with a letter: Plan C", "Plan C", PLANS, 0),
    ("option text with a letter: Vitamin D", "Vitamin D", VITAMINS, 1),
    ("option text with a letter: in a sentence", "The answer is Type A.", ["Type B", "Type A"], 1),
    ("option text with a letter: quoted", 'I\'d choose "Plan C".', PLANS, 0),
    ("option text with a letter: quoted after 'Option'", 'Option "Hepatitis C" is correct.', HEPATITIS, 2),
    ("option text with a letter: trailing period", "Plan B.", PLANS, 2),
    # --- 2. the whole reply is an option's text
    ("exact: plain", "blue", COLOURS, 1),
    ("exact: capitalised with a period", "Blue.", COLOURS, 1),
    ("exact: upper case with spaces", "  BLUE  ", COLOURS, 1),
    ("exact: number", "3", COUNTS, 1),
    ("exact: an option contained in others", "New York", CITIES, 0),
    ("exact: the shortest option", "york", CITIES, 2),
    ("exact: wins over a longer option containing it", "red", ["red", "dark red"], 0),
    ("exact: No", "No.", YES_NO, 1),
    # --- 3. option texts in the reply, the longest wins
    ("contained: one option", "I think it's blue.", COLOURS, 1),
    ("contained: after a hedge", "Definitely green", COLOURS, 2),
    ("contained: longest of nested options", "It is dark red.", ["red", "dark red", "blue", "green"], 1),
    ("contained: longest of nested city names", "I believe it's New York City.", CITIES, 1),
    ("contained: the short name alone", "It's in York, England.", CITIES, 2),
    ("contained: two options, the longer text wins", "The object is red, not blue.", COLOURS, 1),
    ("contained: a number in a sentence", "There are 3 apples.", COUNTS, 1),
    ("contained: yes in a sentence", "Yes, there is a cat.", YES_NO, 0),
    ("contained: whole words only", "The reddish hue is bluer than expected.", COLOURS, None),
    # --- nothing to extract
    ("none: empty", "", COLOURS, None),
    ("none: refusal", "None of these.", COLOURS, None),
    ("none: unrelated", "The picture is too dark to tell.", COLOURS, None),
]


def test_the_table_is_large_enough_to_document_the_rules():
  assert len(CASES) >= 60
  assert len({(rule, reply) for rule, reply, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("rule, reply, options, expected", CASES, ids=[case[0] for case in CASES])
def test_extract_choice(rule, reply, options, expected):
  got = extract_choice(reply, options)
  assert got == expected, (f"{rule}: {reply!r} -> {None if got is None else options[got]!r}, expected "
                           f"{None if expected is None else options[expected]!r}")
