"""The paper's text sources, segment labels, label unions and published per-source label rates."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from visual_priors.names import lookup

# The 16 pre-training sources of the study (docs/paper.md, section 2), each >= 50B tokens there.
SOURCES: tuple[str, ...] = (
    "academia", "arts", "biology", "code", "computer-science", "economics", "encyclopedia",
    "food", "law", "literature", "math", "medicine", "philosophy", "politics", "q-a-forum",
    "web-crawl",
)
# Local sources this framework adds to the paper's 16: text whose visual labels the study measures.
EXTRA_SOURCES: tuple[str, ...] = ("visual-description",)

# The six segment labels an LLM assigned to each 1024-token segment (multi-label; none = "None").
LABEL_DEFINITIONS: Mapping[str, str] = {
    "code": "code reasoning: algorithmic problem solving, implementation, software engineering",
    "math": "math reasoning: logical mathematical reasoning, proofs, applying math principles",
    "science": "science reasoning: hypothesis testing, data analysis, modelling complex systems",
    "visual-concept": "visual concept: names of visual entities (objects, people, places, actions, scenes)",
    "visual-attribute": "visual attribute: colour, size, shape, texture, style",
    "visual-relationship": "visual relationship: spatial or part-whole relations between entities",
}
LABELS: tuple[str, ...] = tuple(LABEL_DEFINITIONS)
REASONING_LABELS: tuple[str, ...] = ("code", "math", "science")
VISUAL_LABELS: tuple[str, ...] = ("visual-concept", "visual-attribute", "visual-relationship")

# A category is one label or a union of labels; a segment is in it when it carries any member.
CATEGORIES: Mapping[str, tuple[str, ...]] = {
    **{label: (label,) for label in LABELS},
    "reasoning": REASONING_LABELS,
    "visual": VISUAL_LABELS,
}
# The paper's column headings, used when printing rate tables.
CATEGORY_HEADINGS: Mapping[str, str] = {
    "code": "code", "math": "math", "science": "science", "reasoning": "reasoning comb.",
    "visual-concept": "vis. concept", "visual-attribute": "vis. attribute",
    "visual-relationship": "vis. relationship", "visual": "visual comb.",
}
# Column order of the paper's table.
TABLE_CATEGORIES: tuple[str, ...] = tuple(CATEGORY_HEADINGS)

# Published share (%) of segments carrying each category, per source (docs/paper.md, section 2).
# The union columns were measured by the paper, not derived: they are not the sum of the parts.
# The other 10 sources' rates were not published.
PUBLISHED_RATES_PERCENT: Mapping[str, Mapping[str, float]] = {
    "web-crawl": dict(zip(TABLE_CATEGORIES, (3.5, 3.6, 8.6, 10.0, 27.7, 14.1, 13.5, 26.9))),
    "encyclopedia": dict(zip(TABLE_CATEGORIES, (0.5, 2.3, 3.0, 3.4, 12.2, 2.9, 6.0, 12.4))),
    "academia": dict(zip(TABLE_CATEGORIES, (21.0, 68.2, 74.4, 83.3, 5.2, 0.7, 5.1, 5.3))),
    "literature": dict(zip(TABLE_CATEGORIES, (0.3, 1.3, 8.9, 9.1, 33.4, 8.4, 27.9, 33.5))),
    "math": dict(zip(TABLE_CATEGORIES, (31.1, 81.7, 83.2, 92.9, 7.8, 2.8, 6.6, 8.0))),
    "code": dict(zip(TABLE_CATEGORIES, (96.7, 13.3, 6.8, 97.3, 3.3, 2.0, 2.4, 3.7))),
}


@dataclasses.dataclass(frozen=True)
class LabelRates:
  """Share (fraction in [0, 1]) of a source's segments in each category."""

  source: str
  fractions: Mapping[str, float]

  def __post_init__(self):
    for category, value in self.fractions.items():
      resolve_category(category)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"Label rate of {category!r} for source {self.source!r} is {value}; "
                         "rates are fractions in [0, 1].")

  def __getitem__(self, category: str) -> float:
    return lookup(self.fractions, resolve_category(category), f"category with a rate for {self.source!r}")


def resolve_source(name: str) -> str:
  """`name` if it is one of the paper's 16 sources, else an error naming the closest ones."""
  return lookup({s: s for s in SOURCES}, name, "source")


def resolve_category(name: str) -> str:
  """`name` if it is a label or label union, else an error naming the closest ones."""
  return lookup({c: c for c in CATEGORIES}, name, "category")


def labels_of(category: str) -> tuple[str, ...]:
  """The labels whose union is `category`."""
  return CATEGORIES[resolve_category(category)]


def published_rates() -> dict[str, LabelRates]:
  """The paper's measured label rates for the six sources it published them for."""
  return {
      source: LabelRates(source, {c: v / 100.0 for c, v in rates.items()})
      for source, rates in PUBLISHED_RATES_PERCENT.items()
  }
