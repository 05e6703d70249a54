"""Device meshes, logical-axis rules, and the shardings of parameters, activations and batches.

Parameters and activations name their dimensions with logical axes (`batch`, `length`, `embed`,
`heads`, `kv_heads`, `head_dim`, `mlp`, `vocab`, `layers`); one rules table maps each logical axis
to zero or more mesh axes of a ("data", "fsdp", "tensor") mesh. Changing the parallelism is an edit
of the mesh shape or of the rules, never of model code.

Resolution: a logical axis maps to the mesh axes its rule names, minus mesh axes that an earlier
dimension of the same array already uses. With the default rules an activation (batch, length,
embed) therefore shards batch over (data, fsdp) and leaves embed whole, while a parameter
(embed, mlp) shards embed over fsdp (ZeRO-3 style) and mlp over tensor (Megatron style).

Activation constraints (`constrain`) apply only inside `activation_sharding(mesh, rules)`; outside
it they are no-ops, so the same model code runs unsharded on one device.

Multi-host: call `maybe_initialize_distributed()` first thing in a process. It calls
`jax.distributed.initialize()` when the environment describes a multi-process job:
  * JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID) set explicitly;
  * SLURM with more than one task (SLURM_NTASKS > 1);
  * Open MPI (OMPI_MCA_orte_hnp_uri);
  * a multi-host Cloud TPU slice (TPU_WORKER_HOSTNAMES listing several hosts, or
    MEGASCALE_COORDINATOR_ADDRESS for multi-slice).
Afterwards every host builds the same global mesh with `make_mesh` and feeds its own slice of the
global batch (`jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch)`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import mesh_utils
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

LogicalRules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

DEFAULT_LOGICAL_AXIS_RULES: LogicalRules = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
    # Vision and text towers (models/vision): their own names, so they can be sharded apart from
    # the LM (e.g. replicated, or a head count the tensor axis does not divide: set "vis_heads" None).
    ("patch", None),
    ("vis_embed", "fsdp"),
    ("vis_heads", "tensor"),
    ("vis_mlp", "tensor"),
)


def mesh_sizes(mesh_shape: Mapping[str, int], num_devices: int) -> dict[str, int]:
  """The ("data", "fsdp", "tensor") sizes of `mesh_shape` over `num_devices` devices, -1 resolved."""
  unknown = sorted(set(mesh_shape) - set(MESH_AXES))
  if unknown:
    raise ValueError(f"Unknown mesh axes {unknown}; the mesh axes are {MESH_AXES}.")
  sizes = [int(mesh_shape.get(axis, 1)) for axis in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ValueError(f"At most one mesh axis may be -1 (the rest), got {dict(mesh_shape)}.")
  if any(size == 0 or size < -1 for size in sizes):
    raise ValueError(f"Mesh axis sizes must be positive or -1, got {dict(mesh_shape)}.")
  known = int(np.prod([size for size in sizes if size != -1]))
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(
          f"Mesh {dict(mesh_shape)} cannot fill {num_devices} devices: {num_devices} is not "
          f"divisible by {known}.")
    sizes[sizes.index(-1)] = num_devices // known
  if int(np.prod(sizes)) != num_devices:
    raise ValueError(
        f"Mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices but "
        f"{num_devices} are available; set one axis to -1 to use the rest.")
  return dict(zip(MESH_AXES, sizes))


def make_mesh(mesh_shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ("data", "fsdp", "tensor") mesh; absent axes have size 1 and one axis may be -1 (the rest)."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = list(mesh_sizes(mesh_shape, len(devices)).values())
  try:
    # Topology-aware order: the last (tensor) axis lands on the fastest interconnect.
    device_grid = mesh_utils.create_device_mesh(sizes, devices)
  except (ValueError, NotImplementedError, AssertionError):
    device_grid = np.asarray(devices).reshape(sizes)
  return Mesh(device_grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def logical_to_spec(logical_axes: Sequence[str | None], rules: LogicalRules) -> PartitionSpec:
  """The PartitionSpec for one array's logical axes; mesh axes are used at most once per array."""
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name in logical_axes:
    if name is not None and name not in table:
      raise ValueError(
          f"Logical axis {name!r} has no rule; add ({name!r}, <mesh axes or None>) to the rules "
          f"(known: {', '.join(sorted(table))}).")
    target = table.get(name) if name is not None else None
    mesh_axes = (target,) if isinstance(target, str) else tuple(target or ())
    free = tuple(axis for axis in mesh_axes if axis not in used)
    used.update(free)
    spec.append(None if not free else free[0] if len(free) == 1 else free)
  while spec and spec[-1] is None:
    spec.pop()
  return PartitionSpec(*spec)


