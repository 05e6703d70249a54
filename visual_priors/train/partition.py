"""Which parameters train: '/'-joined parameter paths, regex selection, and the trainable/frozen split."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax

Tree = dict[str, Any]


def key_name(key: Any) -> str:
  """One path component as text: a dict key, sequence index or attribute name."""
  for attribute in ("key", "idx", "name"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def path_string(key_path: tuple[Any, ...]) -> str:
  """A jax key path as 'a/b/0/kernel'."""
  return "/".join(key_name(k) for k in key_path)


def flatten_paths(tree: Any) -> dict[str, Any]:
  """`{'a/b/kernel': leaf, ...}` for every leaf of `tree`."""
  return {path_string(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def compile_regex(pattern: str, what: str) -> re.Pattern[str]:
  try:
    return re.compile(pattern)
  except re.error as error:
    raise ValueError(f"{what} regex {pattern!r} is not a valid regular expression: {error}.") from None


def path_mask(tree: Any, pattern: str, what: str) -> Any:
  """A tree of bools like `tree`: True where the leaf's '/'-joined path fully matches `pattern`."""
  regex = compile_regex(pattern, what)
  return jax.tree_util.tree_map_with_path(lambda p, _: bool(regex.fullmatch(path_string(p))), tree)


def _split_nested(tree: Mapping[str, Any], keep: Callable[[str], bool], prefix: str) -> tuple[Tree, Tree]:
  chosen: Tree = {}
  rest: Tree = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, Mapping):
      sub_chosen, sub_rest = _split_nested(value, keep, f"{path}/")
      if sub_chosen:
        chosen[key] = sub_chosen
      if sub_rest:
        rest[key] = sub_rest
    elif keep(path):
      chosen[key] = value
    else:
      rest[key] = value
  return chosen, rest


def split_trainable(params: Mapping[str, Any], trainable: str, frozen: str = "") -> tuple[Tree, Tree]:
  """Splits a nested dict of parameters into (trainable, frozen) nested dicts.

  A parameter trains when its path fully matches `trainable` and does not fully match `frozen`
  (an empty `frozen` freezes nothing). Raises if nothing would train, listing some paths.
  """
  trainable_regex = compile_regex(trainable, "trainable")
  frozen_regex = compile_regex(frozen, "frozen") if frozen else None

  def keep(path: str) -> bool:
    if not trainable_regex.fullmatch(path):
      return False
    return not (frozen_regex and frozen_regex.fullmatch(path))

  chosen, rest = _split_nested(params, keep, "")
  if not chosen:
    examples = ", ".join(list(flatten_paths(params))[:6])
    raise ValueError(
        f"No parameter is trainable: trainable={trainable!r}, frozen={frozen!r} leave nothing. "
        f"Parameter paths look like: {examples}."
    )
  return chosen, rest


def merge_trees(first: Mapping[str, Any], second: Mapping[str, Any]) -> Tree:
  """The union of two nested dicts with disjoint leaves (the inverse of `split_trainable`)."""
  merged: Tree = dict(first)
  for key, value in second.items():
    if key not in merged:
      merged[key] = value
    elif isinstance(value, Mapping) and isinstance(merged[key], Mapping):
      merged[key] = merge_trees(merged[key], value)
    else:
      raise ValueError(f"Parameter {key!r} appears in both trees; they must be disjoint.")
  return merged
