"""Scenes with exact ground truth: objects pasted on photo crops, shapes, rendered words, charts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visual_priors.data.multimodal import gen_assets
from visual_priors.data.multimodal.gen_objects import CHART_LABELS, COLOURS, MONTHS, ObjectClass

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
ALPHA_THRESHOLD = 128  # A sprite pixel belongs to the object where its alpha is at least this.
RELATIONS = ("to the left of", "to the right of", "above", "below")
SIZE_LEVELS = {"existence_0-30": (0.0, 0.3), "existence_30-60": (0.3, 0.6),
               "existence_60-100": (0.6, 1.0)}
_ATTEMPTS = 200


class PlacementError(RuntimeError):
  """A scene's constraints could not be met by the random draws it was given."""


@dataclasses.dataclass(frozen=True)
class Context:
  """What every scene of one generation run shares."""

  image_size: int
  split: str  # "train" or "eval": which region of each background photo crops come from
  vocabulary: tuple[ObjectClass, ...]  # the classes object scenes draw from
  emoji_font: str | None  # None: the vocabulary is drawn shapes


@dataclasses.dataclass(frozen=True)
class Placed:
  """An object as it ended up in the image.

  box: bounding box of its visible pixels; area: visible pixels / image pixels; full_area: the same
  before later objects covered it; depth: paste order (higher is in front); colour: for shapes.
  """

  name: str
  box: Box
  area: float
  full_area: float
  depth: int
  colour: str | None = None


@dataclasses.dataclass(frozen=True)
class Chart:
  kind: str  # "bar" or "line"
  labels: tuple[str, ...]
  values: tuple[int, ...]


@dataclasses.dataclass
class Scene:
  """An image and everything true about it by construction."""

  kind: str
  image: Image.Image
  objects: tuple[Placed, ...] = ()
  background: str | None = None
  background_contains: tuple[str, ...] = ()
  crop: Box | None = None
  text: str | None = None
  chart: Chart | None = None

  def record(self) -> dict[str, Any]:
    """The ground truth as JSON-ready values."""
    return {"kind": self.kind, "background": self.background,
            "background_contains": list(self.background_contains),
            "crop": list(self.crop) if self.crop else None, "text": self.text,
            "chart": dataclasses.asdict(self.chart) if self.chart else None,
            "objects": [{**dataclasses.asdict(o), "box": list(o.box)} for o in self.objects]}

  def named(self, name: str) -> list[Placed]:
    return [o for o in self.objects if o.name == name]


def relation(a: Box, b: Box) -> str | None:
  """Where `a` is relative to `b`, if exactly one of RELATIONS holds without ambiguity.

  "to the left of": a ends before b starts horizontally and their vertical extents overlap (and so
  on), so that exactly one relation is true.
  """
  overlap_x = min(a[2], b[2]) > max(a[0], b[0])
  overlap_y = min(a[3], b[3]) > max(a[1], b[1])
  if a[2] <= b[0] and overlap_y:
    return "to the left of"
  if b[2] <= a[0] and overlap_y:
    return "to the right of"
  if a[3] <= b[1] and overlap_x:
    return "above"
  if b[3] <= a[1] and overlap_x:
    return "below"
  return None


def quadrant(box: Box, image_size: int) -> str | None:
  """"top left" ... "bottom right" when the box lies entirely inside one quadrant, else None."""
  half = image_size / 2
  if box[2] <= half:
    horizontal = "left"
  elif box[0] >= half:
    horizontal = "right"
  else:
    return None
  if box[3] <= half:
    return f"top {horizontal}"
  if box[1] >= half:
    return f"bottom {horizontal}"
  return None


