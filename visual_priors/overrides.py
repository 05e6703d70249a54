"""Dotted config keys and the one parser of typed KEY=VALUE overrides that every command's --set goes through."""

from __future__ import annotations

import ast
import copy
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import ml_collections

from visual_priors.names import closest


def is_mapping(value: Any) -> bool:
  """A dict-like node of a config tree (a Mapping or a ConfigDict)."""
  return isinstance(value, (Mapping, ml_collections.ConfigDict))


def dotted_paths(tree: Mapping[str, Any], open_keys: Collection[str] = (), prefix: str = "") -> list[str]:
  """Every dotted path of a nested mapping, not descending into the free-form `open_keys` subtrees."""
  out = []
  for key, value in tree.items():
    path = f"{prefix}{key}"
    out.append(path)
    if is_mapping(value) and path not in open_keys:
      out += dotted_paths(value, open_keys, f"{path}.")
  return out


def get_key(config: Mapping[str, Any], path: str) -> Any:
  """The value at a dotted path ("pretrain.peak_lr"), or a ValueError naming the closest valid paths."""
  value: Any = config
  for part in path.split("."):
    if not is_mapping(value) or part not in value:
      near = closest(path, dotted_paths(config))
      hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
      raise ValueError(f"Unknown config key {path!r}.{hint}")
    value = value[part]
  return value


def parse_value(text: str) -> Any:
  """A command-line value: a Python literal (3e-4, 50_000_000_000, True, ['a', 'b']) or else a string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _example(path: str, old: Any, kind: type) -> str:
  """`--set PATH=VALUE` with a value of the field's type (its current one where that is a fine example)."""
  if kind is bool:
    value = "True"
  elif kind is int:
    value = str(old) if isinstance(old, int) and not isinstance(old, bool) and old else "100"
  elif kind is float:
    value = repr(old) if isinstance(old, float) and old else "0.5"
  elif kind is str:
    value = old if isinstance(old, str) and old and "," not in old and old.strip() == old else "text"
  elif kind in (list, tuple):
    items = list(old)[:2] if isinstance(old, (list, tuple)) else []
    value = ",".join(items) if items and all(isinstance(i, str) and "," not in i for i in items) else "a,b"
  elif is_mapping(old) and old:
    key = next(iter(old))
    return f"--set {path}.{key}={old[key]!r}"
  else:
    return f"--set {path}.KEY=VALUE"
  return f"--set {path}={value}"


_KIND_NAMES = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
               list: "a comma-separated list (a,b) or a list literal (['a', 'b'])"}


def coerce_value(path: str, old: Any, new: Any, kind: type | None = None) -> Any:
  """`new` as the type of the field it replaces (`old`'s, or `kind` for an unset placeholder), else a ValueError
  naming the key, the value, the type expected and an example. Unset fields take any value."""
  if kind is None or kind is type(None):
    kind = None if old is None else type(old)
  if kind is None:
    return new
  number = isinstance(new, (int, float)) and not isinstance(new, bool)
  if kind is bool:
    ok = isinstance(new, bool)
  elif kind is int:
    if isinstance(new, float) and math.isfinite(new) and new.is_integer():
      return int(new)  # token_budget=5e9
    ok = isinstance(new, int) and not isinstance(new, bool)
  elif kind is float:
    if number:
      return float(new)
    ok = False
  elif kind is str:
    if number:
      return str(new)  # eval.alignment.layer=-4
    ok = isinstance(new, str)
  elif kind in (list, tuple):
    if isinstance(new, str):
      new = [item.strip() for item in new.split(",") if item.strip()]  # eval.benchmarks=gqa,mme
    if isinstance(new, (list, tuple)):
      return kind(new)
    ok = False
  elif issubclass(kind, (Mapping, ml_collections.ConfigDict)):
    ok = is_mapping(new)
  else:
    return new
  if not ok:
    expected = _KIND_NAMES.get(list if kind is tuple else kind, "a mapping (set its keys one by one)")
    raise ValueError(f"Cannot set {path} to {new!r}: expected {expected}, e.g. {_example(path, old, kind)}.")
  return new


def set_key(config: ml_collections.ConfigDict, path: str, value: Any, open_keys: Collection[str] = ()) -> None:
  """Sets a dotted path to `value` as its field's type (`coerce_value`); under a free-form `open_keys` subtree,
  missing keys (and the mappings above them) are created, so "pretrain.overrides.model.n_layers=4" works."""
  parts = path.split(".")
  opened = next((len(key.split(".")) for key in open_keys if path.startswith(f"{key}.")), None)
  node: Any = config
  for depth, part in enumerate(parts[:-1]):
    if opened is not None and depth >= opened and part not in node:
      node[part] = ml_collections.ConfigDict()
    node = node[part] if is_mapping(node) and part in node else get_key(config, ".".join(parts[:depth + 1]))
  leaf = parts[-1]
  if leaf not in node:
    if opened is None:
      get_key(config, path)  # raises, naming the closest valid keys
    node[leaf] = value
    return
  kind = node.get_type(leaf) if isinstance(node, ml_collections.ConfigDict) else None
  try:
    node[leaf] = coerce_value(path, node[leaf], value, kind)
  except TypeError as error:
    raise ValueError(f"Cannot set {path} to {value!r}: {error}") from None


def assign(config: ml_collections.ConfigDict, assignment: str, open_keys: Collection[str] = ()) -> None:
  """Applies one --set "key=value" to `config` in place (`set_key`), the value parsed as a literal."""
  path, sep, text = assignment.partition("=")
  if not sep or not path.strip():
    raise ValueError(f"--set {assignment!r}: expected KEY=VALUE, e.g. pretrain.peak_lr=1e-4.")
  set_key(config, path.strip(), parse_value(text.strip()), open_keys)


def apply_assignments(config: ml_collections.ConfigDict, assignments: Sequence[str],
                      open_keys: Collection[str] = ()) -> ml_collections.ConfigDict:
  """A copy of `config` with --set "key=value" assignments applied (`assign`)."""
  config = copy.deepcopy(config)
  for assignment in assignments:
    assign(config, assignment, open_keys)
  return config
