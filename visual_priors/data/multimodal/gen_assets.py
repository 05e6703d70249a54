"""The generator's raw material: background photos with train/eval crop regions, object sprites, fonts."""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visual_priors.data.corpora import fetch
from visual_priors.data.multimodal.gen_objects import ObjectClass

EMOJI_PACKAGE = fetch.Package("deb", "fonts-noto-color-emoji")
EMOJI_FONT_FILE = "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
EMOJI_FONT_SIZE = 109  # The only size the bitmap font renders at.
TRAIN_REGION = 0.6  # Training crops come from the left 60% of each photo, evaluation crops from the rest.


@dataclasses.dataclass(frozen=True)
class Photo:
  """A background photo shipped in the scikit-image wheel, and the things it shows."""

  name: str
  contains: tuple[str, ...]
  licence: str


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", ("person", "astronaut", "flag"), "public domain (NASA)"),
    Photo("coffee", ("cup", "coffee cup", "spoon", "saucer"), "CC0 (Rachel Michetti)"),
    Photo("chelsea", ("cat",), "CC0 (Stefan van der Walt)"),
    Photo("rocket", ("rocket",), "public domain (NASA)"),
    Photo("hubble_deep_field", ("galaxy",), "public domain (NASA)"),
    Photo("camera", ("person", "camera"), "CC0 (scikit-image)"),
    Photo("coins", ("coin",), "CC0 (Walters Art Museum via scikit-image)"),
    Photo("moon", ("moon",), "public domain (scikit-image)"),
    Photo("brick", (), "CC0 (scikit-image)"),
    Photo("grass", (), "CC0 (scikit-image)"),
    Photo("gravel", (), "CC0 (scikit-image)"),
)


@functools.lru_cache(maxsize=None)
def photo_pixels(name: str) -> np.ndarray:
  """The photo as uint8 RGB (H, W, 3); grey photos are repeated over the three channels."""
  import skimage.data  # Imported here: loading skimage is slow and only the generator needs it.

  pixels = np.asarray(getattr(skimage.data, name)())
  if pixels.ndim == 2:
    pixels = np.repeat(pixels[:, :, None], 3, axis=2)
  pixels = pixels[:, :, :3]
  pixels.setflags(write=False)
  return pixels


def crop_background(photo: Photo, split: str, rng: np.random.Generator,
                    image_size: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
  """A random square crop of `photo` inside the split's region, resized; returns it and the crop box.

  Training crops lie in the left TRAIN_REGION of the photo's width and evaluation crops in the rest,
  so no evaluation pixel was ever seen in training.
  """
  pixels = photo_pixels(photo.name)
  height, width = pixels.shape[:2]
  boundary = int(width * TRAIN_REGION)
  if split == "train":
    left, right = 0, boundary
  elif split == "eval":
    left, right = boundary, width
  else:
    raise ValueError(f"Unknown split {split!r}: use 'train' or 'eval'.")
  largest = min(right - left, height)
  side = int(rng.integers(largest // 2, largest + 1))
  x0 = int(rng.integers(left, right - side + 1))
  y0 = int(rng.integers(0, height - side + 1))
  box = (x0, y0, x0 + side, y0 + side)
  image = Image.fromarray(np.ascontiguousarray(pixels[y0:y0 + side, x0:x0 + side]))
  return image.resize((image_size, image_size), Image.Resampling.BILINEAR), box


def emoji_font_path(downloads_dir: str | os.PathLike[str] | None = None,
                    log=lambda _: None) -> tuple[pathlib.Path, str]:
  """Noto Color Emoji from Debian's fonts-noto-color-emoji (downloaded once): its path and version.

  Raises RuntimeError when the package cannot be fetched (no apt-get, or no registry).
  """
  found = fetch.fetch(EMOJI_PACKAGE, fetch.downloads_root(downloads_dir), log=log)
  path = found.path / EMOJI_FONT_FILE
  if not path.is_file():
    raise RuntimeError(f"{EMOJI_PACKAGE.name} {found.version} has no {EMOJI_FONT_FILE}.")
  return path, found.version


def text_font_path() -> pathlib.Path:
  """DejaVu Sans Bold as bundled in the matplotlib wheel (a declared dependency)."""
  import matplotlib

  return pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"


@functools.lru_cache(maxsize=None)
def _emoji_font(path: str) -> ImageFont.FreeTypeFont:
  return ImageFont.truetype(path, EMOJI_FONT_SIZE)


@functools.lru_cache(maxsize=None)
def emoji_sprite(glyph: str, font_path: str) -> Image.Image:
  """The glyph rendered in colour as an RGBA image cropped to its visible pixels."""
  font = _emoji_font(font_path)
  canvas = Image.new("RGBA", (EMOJI_FONT_SIZE * 3 // 2, EMOJI_FONT_SIZE * 3 // 2), (0, 0, 0, 0))
  ImageDraw.Draw(canvas).text((0, 0), glyph, font=font, embedded_color=True)
  box = canvas.getbbox()
  if box is None:
    raise RuntimeError(f"The emoji font {font_path} draws nothing for {glyph!r}.")
  return canvas.crop(box)


_SHAPE_RESOLUTION = 128


def _polygon(sides: int, radius: float, centre: float, rotation: float) -> list[tuple[float, float]]:
  angles = rotation + np.arange(sides) * 2 * np.pi / sides
  return [(centre + radius * np.cos(a), centre + radius * np.sin(a)) for a in angles]


@functools.lru_cache(maxsize=None)
def shape_sprite(shape: str, colour: tuple[int, int, int]) -> Image.Image:
  """A filled shape with a thin dark outline, as an RGBA image cropped to its visible pixels."""
  size = _SHAPE_RESOLUTION
  canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
  draw = ImageDraw.Draw(canvas)
  fill, outline, width, c, r = (*colour, 255), (30, 30, 30, 255), 4, size / 2, size / 2 - 3
  if shape == "circle":
    draw.ellipse((c - r, c - r, c + r, c + r), fill=fill, outline=outline, width=width)
  elif shape == "square":
    draw.rectangle((c - r * 0.85, c - r * 0.85, c + r * 0.85, c + r * 0.85), fill=fill,
                   outline=outline, width=width)
  elif shape in ("triangle", "pentagon", "hexagon"):
    sides = {"triangle": 3, "pentagon": 5, "hexagon": 6}[shape]
    draw.polygon(_polygon(sides, r, c, -np.pi / 2), fill=fill, outline=outline, width=width)
  elif shape == "star":
    outer = _polygon(5, r, c, -np.pi / 2)
    inner = _polygon(5, r * 0.42, c, -np.pi / 2 + np.pi / 5)
    points = [p for pair in zip(outer, inner) for p in pair]
    draw.polygon(points, fill=fill, outline=outline, width=width)
  else:
    raise ValueError(f"Unknown shape {shape!r}.")
  return canvas.crop(canvas.getbbox())


def object_sprite(obj: ObjectClass, emoji_font: str | None,
                  colour: tuple[int, int, int] | None = None) -> Image.Image:
  """The RGBA sprite for `obj`: its emoji glyph, or its drawn shape in `colour`."""
  if obj.glyph is not None:
    if emoji_font is None:
      raise ValueError(f"Object {obj.name!r} is an emoji but no emoji font is available.")
    return emoji_sprite(obj.glyph, emoji_font)
  if colour is None:
    raise ValueError(f"Shape {obj.name!r} needs a colour.")
  return shape_sprite(obj.name, colour)