class Canvas:
  """A background with RGBA sprites pasted on it; keeps each sprite's mask to measure what shows."""

  def __init__(self, background: Image.Image):
    self.image = background.convert("RGBA")
    self.size = background.width
    self._layers: list[tuple[str, str | None, np.ndarray]] = []

  def paste(self, name: str, sprite: Image.Image, top_left: tuple[int, int], size: tuple[int, int],
            colour: str | None = None) -> None:
    layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
    layer.paste(sprite.resize(size, Image.Resampling.LANCZOS), top_left)
    self._layers.append((name, colour, np.asarray(layer)[:, :, 3] >= ALPHA_THRESHOLD))
    self.image = Image.alpha_composite(self.image, layer)

  def placed(self) -> tuple[Placed, ...]:
    """Every pasted object with its visible box and areas; PlacementError if one is hidden."""
    covered = np.zeros((self.size, self.size), bool)
    result = []
    for depth in range(len(self._layers) - 1, -1, -1):
      name, colour, mask = self._layers[depth]
      visible = mask & ~covered
      covered |= mask
      if not visible.any():
        raise PlacementError(f"{name} is entirely hidden.")
      ys, xs = np.nonzero(visible)
      box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
      result.append(Placed(name, box, float(visible.mean()), float(mask.mean()), depth, colour))
    return tuple(reversed(result))

  def rgb(self) -> Image.Image:
    return self.image.convert("RGB")


def fitted_size(sprite: Image.Image, side: float) -> tuple[int, int]:
  """The sprite's size scaled so its longer side is `side` pixels."""
  scale = side / max(sprite.size)
  return max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale))


def _overlaps(a: Box, b: Box, margin: int) -> bool:
  return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1]
              or b[3] + margin <= a[1])


def free_spot(rng: np.random.Generator, size: tuple[int, int], taken: Sequence[Box], region: Box,
              margin: int = 1) -> Box | None:
  """A box of `size` inside `region` that keeps `margin` pixels from every taken box, or None."""
  w, h = size
  if region[2] - region[0] < w or region[3] - region[1] < h:
    return None
  for _ in range(_ATTEMPTS):
    x = int(rng.integers(region[0], region[2] - w + 1))
    y = int(rng.integers(region[1], region[3] - h + 1))
    box = (x, y, x + w, y + h)
    if not any(_overlaps(box, t, margin) for t in taken):
      return box
  return None


def _background(ctx: Context, rng: np.random.Generator, classes: Sequence[ObjectClass] = ()):
  """A photo crop that shows nothing the pasted classes are called (no real cat behind a pasted one)."""
  names = {n for c in classes for n in c.names}
  photos = [p for p in gen_assets.PHOTOS if not names & set(p.contains)]
  photo = photos[int(rng.integers(len(photos)))]
  image, crop = gen_assets.crop_background(photo, ctx.split, rng, ctx.image_size)
  return photo, image, crop


def _scene(kind: str, canvas: Canvas, photo: gen_assets.Photo, crop: Box, **extra) -> Scene:
  return Scene(kind, canvas.rgb(), canvas.placed(), photo.name, photo.contains, crop, **extra)


def _random_colour(rng: np.random.Generator) -> str:
  return list(COLOURS)[int(rng.integers(len(COLOURS)))]


def _sprite(ctx: Context, obj: ObjectClass, colour: str | None) -> Image.Image:
  return gen_assets.object_sprite(obj, ctx.emoji_font, COLOURS[colour] if colour else None)


def retry(build, ctx: Context, rng: np.random.Generator, *args) -> Scene:
  """`build(ctx, rng, *args)`, drawn again (from the same generator) until its constraints hold."""
  for _ in range(_ATTEMPTS):
    try:
      return build(ctx, rng, *args)
    except PlacementError:
      continue
  raise RuntimeError(f"{build.__name__} found no valid scene in {_ATTEMPTS} draws at image size "
                     f"{ctx.image_size}; use a larger image_size.")


