"""Abstract TPU devices for a named slice (`v5p-128`), for compile-only checks on a CPU host via libtpu."""

from __future__ import annotations

import importlib.util
import os
import re

import jax

# Generation -> (topology-name prefix for get_topology_desc, accelerator-type prefix, mesh rank,
# TensorCores counted per chip in the slice name). v4/v5p slice names count TensorCores (2 per chip);
# v5e/v6e names count chips.
_GENERATIONS = {
    "v4": ("v4", "v4", 3, 2),
    "v5p": ("v5p", "v5p", 3, 2),
    "v5e": ("v5e", "v5litepod", 2, 1),
    "v5litepod": ("v5e", "v5litepod", 2, 1),
    "v6e": ("v6e", "v6e", 2, 1),
}

# What libtpu needs to describe a topology on a machine without TPUs (docs/design.md, install notes): no
# metadata-server query, a worker list of one, and no multi-process lock file.
_OFFLINE_ENV = {"TPU_SKIP_MDS_QUERY": "1", "TPU_WORKER_HOSTNAMES": "localhost", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}


def _grid(chips: int, rank: int) -> tuple[int, ...]:
  """The most cube-like power-of-two grid of `chips` chips as TPU names it: 2x2x1, 2x2x4, 4x8."""
  dims = [1] * rank
  remaining = chips
  while remaining > 1:
    dims[dims.index(min(dims))] *= 2
    remaining //= 2
  return tuple(sorted(d for d in dims if d > 1)) + tuple(d for d in dims if d == 1)


def parse_slice(name: str) -> tuple[str, str]:
  """`v5p-128` -> (topology name `v5p:4x4x4`, accelerator type `v5p-128`)."""
  match = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)-(\d+)", name.strip().lower())
  if not match:
    raise ValueError(
        f"Unknown TPU slice {name!r}; use <generation>-<size> with generation one of "
        f"{', '.join(_GENERATIONS)}, e.g. v5p-128, v5e-16, v6e-64, v4-32.")
  generation, size = match.group(1), int(match.group(2))
  topology_prefix, accelerator_prefix, rank, cores_per_chip = _GENERATIONS[generation]
  chips = size // cores_per_chip
  if size % cores_per_chip or chips < 1 or chips & (chips - 1) or (rank == 3 and chips < 4):
    raise ValueError(
        f"TPU slice {name!r} has no standard topology: {generation} sizes are powers of two"
        + (f" counting {cores_per_chip} TensorCores per chip, at least {4 * cores_per_chip}" if rank == 3 else "")
        + ".")
  topology = "x".join(str(d) for d in _grid(chips, rank))
  return f"{topology_prefix}:{topology}", f"{accelerator_prefix}-{size}"


def topology_devices(name: str) -> list[jax.Device]:
  """The abstract devices of a TPU slice (compile only, nothing runs); needs libtpu installed."""
  topology_name, accelerator_type = parse_slice(name)
  if importlib.util.find_spec("libtpu") is None:
    raise RuntimeError(
        f"--topology {name} needs libtpu to describe TPU devices, and it is not installed. Install the "
        f"build matching jax {jax.__version__} with `pip install \"jax[tpu]=={jax.__version__}\"` "
        "(or `pip install -e '.[tpu]'`; about 640 MB). It runs on a CPU host, compile-only.")
  for key, value in _OFFLINE_ENV.items():
    os.environ.setdefault(key, value)
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", accelerator_type)
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  try:
    return list(topologies.get_topology_desc(platform="tpu", topology_name=topology_name).devices)
  except Exception as error:  # libtpu reports failures as several runtime error types.
    raise RuntimeError(f"libtpu could not describe the {name} topology ({topology_name}): {error}") from error
