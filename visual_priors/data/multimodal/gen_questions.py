"""Question tasks: each draws a scene and asks questions whose answers follow from its ground truth."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from visual_priors.data.multimodal import scene as sc
from visual_priors.data.multimodal.gen_captions import caption
from visual_priors.data.multimodal.gen_objects import (COLOURS, SHAPES, WORDS, ObjectClass,
                                                       absent_classes, with_article)

LETTERS = "ABCDEFGH"
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
# How multiple-choice questions ask to be answered: with the option's letter (LLaVA's and the paper's format) or
# with the option's text (small models learn it far sooner: no letter has to be looked up among the options).
MC_ANSWERS = ("letter", "text")
MC_TEXT_INSTRUCTION = "Answer with the option's text from the given choices directly."
SHORT_INSTRUCTION = "Answer the question using a single word or phrase."
GROUPS = ("General", "Knowledge", "OCR & Chart", "Vision-Centric")
KINDS = ("perception", "reasoning", "other")
TYPES = ("multiple_choice", "open", "yes_no")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


@dataclasses.dataclass(frozen=True)
class QA:
  """One question about a scene.

  answer_text: the true answer (the correct choice's text for multiple choice; "Yes"/"No");
  short: False for free-form answers (descriptions) that get no answer-format instruction.
  """

  task: str
  question: str
  type: str
  answer_text: str
  choices: tuple[str, ...] | None = None
  short: bool = True

  def __post_init__(self):
    if self.type not in TYPES:
      raise ValueError(f"Question type {self.type!r} is not one of {TYPES}.")
    if (self.type == "multiple_choice") != (self.choices is not None):
      raise ValueError("Multiple-choice questions, and only they, have choices.")
    if self.choices is not None and self.answer_text not in self.choices:
      raise ValueError(f"Answer {self.answer_text!r} is not among the choices {self.choices}.")

  @property
  def answer(self) -> str:
    """What the model should reply: the letter of the correct choice, else the answer text."""
    if self.choices is None:
      return self.answer_text
    return LETTERS[self.choices.index(self.answer_text)]

  @property
  def prompt(self) -> str:
    """The question as the model sees it (without the image placeholder)."""
    return format_prompt(self.question, self.choices, self.short)

  def reply(self, mc_answer: str = "letter") -> str:
    """The reply taught for `mc_answer` (MC_ANSWERS): `answer`, or the correct option's text."""
    return self.answer_text if mc_answer == "text" else self.answer

  def prompt_for(self, mc_answer: str = "letter") -> str:
    return format_prompt(self.question, self.choices, self.short, mc_answer)


def format_prompt(question: str, choices: Sequence[str] | None, short: bool = True, mc_answer: str = "letter") -> str:
  """Question, lettered options ("A. dog") and the LLaVA answer-format instruction (for the letter, or for the
  option's text when mc_answer is "text")."""
  if mc_answer not in MC_ANSWERS:
    raise ValueError(f"mc_answer={mc_answer!r} is not one of {MC_ANSWERS}.")
  if choices is not None:
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"{question}\n{options}\n{MC_TEXT_INSTRUCTION if mc_answer == 'text' else MC_INSTRUCTION}"
  return f"{question}\n{SHORT_INSTRUCTION}" if short else question


@dataclasses.dataclass(frozen=True)
class Task:
  """A question family: which benchmark group it evaluates, which SFT kind it trains."""

  name: str
  group: str | None  # None: instruction data only
  kind: str
  build: Callable[[sc.Context, np.random.Generator], tuple[sc.Scene, list[QA]]]
  needs_emoji: bool = False


def _mc(task: str, question: str, correct: str, wrong: Sequence[str],
        rng: np.random.Generator) -> QA:
  choices = [correct, *list(dict.fromkeys(w for w in wrong if w != correct))[:3]]
  order = rng.permutation(len(choices))
  return QA(task, question, "multiple_choice", correct, tuple(choices[i] for i in order))


def _yes_no(task: str, question: str, truth: bool) -> QA:
  return QA(task, question, "yes_no", "Yes" if truth else "No")


def _near_numbers(rng: np.random.Generator, answer: int, step: int = 1, low: int = 0) -> list[str]:
  """Three distractors that make, with `answer`, four consecutive multiples of `step` (none below `low`).

  The window's offset is drawn uniformly among those the bound allows, so the answer's rank among the sorted
  options is uniform (except next to `low`) and a blind model cannot learn it from the options alone.
  """
  rank = int(rng.choice([r for r in range(4) if answer - r * step >= low]))
  return [str(answer + (k - rank) * step) for k in range(4) if k != rank]


def _pick(rng: np.random.Generator, items: Sequence, k: int) -> list:
  return [items[i] for i in rng.permutation(len(items))[:k]]


def _distinct_classes(rng: np.random.Generator, pool: Sequence[ObjectClass], k: int) -> list[ObjectClass]:
  """k classes from `pool` that share no name or synonym."""
  chosen: list[ObjectClass] = []
  for index in rng.permutation(len(pool)):
    if len(chosen) == k:
      break
    if not any(pool[index].names & c.names for c in chosen):
      chosen.append(pool[index])
  return chosen


def _absent(ctx: sc.Context, scene: sc.Scene, present: Sequence[ObjectClass]) -> list[ObjectClass]:
  return absent_classes(ctx.vocabulary, present, scene.background_contains)


def existence(ctx, rng):
  classes = _distinct_classes(rng, ctx.vocabulary, int(rng.integers(1, 3)))
  scene = sc.retry(sc.objects_scene, ctx, rng, classes, [int(rng.integers(1, 3)) for _ in classes])
  absent = _pick(rng, _absent(ctx, scene, classes), len(classes))
  return scene, ([_yes_no("existence", f"Is there {with_article(c.name)} in the image?", True)
                  for c in classes]
                 + [_yes_no("existence", f"Is there {with_article(c.name)} in the image?", False)
                    for c in absent])


def identity(ctx, rng):
  classes = _distinct_classes(rng, ctx.vocabulary, int(rng.integers(1, 3)))
  scene = sc.retry(sc.objects_scene, ctx, rng, classes, [1] * len(classes))
  absent = [c.name for c in _absent(ctx, scene, classes)]
  return scene, [_mc("identity", "Which of these objects can be seen in the image?", c.name,
                     _pick(rng, absent, 3), rng) for c in classes]


def _shapes(ctx, rng, pool=SHAPES):
  shapes = _pick(rng, pool, int(rng.integers(1, 4)))
  return shapes, sc.retry(sc.shapes_scene, ctx, rng, shapes)


def colour(ctx, rng):
  shapes, scene = _shapes(ctx, rng)
  return scene, [_mc("colour", f"What colour is the {o.name}?", o.colour,
                     _pick(rng, [c for c in COLOURS if c != o.colour], 3), rng)
                 for o in scene.objects]


def shape(ctx, rng):
  shapes, scene = _shapes(ctx, rng)
  names = [s.name for s in SHAPES]
  return scene, [_mc("shape", f"Which shape is {o.colour}?", o.name,
                     _pick(rng, [n for n in names if n != o.name], 3), rng) for o in scene.objects]


def position(ctx, rng):
  classes = _distinct_classes(rng, ctx.vocabulary, int(rng.integers(1, 3)))
  s = ctx.image_size
  low, high = s // 2, (s + 1) // 2  # the two halves never share a pixel row or column
  quadrant_boxes = [(0, 0, low, low), (high, 0, s, low), (0, high, low, s), (high, high, s, s)]
  regions = _pick(rng, quadrant_boxes, len(classes))
  scene = sc.retry(sc.objects_scene, ctx, rng, classes, [1] * len(classes), regions)
  return scene, [_mc("position", f"Where is the {o.name} in the image?",
                     sc.quadrant(o.box, s), QUADRANTS, rng) for o in scene.objects]


def _word(rng):
  return WORDS[int(rng.integers(len(WORDS)))]


def read_word(ctx, rng):
  word = _word(rng)
  scene = sc.text_scene(ctx, rng, word)
  same_length = [w for w in WORDS if len(w) == len(word) and w != word]
  return scene, [_mc("read_word", "What word is written on the sign?", word,
                     _pick(rng, same_length, 3), rng)]


def read_word_open(ctx, rng):
  word = _word(rng)
  return sc.text_scene(ctx, rng, word), [QA("read_word_open", "What word is written on the sign?",
                                            "open", word)]


def _chart_number_mc(task, question, value, rng):
  return _mc(task, question, str(value), _near_numbers(rng, value), rng)


def bar_value(ctx, rng):
  scene = sc.chart_scene(ctx, rng, "bar")
  chart = scene.chart
  return scene, [_chart_number_mc("bar_value", f"What is the value of {label} in the chart?", v, rng)
                 for label, v in zip(chart.labels, chart.values)]


def line_value(ctx, rng):
  scene = sc.chart_scene(ctx, rng, "line")
  chart = scene.chart
  return scene, [_chart_number_mc("line_value", f"What is the value in {label}?", v, rng)
                 for label, v in zip(chart.labels, chart.values)]


def chart_max(ctx, rng):
  scene = sc.chart_scene(ctx, rng, ("bar", "line")[int(rng.integers(2))])
  chart = scene.chart
  best = chart.labels[int(np.argmax(chart.values))]
  noun = "bar" if chart.kind == "bar" else "month"
  return scene, [_mc("chart_max", f"Which {noun} has the highest value in the chart?", best,
                     _pick(rng, [x for x in chart.labels if x != best], 3), rng)]


def chart_sum(ctx, rng):
  scene = sc.chart_scene(ctx, rng, "bar")
  chart = scene.chart
  qas, n = [], len(chart.labels)
  for i, j in _pick(rng, [(i, j) for i in range(n) for j in range(i + 1, n)], 2):
    total = chart.values[i] + chart.values[j]
    qas.append(_chart_number_mc(
        "chart_sum", f"What is the sum of the values of {chart.labels[i]} and {chart.labels[j]}?",
        total, rng))
  return scene, qas


def chart_difference(ctx, rng):
  scene = sc.chart_scene(ctx, rng, "bar")
  chart = scene.chart
  # The unique maximum makes at least one pair with a positive difference.
  pairs = [(i, j) for i in range(len(chart.values)) for j in range(len(chart.values))
           if chart.values[i] > chart.values[j]]
  return scene, [_chart_number_mc(
      "chart_difference",
      f"How much greater is the value of {chart.labels[i]} than the value of {chart.labels[j]}?",
      chart.values[i] - chart.values[j], rng) for i, j in _pick(rng, pairs, 2)]


def _two_counts(rng, ctx, low, high):
  classes = _distinct_classes(rng, ctx.vocabulary, 2)
  a = int(rng.integers(low, high + 1))
  b = int(rng.choice([n for n in range(1, 4) if n != a]))
  return classes, [a, b]


def count(ctx, rng, task="count"):
  classes, counts = _two_counts(rng, ctx, 1, 5)
  if rng.integers(2):
    classes, counts = classes[:1], counts[:1]
  scene = sc.retry(sc.objects_scene, ctx, rng, classes, counts)
  qas = []
  for c in classes:
    n = len(scene.named(c.name))
    question = f"How many {c.plural} are there in the image?"
    qas.append(QA(task, question, "open", str(n)) if task == "count_open"
               else _mc(task, question, str(n), _near_numbers(rng, n), rng))
  return scene, qas


def count_open(ctx, rng):
  return count(ctx, rng, "count_open")


def count_compare(ctx, rng):
  classes, counts = _two_counts(rng, ctx, 1, 4)
  scene = sc.retry(sc.objects_scene, ctx, rng, classes, counts)
  a, b = classes
  na, nb = len(scene.named(a.name)), len(scene.named(b.name))
  return scene, [_yes_no("count_compare", f"Are there more {a.plural} than {b.plural} in the image?",
                         na > nb),
                 _yes_no("count_compare", f"Are there more {b.plural} than {a.plural} in the image?",
                         nb > na)]


def _pair(ctx, rng):
  big, small = _distinct_classes(rng, ctx.vocabulary, 2)
  return sc.retry(sc.pair_scene, ctx, rng, big, small)


def spatial_relation(ctx, rng):
  scene = _pair(ctx, rng)
  a, b = scene.objects
  return scene, [_mc("spatial_relation", f"Where is the {x.name} relative to the {y.name}?",
                     sc.relation(x.box, y.box), sc.RELATIONS, rng) for x, y in ((a, b), (b, a))]


def spatial_yes_no(ctx, rng):
  scene = _pair(ctx, rng)
  a, b = scene.objects
  if rng.integers(2):
    a, b = b, a
  truth = sc.relation(a.box, b.box)
  wrong = sc.RELATIONS[int(rng.choice([i for i, r in enumerate(sc.RELATIONS) if r != truth]))]
  return scene, [_yes_no("spatial_yes_no", f"Is the {a.name} {r} the {b.name}?", r == truth)
                 for r in (truth, wrong)]


def larger(ctx, rng):
  scene = _pair(ctx, rng)
  big, small = sorted(scene.objects, key=lambda o: -o.area)
  names = [o.name for o in scene.objects]
  return scene, [_mc("larger", "Which object is larger in the image?", big.name, names, rng),
                 _mc("larger", "Which object is smaller in the image?", small.name, names, rng)]


def depth(ctx, rng):
  back, front = _distinct_classes(rng, ctx.vocabulary, 2)
  scene = sc.retry(sc.occlusion_scene, ctx, rng, back, front)
  hidden, shown = sorted(scene.objects, key=lambda o: o.area / o.full_area)
  names = [o.name for o in scene.objects]
  return scene, [_mc("depth", "Which object is in front, closer to the camera?", shown.name, names, rng),
                 _mc("depth", "Which object is partly hidden behind the other?", hidden.name, names,
                     rng)]


def legs_total(ctx, rng):
  animals = [c for c in ctx.vocabulary if c.legs is not None]
  classes = _distinct_classes(rng, animals, int(rng.integers(1, 3)))
  scene = sc.retry(sc.objects_scene, ctx, rng, classes, [int(rng.integers(1, 4)) for _ in classes])
  legs = {c.name: c.legs for c in classes}
  total = sum(legs[o.name] for o in scene.objects)
  return scene, [_mc("legs_total", "How many legs do the animals in the image have in total?",
                     str(total), _near_numbers(rng, total, step=2), rng)]


def sides_total(ctx, rng):
  polygons = [c for c in SHAPES if c.sides is not None]
  shapes, scene = _shapes(ctx, rng, polygons)
  sides = {c.name: c.sides for c in shapes}
  total = sum(sides[o.name] for o in scene.objects)
  return scene, [_mc("sides_total", "How many straight sides do the shapes in the image have in total?",
                     str(total), _near_numbers(rng, total), rng)]


GROUP_NOUNS = {"animal": "an animal", "fruit": "a fruit", "vegetable": "a vegetable",
               "food": "a cooked food", "vehicle": "a vehicle", "plant": "a plant"}


def category(ctx, rng):
  groups = _pick(rng, sorted(GROUP_NOUNS), 3)
  classes = [_distinct_classes(rng, [c for c in ctx.vocabulary if c.group == g], 1)[0] for g in groups]
  scene = sc.retry(sc.objects_scene, ctx, rng, classes, [1, 1, 1])
  asked = groups[0]
  outsiders = [c.name for c in _absent(ctx, scene, classes) if c.group not in (asked, "thing")]
  choices = [c.name for c in classes[1:]] + _pick(rng, outsiders, 1)
  return scene, [_mc("category", f"Which of these objects in the image is {GROUP_NOUNS[asked]}?",
                     classes[0].name, choices, rng)]


_DESCRIBE_SCENES = (existence, shape, read_word, bar_value, line_value, spatial_relation, depth)


def describe(ctx, rng):
  build = _DESCRIBE_SCENES[int(rng.integers(len(_DESCRIBE_SCENES)))]
  scene, _ = build(ctx, rng)
  return scene, [QA("describe", "Describe the image briefly.", "open", caption(scene), short=False)]


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("existence", "General", "perception", existence),
    Task("identity", "General", "perception", identity),
    Task("colour", "General", "perception", colour),
    Task("shape", "General", "perception", shape),
    Task("position", "General", "perception", position),
    Task("legs_total", "Knowledge", "reasoning", legs_total, needs_emoji=True),
    Task("sides_total", "Knowledge", "reasoning", sides_total),
    Task("chart_sum", "Knowledge", "reasoning", chart_sum),
    Task("chart_difference", "Knowledge", "reasoning", chart_difference),
    Task("category", "Knowledge", "reasoning", category, needs_emoji=True),
    Task("read_word", "OCR & Chart", "perception", read_word),
    Task("read_word_open", "OCR & Chart", "perception", read_word_open),
    Task("bar_value", "OCR & Chart", "perception", bar_value),
    Task("line_value", "OCR & Chart", "perception", line_value),
    Task("chart_max", "OCR & Chart", "perception", chart_max),
    Task("count", "Vision-Centric", "perception", count),
    Task("count_open", "Vision-Centric", "perception", count_open),
    Task("count_compare", "Vision-Centric", "reasoning", count_compare),
    Task("spatial_relation", "Vision-Centric", "reasoning", spatial_relation),
    Task("spatial_yes_no", "Vision-Centric", "reasoning", spatial_yes_no),
    Task("larger", "Vision-Centric", "reasoning", larger),
    Task("depth", "Vision-Centric", "reasoning", depth),
    Task("describe", None, "perception", describe),
)}


def available(emoji: bool) -> dict[str, Task]:
  """The tasks that can be drawn with the object source at hand."""
  return {name: t for name, t in TASKS.items() if emoji or not t.needs_emoji}
