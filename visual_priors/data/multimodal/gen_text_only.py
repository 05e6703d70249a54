"""Text-only instruction conversations (kind "other"): general knowledge, arithmetic, spelling, chit-chat."""

from __future__ import annotations

import numpy as np

from visual_priors.data.multimodal.gen_objects import EMOJI_OBJECTS, SHAPES, with_article

TEXT_ONLY_EVERY = 5  # by default every fifth generated instruction item is a text-only conversation

CHIT_CHAT: tuple[tuple[str, str], ...] = (
    ("Hi! How are you today?", "I'm doing well, thank you. How can I help you?"),
    ("Can you help me with a question?", "Of course. What would you like to know?"),
    ("Thank you for your help.", "You're welcome! Let me know if you need anything else."),
    ("What can you do?", "I can answer questions, describe images and help with simple sums."),
    ("Good morning!", "Good morning! What would you like to talk about?"),
    ("Tell me something nice.", "Every day is a chance to learn something new."),
)
GROUP_NOUNS = {"animal": "an animal", "fruit": "a fruit", "vegetable": "a vegetable",
               "vehicle": "a vehicle", "plant": "a plant"}
_ANIMALS = [c for c in EMOJI_OBJECTS if c.legs is not None]
_POLYGONS = [c for c in SHAPES if c.sides]
_ONE_WORD_NAMES = [c.name for c in EMOJI_OBJECTS if " " not in c.name]
_GROUPED = [c for c in EMOJI_OBJECTS if c.group in GROUP_NOUNS]


def _choice(rng: np.random.Generator, items):
  return items[int(rng.integers(len(items)))]


def _legs(rng):
  animal = _choice(rng, _ANIMALS)
  return (f"How many legs does {with_article(animal.name)} have?",
          f"{with_article(animal.name).capitalize()} has {animal.legs} legs.")


def _sides(rng):
  shape = _choice(rng, _POLYGONS)
  return (f"How many sides does {with_article(shape.name)} have?",
          f"{with_article(shape.name).capitalize()} has {shape.sides} sides.")


def _arithmetic(rng):
  a, b = (int(v) for v in rng.integers(2, 20, 2))
  if rng.integers(2):
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
  return f"What is {a} times {b}?", f"{a} times {b} is {a * b}."


def _spelling(rng):
  word = _choice(rng, _ONE_WORD_NAMES)
  return (f"Spell the word \"{word}\" backwards.", f"\"{word}\" backwards is \"{word[::-1]}\".")


def _category(rng):
  thing = _choice(rng, _GROUPED)
  group = _choice(rng, sorted(GROUP_NOUNS))
  truth = thing.group == group
  verdict = "Yes" if truth else "No"
  return (f"Is {with_article(thing.name)} {GROUP_NOUNS[group]}?",
          f"{verdict}, {with_article(thing.name)} is {'' if truth else 'not '}{GROUP_NOUNS[group]}.")


def _chit_chat(rng):
  return _choice(rng, CHIT_CHAT)


_MAKERS = (_legs, _sides, _arithmetic, _spelling, _category, _chit_chat)


def text_only_turns(rng: np.random.Generator) -> list[tuple[str, str]]:
  """One to three (question, answer) pairs, each true by construction."""
  return [_choice(rng, _MAKERS)(rng) for _ in range(int(rng.integers(1, 4)))]