def _is_logical_spec(node: Any) -> bool:
  return isinstance(node, (tuple, PartitionSpec)) and all(
      axis is None or isinstance(axis, str) for axis in node)


def state_shardings(state: nnx.State, mesh: Mesh,
                    rules: LogicalRules = DEFAULT_LOGICAL_AXIS_RULES) -> nnx.State:
  """NamedShardings for an nnx.State (concrete or abstract), from each Variable's `out_sharding`.

  The result has the state's tree structure, so it serves directly as jit in/out shardings.
  Variables without logical axes are replicated.
  """

  def sharding_of(variable: nnx.Variable) -> nnx.Variable:
    axes = variable.get_metadata().get("out_sharding") or ()
    return variable.replace(NamedSharding(mesh, logical_to_spec(axes, rules)))

  return jax.tree.map(sharding_of, state, is_leaf=lambda node: isinstance(node, nnx.Variable))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of (B, T) batch arrays: examples split over the data and fsdp axes."""
  return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


class _ActiveSharding(threading.local):
  mesh: Mesh | None = None
  rules: LogicalRules = DEFAULT_LOGICAL_AXIS_RULES


_ACTIVE = _ActiveSharding()


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: LogicalRules = DEFAULT_LOGICAL_AXIS_RULES) -> Iterator[None]:
  """Within this context (at trace time) `constrain` pins activations to `mesh` via `rules`."""
  previous = (_ACTIVE.mesh, _ACTIVE.rules)
  _ACTIVE.mesh, _ACTIVE.rules = mesh, rules
  try:
    yield
  finally:
    _ACTIVE.mesh, _ACTIVE.rules = previous


@contextlib.contextmanager
def unconstrained() -> Iterator[None]:
  """Within this context `constrain` is a no-op again (e.g. a small model traced data-parallel on a mesh, its
  shardings left to XLA's propagation from its inputs)."""
  previous = _ACTIVE.mesh
  _ACTIVE.mesh = None
  try:
    yield
  finally:
    _ACTIVE.mesh = previous


def active_mesh() -> Mesh | None:
  """The mesh of the enclosing `activation_sharding` context, if any."""
  return _ACTIVE.mesh


def active_rules() -> LogicalRules:
  """The logical-axis rules of the enclosing `activation_sharding` context (the defaults outside one)."""
  return _ACTIVE.rules


def batch_shards(mesh: Mesh | None = None, rules: LogicalRules | None = None) -> int:
  """How many ways the logical `batch` axis is split on `mesh` (default: the active mesh; 1 without one)."""
  mesh = _ACTIVE.mesh if mesh is None else mesh
  if mesh is None:
    return 1
  spec = logical_to_spec(("batch",), _ACTIVE.rules if rules is None else rules)
  return int(np.prod([mesh.shape[axis] for axis in jax.tree.leaves(tuple(spec))]))


def batch_multiple(batch_size: int) -> int:
  """`batch_size` rounded up to a multiple of the active mesh's batch shards (unchanged outside a mesh): the
  batch an evaluator that pads its last batch uses, so its rows split evenly over the devices."""
  shards = batch_shards()
  return -(-batch_size // shards) * shards


def put_batch(array: Any) -> jax.Array:
  """A host array whose leading dimension is the batch, on the active mesh with rows split like the logical
  `batch` axis (every process passes the whole array); outside a mesh, on the default device."""
  if _ACTIVE.mesh is None:
    return jax.numpy.asarray(array)
  array = np.asarray(array)
  sharding = NamedSharding(_ACTIVE.mesh, logical_to_spec(("batch",), _ACTIVE.rules))
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def place(value: Any, sharding: jax.sharding.Sharding) -> jax.Array:
  """`value` with `sharding`, which may span several processes' devices: a host array (or one on this process's
  devices) that every process holds whole goes in by its shards (`jax.device_put` takes only shardings of this
  process's devices for it); a global array is resharded."""
  if sharding.is_fully_addressable or (isinstance(value, jax.Array) and not value.is_fully_addressable):
    return jax.device_put(value, sharding)
  host = np.asarray(value)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (what an evaluator's outputs are, so any process can read them)."""
  return NamedSharding(mesh, PartitionSpec())


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
  """`with_sharding_constraint` by logical axis names; a no-op outside `activation_sharding`."""
  if _ACTIVE.mesh is None:
    return x
  if len(logical_axes) != x.ndim:
    raise ValueError(f"Logical axes {tuple(logical_axes)} do not match an array of shape {x.shape}.")
  sharding = NamedSharding(_ACTIVE.mesh, logical_to_spec(logical_axes, _ACTIVE.rules))
  return jax.lax.with_sharding_constraint(x, sharding)


def distributed_environment(environ: Mapping[str, str] | None = None) -> str | None:
  """Which multi-process launcher the environment describes ("explicit", "slurm", ...), or None."""
  env = os.environ if environ is None else environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return "explicit"
  if env.get("SLURM_JOB_ID") and int(env.get("SLURM_NTASKS", "1")) > 1:
    return "slurm"
  if env.get("OMPI_MCA_orte_hnp_uri"):
    return "openmpi"
  hosts = [host for host in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if host.strip()]
  if len(hosts) > 1 or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
    return "cloud_tpu"
  return None


# Timeouts of the job's coordination service (seconds), read by `maybe_initialize_distributed` when set: how long a
# process waits for the others to start, and how long a silent process (killed, its host gone) goes unnoticed
# before every other process is stopped (jax's defaults: 300 and 100).
INIT_TIMEOUT_ENV = "VISUAL_PRIORS_DISTRIBUTED_INIT_TIMEOUT_S"
HEARTBEAT_TIMEOUT_ENV = "VISUAL_PRIORS_DISTRIBUTED_HEARTBEAT_TIMEOUT_S"


def maybe_initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
  """Calls `jax.distributed.initialize()` for a multi-process job; returns whether it is initialized.

  Call before anything touches `jax.devices()`. Single-process runs (no launcher variables) are
  left alone and return False. Cross-process collectives on CPU go through gloo (jax's default since 0.4.3x,
  set here for older versions). $VISUAL_PRIORS_DISTRIBUTED_INIT_TIMEOUT_S and
  $VISUAL_PRIORS_DISTRIBUTED_HEARTBEAT_TIMEOUT_S set the coordination service's timeouts.
  """
  env = os.environ if environ is None else environ
  launcher = distributed_environment(env)
  if launcher is None:
    return False
  if jax.distributed.is_initialized():
    return True
  if "jax_cpu_collectives_implementation" in jax.config.values:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  timeouts = {name: int(float(env[variable])) for name, variable in (
      ("initialization_timeout", INIT_TIMEOUT_ENV), ("heartbeat_timeout_seconds", HEARTBEAT_TIMEOUT_ENV))
      if env.get(variable)}
  if launcher == "explicit":
    jax.distributed.initialize(
        coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
        num_processes=int(env["JAX_NUM_PROCESSES"]) if "JAX_NUM_PROCESSES" in env else None,
        process_id=int(env["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in env else None,
        **timeouts,
    )
  else:
    jax.distributed.initialize(**timeouts)  # jax detects SLURM, Open MPI and Cloud TPU clusters itself.
  return True


def is_multiprocess() -> bool:
  """Whether this process is one of several of a `jax.distributed` job."""
  return jax.distributed.is_initialized() and jax.process_count() > 1


def sync_processes(name: str) -> None:
  """Waits until every process of a multi-process job gets here (`name` tells barriers apart in errors); a no-op
  in a single process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def stop_job_on_error() -> Iterator[None]:
  """In a multi-process job, an exception leaving the block prints its traceback and ends this process at once
  (exit status 1); a single process just raises.

  A process that merely raised would wait at interpreter exit in `jax.distributed`'s shutdown barrier for the
  others, while they wait for it in their next collective: the job would hang until the heartbeat timeout.
  Ending at once closes this process's connections, so the others' next collective fails (and they stop the same
  way), or, where this was process 0, the coordination service is gone and jax ends them with that error.
  """
  try:
    yield
  except BaseException as error:  # pylint: disable=broad-exception-caught
    if not is_multiprocess():
      raise
    traceback.print_exc()
    first = (str(error).strip().splitlines() or [""])[0][:300]
    print(f"process {jax.process_index()} of {jax.process_count()} failed ({type(error).__name__}: {first}); "
          "ending it now so that the job's other processes stop too instead of waiting for it", file=sys.stderr,
          flush=True)
    sys.stdout.flush()
    os._exit(1)  # pylint: disable=protected-access
