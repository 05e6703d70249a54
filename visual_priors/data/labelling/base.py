"""The segment-labeller interface, label bit masks, and the registry that builds labellers from configs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import ml_collections

from visual_priors import names
from visual_priors.data import categories


class Labeller(Protocol):
  """Assigns each text segment a set of labels from `categories.LABELS` (possibly empty)."""

  name: str  # Identity used in cache keys and manifests; includes the labeller's version or model.

  def label(self, texts: Sequence[str]) -> list[frozenset[str]]:
    """One label set per text, in order."""


def labels_to_mask(labels: Iterable[str]) -> int:
  """The bit mask of `labels`: bit i is set when `categories.LABELS[i]` is present."""
  mask = 0
  for label in labels:
    mask |= 1 << names.lookup(_LABEL_BITS, label, "label")
  return mask


def mask_to_labels(mask: int) -> frozenset[str]:
  """The labels whose bits are set in `mask` (the inverse of `labels_to_mask`)."""
  if not 0 <= mask < 1 << len(categories.LABELS):
    raise ValueError(f"Label mask {mask} is outside [0, {(1 << len(categories.LABELS)) - 1}]: "
                     f"only the {len(categories.LABELS)} bits of categories.LABELS exist.")
  return frozenset(label for bit, label in enumerate(categories.LABELS) if mask >> bit & 1)


_LABEL_BITS: Mapping[str, int] = {label: bit for bit, label in enumerate(categories.LABELS)}

LabellerFactory = Callable[[ml_collections.ConfigDict], Labeller]
_FACTORIES: dict[str, LabellerFactory] = {}


def register_labeller(kind: str) -> Callable[[LabellerFactory], LabellerFactory]:
  """Registers a factory for configs with `kind: <kind>`."""

  def register(factory: LabellerFactory) -> LabellerFactory:
    if kind in _FACTORIES:
      raise ValueError(f"Labeller kind {kind!r} is registered twice.")
    _FACTORIES[kind] = factory
    return factory

  return register


def labeller_kinds() -> tuple[str, ...]:
  return tuple(sorted(_FACTORIES))


def make_labeller(config: ml_collections.ConfigDict | Mapping[str, Any]) -> Labeller:
  """The labeller `config` describes: `kind` ("lexicon" | "llm") plus that kind's fields."""
  if "kind" not in config:
    raise ValueError(f"Labeller config {dict(config)} has no 'kind'; set kind to one of "
                     f"{', '.join(labeller_kinds())}.")
  factory = names.lookup(_FACTORIES, config["kind"], "labeller kind")
  return factory(ml_collections.ConfigDict(dict(config)))


def config_fields(config: ml_collections.ConfigDict, defaults: Mapping[str, Any],
                  required: Sequence[str] = ()) -> dict[str, Any]:
  """The fields of a labeller config, with `defaults` filled in; unknown or missing fields fail clearly.

  `kind` is consumed by `make_labeller` and not returned.
  """
  given = {key: value for key, value in config.items() if key != "kind"}
  valid = set(defaults) | set(required)
  for key in given:
    if key not in valid:
      near = names.closest(key, valid)
      hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
      raise ValueError(f"Unknown field {key!r} in a {config.get('kind')!r} labeller config.{hint} "
                       f"Valid fields: {', '.join(sorted(valid))}.")
  missing = [key for key in required if given.get(key) in (None, "")]
  if missing:
    raise ValueError(f"A {config.get('kind')!r} labeller config needs {', '.join(missing)}; "
                     f"got fields {sorted(given)}.")
  return {**defaults, **given}
