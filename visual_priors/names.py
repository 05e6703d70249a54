"""Name lookups that fail loudly: every registry resolves names through `lookup`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

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
