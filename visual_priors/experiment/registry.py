"""The named experiments: loads the config-as-code files of experiments/ and resolves names to configs.

Each experiment file, experiments/<file>.py, defines `get_config(arg: str | None) -> ConfigDict` (arg: a
big_vision-style "key=value,..." string, `parse_arg`) and lists its named experiments with either `sweep(add)`, calling
`add(name, arg)` once per experiment, or a module-level `EXPERIMENTS` mapping {name: arg}. Names are
"<family>/<short>" ("mix/mix6") and unique across files. The registry names each config after its entry and sets
`meta.family` to the name's family, so files say neither. Other Python files in the folder (launch scripts) are
recognised by having no top-level `def get_config(` and are left alone.

Where the files are: `directory` when given, else `$VISUAL_PRIORS_EXPERIMENTS`, else the experiments/
folder of the checkout this package was imported from (an editable install or a source tree). The
folder is deliberately not package data: the configs are meant to be read and edited next to the code,
and a copy inside site-packages would go stale silently. A non-editable install therefore has no
folder; every call then fails naming where it looked and how to point at one.

Besides registered names, `get_experiment("<file>:<arg>")` builds a variant straight from a file, e.g.
"mixes:mix=mix3,local": it is named after the file's entry with the same arguments, else as its get_config names
it, else after its arguments in the file's family ("category/category-visual-percent-33"). The `local` switch,
which every experiment accepts without declaring it, shrinks a config to the CPU-sized recipe
(`local.apply_local`) and appends "-local" to its name.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import re
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import ml_collections

from visual_priors.experiment import graph, schema
from visual_priors.experiment.local import apply_local
from visual_priors.names import UnknownNameError, closest, lookup
from visual_priors.overrides import parse_value

ENV_VAR = "VISUAL_PRIORS_EXPERIMENTS"
_CHECKOUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "experiments"


@dataclasses.dataclass(frozen=True)
class Entry:
  """Where a named experiment comes from: its file and the argument of that file's get_config."""

  name: str
  file: pathlib.Path
  arg: str


def experiments_dir(directory: str | os.PathLike[str] | None = None) -> pathlib.Path:
  """The folder of experiment files (see the module docstring), or FileNotFoundError saying how to set it."""
  if directory is not None:
    path, origin = pathlib.Path(directory), "the directory argument"
  elif os.environ.get(ENV_VAR):
    path, origin = pathlib.Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
  else:
    path, origin = _CHECKOUT_DIR, "the checkout next to the visual_priors package"
  path = path.expanduser()
  if not path.is_dir():
    raise FileNotFoundError(
        f"No experiments folder at {str(path)!r} (from {origin}). The named experiments live in the "
        f"experiments/ folder of a visual_priors checkout: install it editable (pip install -e .) or set "
        f"${ENV_VAR}=/path/to/visual_priors/experiments.")
  return path


def experiment_files(directory: str | os.PathLike[str] | None = None) -> list[pathlib.Path]:
  """The experiment files of the folder, sorted: every *.py not starting with "_" that defines
  `get_config` (checked on the text, so other scripts there, e.g. launch_xm.py, are never imported)."""
  return sorted(p for p in experiments_dir(directory).glob("*.py")
                if not p.name.startswith("_") and re.search(r"^def get_config\(", p.read_text(), re.MULTILINE))


_MODULES: dict[tuple[str, int, int], ModuleType] = {}


