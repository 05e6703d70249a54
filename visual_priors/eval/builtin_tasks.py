"""Built-in zero-shot tasks generated offline from code, so the zero-shot path runs with no downloaded data.

Each task is a deterministic function of a seed giving a few hundred four-choice items in the
`zero_shot.Item` form (one context, four continuations with a leading space), scored exactly as the
downloaded benchmarks are:
  arithmetic     "Question: What is 7 plus 5?\\nAnswer:" -> " 12" (sums and differences of 0..20; the
                 distractors are the nearby wrong numbers)
  object_colour  "The colour of a ripe banana is" -> " yellow" (common objects with one typical colour,
                 four phrasings)
  antonyms       "The opposite of hot is" -> " cold" (both directions of each pair, two phrasings)
  counting       "one, two, three, four," -> " five" (number words and digits, steps 1, 2, 5 and 10)
They are sanity checks of what pre-training text teaches, not the paper's benchmarks, which is why the
language evaluation averages them separately ("zero_shot_builtin_mean").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from visual_priors.eval.zero_shot import Item, same_context
from visual_priors.names import lookup

CHOICES = 4

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_word(n: int) -> str:
  """English words for 0..999 ("forty-two", "one hundred and five")."""
  if not 0 <= n < 1000:
    raise ValueError(f"number_word covers 0..999, got {n}.")
  if n < 20:
    return _ONES[n]
  if n < 100:
    return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")
  rest = n % 100
  return f"{_ONES[n // 100]} hundred" + (f" and {number_word(rest)}" if rest else "")


_COLOURED = (
    ("a ripe banana", "yellow"), ("a lemon", "yellow"), ("the sun in a child's drawing", "yellow"),
    ("a sunflower's petals", "yellow"), ("an egg yolk", "yellow"), ("a school bus", "yellow"),
    ("grass", "green"), ("a lime", "green"), ("a cucumber", "green"), ("a fresh leaf", "green"),
    ("broccoli", "green"), ("a frog", "green"), ("a pea", "green"), ("spinach", "green"),
    ("a ripe tomato", "red"), ("a strawberry", "red"), ("blood", "red"), ("a fire engine", "red"),
    ("a ripe cherry", "red"), ("a stop sign", "red"), ("a ladybird", "red"),
    ("the clear daytime sky", "blue"), ("a blueberry", "blue"), ("the ocean on a sunny day", "blue"),
    ("a sapphire", "blue"), ("a bluebird", "blue"),
    ("snow", "white"), ("milk", "white"), ("a polar bear", "white"), ("a cloud on a fine day", "white"),
    ("a swan", "white"), ("chalk", "white"), ("a sheet of printer paper", "white"),
    ("coal", "black"), ("a crow", "black"), ("the night sky", "black"), ("tar", "black"),
    ("a raven", "black"), ("a chalkboard", "black"),
    ("a carrot", "orange"), ("an orange", "orange"), ("a pumpkin", "orange"), ("a tangerine", "orange"),
    ("a goldfish", "orange"),
    ("chocolate", "brown"), ("a tree trunk", "brown"), ("coffee", "brown"), ("a grizzly bear", "brown"),
    ("soil", "brown"), ("a walnut shell", "brown"),
    ("a flamingo", "pink"), ("bubble gum", "pink"), ("a piglet", "pink"),
    ("an aubergine", "purple"), ("a lavender flower", "purple"), ("a plum", "purple"),
    ("an elephant", "grey"), ("a rain cloud", "grey"), ("a mouse", "grey"), ("concrete", "grey"),
)
_COLOUR_TEMPLATES = ("The colour of {} is", "The usual colour of {} is", "Question: What colour is {}?\nAnswer:",
                     "Most people would say that the colour of {} is")
_ANTONYMS = (
    ("hot", "cold"), ("big", "small"), ("tall", "short"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("up", "down"), ("left", "right"), ("open", "closed"), ("full", "empty"), ("wet", "dry"), ("hard", "soft"),
    ("early", "late"), ("rich", "poor"), ("young", "old"), ("strong", "weak"), ("heavy", "light"),
    ("thick", "thin"), ("wide", "narrow"), ("deep", "shallow"), ("loud", "quiet"), ("clean", "dirty"),
    ("good", "bad"), ("true", "false"), ("win", "lose"), ("buy", "sell"), ("give", "take"), ("push", "pull"),
    ("enter", "exit"), ("begin", "end"), ("first", "last"), ("inside", "outside"), ("above", "below"),
    ("before", "after"), ("day", "night"), ("north", "south"), ("east", "west"), ("love", "hate"),
    ("friend", "enemy"), ("question", "answer"), ("summer", "winter"), ("sweet", "sour"), ("safe", "dangerous"),
    ("cheap", "expensive"), ("easy", "difficult"), ("near", "far"), ("high", "low"), ("long", "short"),
    ("increase", "decrease"), ("accept", "reject"), ("arrive", "depart"), ("remember", "forget"),
    ("asleep", "awake"), ("alive", "dead"), ("male", "female"), ("entrance", "exit"), ("maximum", "minimum"),
    ("positive", "negative"), ("visible", "invisible"), ("possible", "impossible"), ("always", "never"),
    ("everything", "nothing"), ("success", "failure"), ("victory", "defeat"), ("peace", "war"),
    ("ancient", "modern"), ("smooth", "rough"), ("sharp", "blunt"), ("tight", "loose"), ("brave", "cowardly"),
    ("polite", "rude"), ("generous", "selfish"), ("guilty", "innocent"), ("import", "export"),
    ("inhale", "exhale"), ("laugh", "cry"), ("lend", "borrow"), ("float", "sink"), ("freeze", "melt"),
    ("attack", "defend"), ("ascend", "descend"), ("expand", "contract"), ("wild", "tame"),
    ("raw", "cooked"), ("public", "private"), ("major", "minor"), ("senior", "junior"), ("vertical", "horizontal"),
    ("odd", "even"), ("solid", "liquid"), ("plus", "minus"), ("add", "subtract"), ("sunrise", "sunset"),
)
_ANTONYM_TEMPLATES = ("The opposite of {} is", "Question: What is the opposite of \"{}\"?\nAnswer:")


def _shuffled(correct: str, wrong: list[str], rng: np.random.Generator) -> tuple[list[str], int]:
  choices = [correct, *wrong]
  order = rng.permutation(len(choices))
  return [f" {choices[i]}" for i in order], int(np.flatnonzero(order == 0)[0])


def arithmetic(seed: int, n: int = 300) -> list[Item]:
  rng = np.random.default_rng([seed, 1])
  items = []
  for _ in range(n):
    a, b = (int(v) for v in rng.integers(0, 21, 2))
    if rng.integers(2):
      question, answer = f"What is {a} plus {b}?", a + b
    else:
      a, b = max(a, b), min(a, b)
      question, answer = f"What is {a} minus {b}?", a - b
    near = [v for v in range(max(0, answer - 4), answer + 5) if v != answer]
    wrong = [str(v) for v in rng.choice(near, CHOICES - 1, replace=False)]
    continuations, label = _shuffled(str(answer), wrong, rng)
    items.append(same_context(f"Question: {question}\nAnswer:", continuations, label))
  return items


def object_colour(seed: int) -> list[Item]:
  rng = np.random.default_rng([seed, 2])
  colours = sorted({colour for _, colour in _COLOURED})
  items = []
  for template in _COLOUR_TEMPLATES:
    for thing, colour in _COLOURED:
      others = [c for c in colours if c != colour]
      wrong = [str(c) for c in rng.choice(others, CHOICES - 1, replace=False)]
      continuations, label = _shuffled(colour, wrong, rng)
      items.append(same_context(template.format(thing), continuations, label))
  return items


def antonyms(seed: int) -> list[Item]:
  rng = np.random.default_rng([seed, 3])
  words = sorted({w for pair in _ANTONYMS for w in pair})
  items = []
  for template in _ANTONYM_TEMPLATES:
    for a, b in _ANTONYMS:
      for word, answer in ((a, b), (b, a)):
        # Never a distractor that is another antonym of the word ("light": "dark" and "heavy").
        taken = {word} | {x for pair in _ANTONYMS if word in pair for x in pair}
        others = [w for w in words if w not in taken]
        wrong = [str(w) for w in rng.choice(others, CHOICES - 1, replace=False)]
        continuations, label = _shuffled(answer, wrong, rng)
        items.append(same_context(template.format(word), continuations, label))
  return items


def counting(seed: int, n: int = 300) -> list[Item]:
  rng = np.random.default_rng([seed, 4])
  items = []
  for _ in range(n):
    step = int(rng.choice([1, 1, 2, 5, 10]))
    length = int(rng.integers(3, 7))
    start = int(rng.integers(0, 21)) * (step if step > 2 else 1)
    sequence = [start + step * i for i in range(length + 1)]
    words = bool(rng.integers(2))
    name = number_word if words else str
    answer = sequence[-1]
    near = sorted({answer + d for d in (-2 * step, -step, -1, 1, step, 2 * step, step + 1)} - {answer})
    near = [v for v in near if 0 <= v < 1000]
    wrong = [name(int(v)) for v in rng.choice(near, CHOICES - 1, replace=False)]
    continuations, label = _shuffled(name(answer), wrong, rng)
    items.append(same_context(", ".join(name(v) for v in sequence[:-1]) + ",", continuations, label))
  return items


TASKS: dict[str, Callable[[int], list[Item]]] = {
    "arithmetic": arithmetic, "object_colour": object_colour, "antonyms": antonyms, "counting": counting,
}
BENCHMARK_PREFIX = "builtin/"


def build(name: str, seed: int = 0) -> list[Item]:
  """The named built-in task's items (same seed, same items)."""
  return lookup(TASKS, name, "built-in task")(seed)
