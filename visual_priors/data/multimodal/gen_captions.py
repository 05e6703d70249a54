"""One-sentence captions of generated scenes, written from their ground truth."""

from __future__ import annotations

from collections import Counter

from visual_priors.data.multimodal.gen_objects import EMOJI_OBJECTS, SHAPES, by_name, with_article
from visual_priors.data.multimodal.scene import Scene, relation

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BACKGROUND_PHRASES = {
    "astronaut": "a photo of an astronaut", "coffee": "a photo of a cup of coffee",
    "chelsea": "a photo of a cat", "rocket": "a photo of a rocket launch",
    "hubble_deep_field": "a photo of deep space", "camera": "a photo of a man with a camera",
    "coins": "a photo of old coins", "moon": "a photo of the moon's surface",
    "brick": "a photo of a brick wall", "grass": "a photo of grass", "gravel": "a photo of gravel",
}
_CLASSES = by_name((*EMOJI_OBJECTS, *SHAPES))


def _counted(name: str, count: int) -> str:
  if count == 1:
    return with_article(name)
  return f"{NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else count} {_CLASSES[name].plural}"


def _listed(parts: list[str]) -> str:
  return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _coloured(scene: Scene) -> list[str]:
  return [with_article(f"{o.colour} {o.name}") if o.colour else with_article(o.name)
          for o in scene.objects]


def caption(scene: Scene) -> str:
  """What the image shows, in one sentence that only states ground truth."""
  where = f"on {BACKGROUND_PHRASES[scene.background]}" if scene.background else ""
  if scene.kind == "chart":
    chart = scene.chart
    values = ", ".join(f"{label} {value}" for label, value in zip(chart.labels, chart.values))
    what = "A bar chart of counts" if chart.kind == "bar" else "A line chart of monthly values"
    return f"{what}: {values}."
  if scene.kind == "text":
    return f'A sign with the word "{scene.text}" {where}.'
  if scene.kind == "shapes":
    return f"{_listed(_coloured(scene)).capitalize()} {where}."
  if scene.kind == "pair":
    big, small = scene.objects
    return (f"A large {big.name} {relation(big.box, small.box)} a small {small.name} {where}.")
  if scene.kind == "occlusion":
    back, front = scene.objects
    return f"{with_article(front.name).capitalize()} in front of {with_article(back.name)} {where}."
  if scene.kind == "existence":
    target = scene.objects[-1]
    size = "large" if target.area > 0.6 else "medium-sized" if target.area > 0.3 else "small"
    others = [o.name for o in scene.objects[:-1]]
    extra = f" and {_listed([with_article(n) for n in others])}" if others else ""
    return f"A {size} {target.name}{extra} {where}."
  counts = Counter(o.name for o in scene.objects)
  return f"{_listed([_counted(n, c) for n, c in counts.items()]).capitalize()} {where}."