def load_file(path: str | os.PathLike[str]) -> ModuleType:
  """Imports an experiment file by path (cached until it changes on disk)."""
  path = pathlib.Path(path).resolve()
  stat = path.stat()
  cache_key = (str(path), stat.st_mtime_ns, stat.st_size)
  if cache_key not in _MODULES:
    module_name = f"visual_priors_experiments.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
      raise ValueError(f"Cannot import experiment file {str(path)!r}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
      raise ValueError(f"Experiment file {str(path)!r} defines no get_config(arg).")
    _MODULES[cache_key] = module
  return _MODULES[cache_key]


def _entries_of(path: pathlib.Path) -> list[Entry]:
  module = load_file(path)
  entries: list[Entry] = []

  def add(name: str, arg: str = "") -> None:
    entries.append(Entry(name, path, arg))

  if callable(getattr(module, "sweep", None)):
    module.sweep(add)
  elif isinstance(getattr(module, "EXPERIMENTS", None), dict):
    for name, arg in module.EXPERIMENTS.items():
      add(name, arg)
  else:
    raise ValueError(f"Experiment file {str(path)!r} lists no experiments: define sweep(add) or EXPERIMENTS.")
  return entries


def entries(directory: str | os.PathLike[str] | None = None) -> dict[str, Entry]:
  """Every named experiment of the folder, by name; two files naming one experiment is an error."""
  table: dict[str, Entry] = {}
  for path in experiment_files(directory):
    for entry in _entries_of(path):
      if not re.fullmatch(r"[a-z0-9_]+/[a-z0-9._-]+", entry.name):
        raise ValueError(f"Experiment name {entry.name!r} in {path.name} is not '<family>/<short>' in lower case.")
      if entry.name in table:
        raise ValueError(f"Experiment {entry.name!r} is named by both {table[entry.name].file.name} and "
                         f"{path.name}.")
      table[entry.name] = entry
  return table


def experiment_names(filter: str | None = None, *,  # pylint: disable=redefined-builtin
                     directory: str | os.PathLike[str] | None = None) -> list[str]:
  """Registered names in registration order (files sorted), those matching the regex `filter` (re.search)."""
  names = list(entries(directory))
  if filter:
    try:
      pattern = re.compile(filter)
    except re.error as error:
      raise ValueError(f"--filter {filter!r} is not a regular expression: {error}.") from None
    names = [n for n in names if pattern.search(n)]
  return names


def parse_arg(arg: str | None, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """A big_vision-style experiment argument: "key=value,key2=value2"; a bare word means word=True
  ("reduced" == "reduced=True"). Keys must be in `defaults` (when given), whose values set the types."""
  result = dict(defaults or {})
  for item in filter(None, (part.strip() for part in (arg or "").split(","))):
    key, sep, text = item.partition("=")
    key = key.strip()
    value = parse_value(text.strip()) if sep else True
    if defaults is not None:
      if key not in defaults:
        near = closest(key, defaults)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise ValueError(f"Unknown experiment argument {key!r} in {arg!r}.{hint} "
                         f"Arguments: {', '.join(defaults)}.")
      old = defaults[key]
      if isinstance(old, str) and not isinstance(value, str):
        value = text.strip()
      elif isinstance(old, bool) and not isinstance(value, bool):
        raise ValueError(f"Experiment argument {key!r} is a switch: give True/False, got {text!r}.")
    result[key] = value
  return result


def _split_local(arg: str) -> tuple[str, bool]:
  """(the argument without the registry's own `local` switch, whether it was on)."""
  parsed = parse_arg(arg)
  local = parsed.pop("local", False)
  if not isinstance(local, bool):
    raise ValueError(f"Experiment argument 'local' is a switch: give True/False, got {local!r}.")
  kept = [part.strip() for part in arg.split(",") if part.strip() and part.partition("=")[0].strip() != "local"]
  return ",".join(kept), local


def _build(module_file: pathlib.Path, arg: str, name: str | None) -> ml_collections.ConfigDict:
  arg, local = _split_local(arg)
  listed = _entries_of(module_file) if name is None else []
  if name is None:  # a "<file>:<arg>" variant: named as the file's entry with the same arguments, if any
    wanted = parse_arg(arg)
    name = next((entry.name for entry in listed if parse_arg(entry.arg) == wanted), None)
  config = load_file(module_file).get_config(arg or None)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"{module_file.name}:get_config({arg!r}) returned a {type(config).__name__}, "
                     "not a ConfigDict.")
  if name is None and not config.name:  # else after its arguments, in the file's family
    family = family_of(listed[0].name) if listed else module_file.stem
    name = f"{family}/{graph.slug(arg.replace('=', '-').replace(',', '-')) or 'default'}"
  config.name = name or config.name
  if family_of(config.name) in schema.FAMILIES:
    config.meta.family = family_of(config.name)
  if local:
    config = apply_local(config)
    config.name += "-local"
  return config


def get_experiment(name: str, overrides: Sequence[str] = (), *,
                   directory: str | os.PathLike[str] | None = None) -> ml_collections.ConfigDict:
  """The finalized config of a registered name, or of "<file stem>:<arg>"; `overrides` are "key=value"
  strings applied before finalizing (the CLI's --set)."""
  stem, sep, arg = name.partition(":")
  if sep:
    files = {p.stem: p for p in experiment_files(directory)}
    config = _build(lookup(files, stem, "experiment file"), arg, None)
  else:
    table = entries(directory)
    if name not in table:
      near = closest(name, table)
      hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
      families = ", ".join(sorted({family_of(n) for n in table}))
      raise UnknownNameError(f"Unknown experiment {name!r}.{hint} Families: {families}; "
                             "`python -m visual_priors list` shows every name.")
    entry = table[name]
    config = _build(entry.file, entry.arg, entry.name)
  return schema.finalize(schema.apply_overrides(config, overrides))


def family_of(name: str) -> str:
  """"mix" for "mix/mix6"."""
  return name.partition("/")[0]

