"""Name lookups that fail loudly: every registry resolves names through `lookup`."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

V = TypeVar("V")


class UnknownNameError(KeyError):
  """A name that is not registered; the message lists the closest valid names."""

  def __str__(self) -> str:  # KeyError would repr() the message and add quotes.
    return str(self.args[0])


def closest(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
  """The valid names closest to `name`, best first."""
  valid = list(valid)
  found = difflib.get_close_matches(name, valid, n=n, cutoff=0.4)
  if not found:
    found = [v for v in valid if name.lower() in v.lower() or v.lower() in name.lower()][:n]
  return found


def lookup(table: Mapping[str, V], name: str, kind: str) -> V:
  """`table[name]`, or an UnknownNameError naming the kind and the closest valid names."""
  try:
    return table[name]
  except KeyError:
    near = closest(name, table)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise UnknownNameError(
        f"Unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(sorted(table))}."
    ) from None


def unknown_keys(tree: Any, reference: Any, open_keys: Collection[str] = (), prefix: str = "") -> list[str]:
  """Dotted paths of the keys in `tree` that `reference` lacks (e.g. a config against its defaults), recursing
  into nested mappings (dicts, ConfigDicts) except under the free-form `open_keys` paths."""
  unknown = []
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if key not in reference:
      unknown.append(path)
    elif path not in open_keys and hasattr(value, "items") and hasattr(reference[key], "items"):
      unknown += unknown_keys(value, reference[key], open_keys, f"{path}.")
  return unknown