def objects_scene(ctx: Context, rng: np.random.Generator, classes: Sequence[ObjectClass],
                  counts: Sequence[int], regions: Sequence[Box] | None = None) -> Scene:
  """counts[i] copies of classes[i], one size per class, none touching; regions[i] bounds class i."""
  photo, background, crop = _background(ctx, rng, classes)
  canvas, taken, s = Canvas(background), [], ctx.image_size
  full = (0, 0, s, s)
  shapes = ctx.emoji_font is None or any(c.glyph is None for c in classes)
  for i, (obj, count) in enumerate(zip(classes, counts)):
    side = s * rng.uniform(0.16, 0.24) * (1.25 if shapes else 1.0)
    for _ in range(count):
      colour = _random_colour(rng) if obj.glyph is None else None
      sprite = _sprite(ctx, obj, colour)
      size = fitted_size(sprite, side)
      box = free_spot(rng, size, taken, regions[i] if regions else full)
      if box is None:
        raise PlacementError("no free spot")
      taken.append(box)
      canvas.paste(obj.name, sprite, box[:2], size, colour)
  return _scene("objects", canvas, photo, crop)


def shapes_scene(ctx: Context, rng: np.random.Generator, shapes: Sequence[ObjectClass]) -> Scene:
  """The given shapes, each in a different colour, none touching."""
  photo, background, crop = _background(ctx, rng)
  canvas, taken, s = Canvas(background), [], ctx.image_size
  colours = rng.permutation(list(COLOURS))[:len(shapes)]
  for obj, colour in zip(shapes, colours):
    sprite = _sprite(ctx, obj, str(colour))
    size = fitted_size(sprite, s * rng.uniform(0.24, 0.34))
    box = free_spot(rng, size, taken, (0, 0, s, s), margin=2)
    if box is None:
      raise PlacementError("no free spot")
    taken.append(box)
    canvas.paste(obj.name, sprite, box[:2], size, str(colour))
  return _scene("shapes", canvas, photo, crop)


def pair_scene(ctx: Context, rng: np.random.Generator, big: ObjectClass, small: ObjectClass) -> Scene:
  """A big and a small object side by side or one above the other, with one clear relation."""
  photo, background, crop = _background(ctx, rng, (big, small))
  canvas, s = Canvas(background), ctx.image_size
  colours = [str(c) for c in rng.permutation(list(COLOURS))[:2]]
  sprites = [_sprite(ctx, obj, c if obj.glyph is None else None)
             for obj, c in zip((big, small), colours)]
  sizes = [fitted_size(sprites[0], s * rng.uniform(0.4, 0.5)),
           fitted_size(sprites[1], s * rng.uniform(0.15, 0.2))]
  horizontal, big_first = bool(rng.integers(2)), bool(rng.integers(2))
  line = s * rng.uniform(0.35, 0.65)  # the shared centre line on the other axis
  boxes = []
  for i, (w, h) in enumerate(sizes):
    first = (i == 0) == big_first
    along = w if horizontal else h
    start = rng.uniform(0, s / 2 - along) if first else rng.uniform(s / 2, s - along)
    across = min(max(line - (h if horizontal else w) / 2, 0), s - (h if horizontal else w))
    x, y = (start, across) if horizontal else (across, start)
    boxes.append((int(x), int(y)))
  for obj, sprite, top_left, size, colour in zip((big, small), sprites, boxes, sizes, colours):
    canvas.paste(obj.name, sprite, top_left, size, colour if obj.glyph is None else None)
  scene = _scene("pair", canvas, photo, crop)
  a, b = scene.objects
  if relation(a.box, b.box) is None or a.area < 2 * b.area or _box_area(a.box) < 2 * _box_area(b.box):
    raise PlacementError("relation or size difference not clear")
  return scene


def _box_area(box: Box) -> int:
  return (box[2] - box[0]) * (box[3] - box[1])


