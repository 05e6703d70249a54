"""JAX's persistent compilation cache: where a run keeps it, and switching it on for a block of work.

A relaunch of a run (a resume, the next experiment of a grid, an evaluation) compiles the same programs again:
the train state's initialiser, the train and eval steps, the decoding and scoring functions. With the cache on,
XLA's executables are written to a directory and the next process loads them instead of compiling (JAX keys
them by the program, the devices and the compiler options, so a stale entry is never used).

Where: `<runs root>/.jax_cache` by default for the runner; `runtime.compile_cache` in the experiment config
("" = that default, "off" = no cache, else a directory) and the environment variable VISUAL_PRIORS_COMPILE_CACHE
(same values; it wins over the config) choose otherwise. `runtime` never enters a stage key, so neither changes
a result's identity. Only compiles that take at least `jax_persistent_cache_min_compile_time_secs` (1 s by
default) are written.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator, Mapping

import jax

ENV = "VISUAL_PRIORS_COMPILE_CACHE"
DEFAULT_NAME = ".jax_cache"  # under the runs root
OFF = ("off", "none", "0", "false", "no")


def resolve(root: str | os.PathLike[str] | None, setting: str | None = "",
            environ: Mapping[str, str] | None = None) -> pathlib.Path | None:
  """The cache directory: $VISUAL_PRIORS_COMPILE_CACHE if set, else `setting` ("" = `<root>/.jax_cache`, or
  no cache without a root; "off" = none; else that directory)."""
  env = os.environ if environ is None else environ
  value = env.get(ENV)
  value = (setting or "") if value is None else value
  value = value.strip()
  if value.lower() in OFF:
    return None
  if value:
    return pathlib.Path(value).expanduser().absolute()
  return None if root is None else pathlib.Path(root).absolute() / DEFAULT_NAME


def current() -> pathlib.Path | None:
  """The directory JAX's persistent cache writes to now, if any."""
  value = jax.config.jax_compilation_cache_dir
  return pathlib.Path(value) if value else None


def _set(path: pathlib.Path | None) -> None:
  from jax._src import compilation_cache  # pylint: disable=import-outside-toplevel

  if current() == path:
    return
  jax.config.update("jax_compilation_cache_dir", None if path is None else str(path))
  # JAX opens its cache once per process, at the first compile after a directory is set; reset it so a later
  # directory (another runs root in the same process) is opened in turn.
  compilation_cache.reset_cache()


def enable(path: str | os.PathLike[str] | None) -> None:
  """Sets the cache directory for the rest of the process (None: no cache)."""
  if path is not None:
    path = pathlib.Path(path).absolute()
    path.mkdir(parents=True, exist_ok=True)
  _set(path)


@contextlib.contextmanager
def use(path: str | os.PathLike[str] | None) -> Iterator[pathlib.Path | None]:
  """Within this block compiles go through the cache at `path` (None: no cache); the previous setting after."""
  previous = current()
  enable(path)
  try:
    yield current()
  finally:
    _set(previous)
