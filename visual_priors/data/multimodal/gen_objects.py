"""The generator's vocabularies: object classes (emoji or drawn shapes), colours, words, chart labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

GROUPS = ("animal", "fruit", "vegetable", "food", "vehicle", "plant", "thing", "shape")


@dataclasses.dataclass(frozen=True)
class ObjectClass:
  """One nameable object class.

  synonyms: other names of the same thing (never used as distractors for it); `legs` for animals and
  `sides` for polygons are the facts that Knowledge questions add up; `glyph` is the emoji that draws
  it (None for shapes, drawn with PIL).
  """

  name: str
  plural: str
  group: str
  synonyms: tuple[str, ...] = ()
  legs: int | None = None
  sides: int | None = None
  glyph: str | None = None

  def __post_init__(self):
    if self.group not in GROUPS:
      raise ValueError(f"Object group {self.group!r} is not one of {GROUPS}.")

  @property
  def names(self) -> frozenset[str]:
    """Every name this class answers to."""
    return frozenset((self.name, *self.synonyms))


def _animal(name, plural, glyph, legs, *synonyms):
  return ObjectClass(name, plural, "animal", tuple(synonyms), legs=legs, glyph=glyph)


def _thing(name, plural, group, glyph, *synonyms):
  return ObjectClass(name, plural, group, tuple(synonyms), glyph=glyph)


EMOJI_OBJECTS: tuple[ObjectClass, ...] = (
    _animal("dog", "dogs", "\U0001F415", 4, "puppy", "hound"),
    _animal("cat", "cats", "\U0001F408", 4, "kitten"),
    _animal("horse", "horses", "\U0001F40E", 4, "pony"),
    _animal("cow", "cows", "\U0001F404", 4, "cattle"),
    _animal("pig", "pigs", "\U0001F416", 4, "hog"),
    _animal("sheep", "sheep", "\U0001F411", 4, "lamb", "ewe"),
    _animal("elephant", "elephants", "\U0001F418", 4),
    _animal("rabbit", "rabbits", "\U0001F407", 4, "bunny", "hare"),
    _animal("giraffe", "giraffes", "\U0001F992", 4),
    _animal("camel", "camels", "\U0001F42A", 4, "dromedary"),
    _animal("hedgehog", "hedgehogs", "\U0001F994", 4),
    _animal("mouse", "mice", "\U0001F401", 4),
    _animal("turtle", "turtles", "\U0001F422", 4, "tortoise"),
    _animal("chicken", "chickens", "\U0001F414", 2, "hen", "rooster"),
    _animal("duck", "ducks", "\U0001F986", 2, "mallard"),
    _animal("penguin", "penguins", "\U0001F427", 2),
    _animal("owl", "owls", "\U0001F989", 2),
    _animal("spider", "spiders", "\U0001F577", 8),
    _animal("ant", "ants", "\U0001F41C", 6),
    _animal("ladybug", "ladybugs", "\U0001F41E", 6, "ladybird", "lady beetle"),
    _animal("butterfly", "butterflies", "\U0001F98B", 6),
    _animal("snail", "snails", "\U0001F40C", 0),
    _animal("fish", "fish", "\U0001F41F", 0),
    _animal("snake", "snakes", "\U0001F40D", 0, "serpent"),
    _thing("apple", "apples", "fruit", "\U0001F34E"),
    _thing("banana", "bananas", "fruit", "\U0001F34C"),
    _thing("grapes", "bunches of grapes", "fruit", "\U0001F347", "grape"),
    _thing("watermelon", "watermelon slices", "fruit", "\U0001F349", "melon"),
    _thing("lemon", "lemons", "fruit", "\U0001F34B"),
    _thing("cherries", "pairs of cherries", "fruit", "\U0001F352", "cherry"),
    _thing("strawberry", "strawberries", "fruit", "\U0001F353"),
    _thing("carrot", "carrots", "vegetable", "\U0001F955"),
    _thing("broccoli", "heads of broccoli", "vegetable", "\U0001F966"),
    _thing("pizza", "pizza slices", "food", "\U0001F355"),
    _thing("hamburger", "hamburgers", "food", "\U0001F354", "burger"),
    _thing("bread", "loaves of bread", "food", "\U0001F35E", "loaf"),
    _thing("car", "cars", "vehicle", "\U0001F697", "automobile"),
    _thing("bus", "buses", "vehicle", "\U0001F68C", "coach"),
    _thing("bicycle", "bicycles", "vehicle", "\U0001F6B2", "bike"),
    _thing("airplane", "airplanes", "vehicle", "\U0001F6E9", "plane", "aeroplane"),
    _thing("sailboat", "sailboats", "vehicle", "\u26F5", "boat"),
    _thing("tree", "trees", "plant", "\U0001F333"),
    _thing("sunflower", "sunflowers", "plant", "\U0001F33B", "flower"),
    _thing("umbrella", "umbrellas", "thing", "\U0001F302"),
    _thing("house", "houses", "thing", "\U0001F3E0", "home"),
    _thing("soccer ball", "soccer balls", "thing", "\u26BD", "football", "ball"),
    _thing("basketball", "basketballs", "thing", "\U0001F3C0", "ball"),
    _thing("guitar", "guitars", "thing", "\U0001F3B8"),
    _thing("key", "keys", "thing", "\U0001F511"),
    _thing("book", "books", "thing", "\U0001F4D5"),
    _thing("light bulb", "light bulbs", "thing", "\U0001F4A1", "bulb", "lamp"),
    _thing("teddy bear", "teddy bears", "thing", "\U0001F9F8", "teddy"),
    _thing("hammer", "hammers", "thing", "\U0001F528"),
    _thing("glasses", "pairs of glasses", "thing", "\U0001F453", "eyeglasses", "spectacles"),
    _thing("top hat", "top hats", "thing", "\U0001F3A9", "hat"),
    _thing("shoe", "shoes", "thing", "\U0001F45F", "sneaker", "trainer"),
    _thing("cup", "cups", "thing", "\u2615", "mug", "coffee cup", "hot beverage"),
)

SHAPES: tuple[ObjectClass, ...] = (
    ObjectClass("circle", "circles", "shape", ("disc", "disk"), sides=0),
    ObjectClass("triangle", "triangles", "shape", sides=3),
    ObjectClass("square", "squares", "shape", sides=4),
    ObjectClass("pentagon", "pentagons", "shape", sides=5),
    ObjectClass("hexagon", "hexagons", "shape", sides=6),
    ObjectClass("star", "stars", "shape"),
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (30, 165, 60),
    "blue": (35, 75, 225),
    "yellow": (245, 220, 25),
    "orange": (250, 135, 20),
    "purple": (135, 45, 180),
    "pink": (255, 110, 190),
}

WORDS: tuple[str, ...] = (
    "CAT", "DOG", "SUN", "MAP", "BOX", "RED", "CUP", "HAT", "KEY", "BUS", "TREE", "FISH", "BOOK",
    "DOOR", "MILK", "RAIN", "STOP", "OPEN", "BLUE", "GOLD", "LAMP", "SHOP", "PARK", "ROAD", "BIRD",
    "CAKE", "SHIP", "STAR", "MOON", "FARM", "APPLE", "HOUSE", "WATER", "BREAD", "TRAIN", "CLOUD",
    "RIVER", "PLANT", "CHAIR", "TABLE", "GREEN", "MUSIC", "LIGHT", "SMILE", "PIZZA", "TIGER",
)

CHART_LABELS: tuple[str, ...] = ("ants", "bees", "cats", "dogs", "owls", "pigs", "cows", "fish")
MONTHS: tuple[str, ...] = ("Jan", "Feb", "Mar", "Apr", "May", "Jun")


def by_name(classes: Iterable[ObjectClass]) -> dict[str, ObjectClass]:
  """Classes keyed by their name."""
  return {c.name: c for c in classes}


def excluded_names(present: Iterable[ObjectClass], extra_names: Iterable[str] = ()) -> frozenset[str]:
  """Every name (and synonym) of the present classes, plus names of things a background shows."""
  names = set(extra_names)
  for c in present:
    names |= c.names
  return frozenset(names)


def absent_classes(vocabulary: Sequence[ObjectClass], present: Iterable[ObjectClass],
                   extra_names: Iterable[str] = ()) -> list[ObjectClass]:
  """Classes that share no name or synonym with a present class or with the background's content."""
  excluded = excluded_names(present, extra_names)
  return [c for c in vocabulary if not (c.names & excluded)]


_PLURAL_NAMES = frozenset({"grapes", "cherries", "glasses"})


def with_article(name: str) -> str:
  """'a dog', 'an apple', 'some grapes'."""
  if name in _PLURAL_NAMES:
    return f"some {name}"
  return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