def occlusion_scene(ctx: Context, rng: np.random.Generator, back: ObjectClass,
                    front: ObjectClass) -> Scene:
  """`front` pasted over part of `back`: 15-60% of the back object's pixels are covered."""
  photo, background, crop = _background(ctx, rng, (back, front))
  canvas, s = Canvas(background), ctx.image_size
  colours = [str(c) for c in rng.permutation(list(COLOURS))[:2]]
  for obj, colour, centre in zip((back, front), colours, (0.42, 0.58)):
    colour = colour if obj.glyph is None else None
    sprite = _sprite(ctx, obj, colour)
    w, h = fitted_size(sprite, s * rng.uniform(0.38, 0.48))
    cx, cy = s * (centre + rng.uniform(-0.08, 0.08)), s * (centre + rng.uniform(-0.08, 0.08))
    if rng.integers(2):
      cx = s - cx
    canvas.paste(obj.name, sprite, (round(cx - w / 2), round(cy - h / 2)), (w, h), colour)
  scene = _scene("occlusion", canvas, photo, crop)
  hidden = 1 - scene.objects[0].area / scene.objects[0].full_area
  if not 0.15 <= hidden <= 0.6:
    raise PlacementError("occlusion not clear")
  return scene


def text_scene(ctx: Context, rng: np.random.Generator, word: str) -> Scene:
  """`word` in dark capitals on a light sign over a photo crop."""
  photo, background, crop = _background(ctx, rng)
  s = ctx.image_size
  font_file = str(gen_assets.text_font_path())
  size = max(6, round(s * rng.uniform(0.16, 0.22)))
  font = ImageFont.truetype(font_file, size)
  while font.getbbox(word)[2] > 0.8 * s and size > 6:
    size -= 1
    font = ImageFont.truetype(font_file, size)
  left, top, right, bottom = font.getbbox(word)
  pad = max(2, size // 4)
  w, h = right - left + 2 * pad, bottom - top + 2 * pad
  x, y = int(rng.integers(0, s - w + 1)), int(rng.integers(0, s - h + 1))
  image = background.copy()
  draw = ImageDraw.Draw(image)
  plate = tuple(int(v) for v in rng.integers(215, 256, 3))
  draw.rectangle((x, y, x + w - 1, y + h - 1), fill=plate, outline=(40, 40, 40))
  ink = tuple(int(v) for v in rng.integers(0, 60, 3))
  draw.text((x + pad - left, y + pad - top), word, font=font, fill=ink)
  return Scene("text", image, (), photo.name, photo.contains, crop, text=word)


def chart_scene(ctx: Context, rng: np.random.Generator, kind: str) -> Scene:
  """A bar chart of 4-5 labelled counts or a line chart over 4-6 months, values 1-9 written on it.

  Exactly one value is the largest.
  """
  if kind == "bar":
    n = int(rng.integers(4, 6))
    labels = tuple(str(x) for x in rng.choice(CHART_LABELS, n, replace=False))
  elif kind == "line":
    n = int(rng.integers(4, 7))
    labels = MONTHS[:n]
  else:
    raise ValueError(f"Unknown chart kind {kind!r}: use 'bar' or 'line'.")
  top_value, top_index = int(rng.integers(3, 10)), int(rng.integers(n))
  values = [top_value if i == top_index else int(rng.integers(1, top_value)) for i in range(n)]
  chart = Chart(kind, labels, tuple(values))
  return Scene("chart", render_chart(chart, ctx.image_size, _random_colour(rng)), chart=chart)


def render_chart(chart: Chart, image_size: int, colour: str) -> Image.Image:
  """The chart drawn by matplotlib (default style, Agg) at image_size x image_size pixels.

  Bars (or a line with markers) over a baseline, each value written above its bar or point and each
  label below; figure-level artists rather than Axes keep it fast (~25 ms instead of ~90 ms).
  """
  import matplotlib
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from matplotlib.lines import Line2D
  from matplotlib.patches import Rectangle

  with matplotlib.rc_context():
    matplotlib.rcdefaults()
    inches = image_size / 100
    fig = Figure(figsize=(inches, inches), dpi=100)
    canvas = FigureCanvasAgg(fig)
    # Values stay legible at 64 pixels; labels get what room there is.
    value_font, label_font = max(4.5, image_size / 24), max(2.0, image_size / 28)
    line = max(0.5, image_size / 150)
    rgb = tuple(c / 255 for c in COLOURS[colour])
    left, bottom, width, height = 0.05, 0.15, 0.9, 0.76
    step = width / len(chart.values)
    xs = [left + step * (i + 0.5) for i in range(len(chart.values))]
    ys = [bottom + height * v / 10 for v in chart.values]
    if chart.kind == "bar":
      for x, y in zip(xs, ys):
        fig.add_artist(Rectangle((x - 0.35 * step, bottom), 0.7 * step, y - bottom, color=rgb))
    else:
      fig.add_artist(Line2D(xs, ys, color=rgb, linewidth=line, marker="o", markersize=2 * line))
    fig.add_artist(Line2D([left, left + width], [bottom, bottom], color="black", linewidth=line))
    for x, y, value, label in zip(xs, ys, chart.values, chart.labels):
      fig.text(x, y + 0.015, str(value), ha="center", va="bottom", fontsize=value_font)
      fig.text(x, bottom - 0.02, label, ha="center", va="top", fontsize=label_font)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
  return Image.fromarray(pixels)


def existence_scene(ctx: Context, rng: np.random.Generator, level: str) -> Scene:
  """One target object whose visible pixels cover a fraction of the image inside the level's bounds.

  The target may share the image with up to two small objects that do not touch it (there is
  seldom room beside a large one); it is pasted last, so nothing covers it. objects[-1] is the target.
  """
  low, high = SIZE_LEVELS[level]
  goal = rng.uniform(max(low, 0.02) + 0.02, min(high, 0.9) - 0.03)
  s = ctx.image_size
  target = ctx.vocabulary[int(rng.integers(len(ctx.vocabulary)))]
  photo, background, crop = _background(ctx, rng, (target,))
  colour = _random_colour(rng) if target.glyph is None else None
  sprite = _sprite(ctx, target, colour)
  centre = rng.uniform(0.3, 0.7, 2) * s if goal > 0.3 else rng.uniform(0.2, 0.8, 2) * s
  side = _side_for_fraction(sprite, goal, centre, s)
  size = fitted_size(sprite, side)
  top_left = (round(centre[0] - size[0] / 2), round(centre[1] - size[1] / 2))
  target_box = (*top_left, top_left[0] + size[0], top_left[1] + size[1])
  canvas, taken = Canvas(background), [target_box]
  others = [c for c in ctx.vocabulary
            if not c.names & (target.names | set(photo.contains))]
  for _ in range(int(rng.integers(0, 3))):
    other = others[int(rng.integers(len(others)))]
    other_colour = _random_colour(rng) if other.glyph is None else None
    other_sprite = _sprite(ctx, other, other_colour)
    other_size = fitted_size(other_sprite, s * rng.uniform(0.14, 0.2))
    box = free_spot(rng, other_size, taken, (0, 0, s, s), margin=2)
    if box is not None:
      taken.append(box)
      canvas.paste(other.name, other_sprite, box[:2], other_size, other_colour)
  canvas.paste(target.name, sprite, top_left, size, colour)
  scene = _scene("existence", canvas, photo, crop)
  if not low < scene.objects[-1].area <= high:
    raise PlacementError("target area outside its level")
  return scene


def _side_for_fraction(sprite: Image.Image, goal: float, centre: np.ndarray, image_size: int) -> float:
  """The longer side (pixels) at which the sprite, centred at `centre`, covers `goal` of the image.

  Solved by bisection on a copy at most 64 pixels wide (coverage is scale-free); the caller measures
  the full-size result exactly.
  """
  work = min(image_size, 64)
  scale = work / image_size
  low, high = 1.0, 8.0 * work
  for _ in range(18):
    side = (low + high) / 2
    w, h = fitted_size(sprite, side)
    layer = Image.new("RGBA", (work, work), (0, 0, 0, 0))
    cx, cy = centre * scale
    layer.paste(sprite.resize((w, h), Image.Resampling.BILINEAR), (round(cx - w / 2), round(cy - h / 2)))
    covered = (np.asarray(layer)[:, :, 3] >= ALPHA_THRESHOLD).mean()
    low, high = (side, high) if covered < goal else (low, side)
  return (low + high) / 2 / scale
