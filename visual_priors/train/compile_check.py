"""Lower and compile the train step for a target mesh without running it; report per-device memory.

Everything is abstract: the model is traced with `nnx.eval_shape`, the state and batch are
`jax.ShapeDtypeStruct`s carrying their shardings, so a 13B state is never allocated. The devices can be
this host's or a TPU slice described by libtpu (`topology.topology_devices`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from visual_priors.models import sharding
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.train import optimizer, state as state_lib, step as step_lib

# The optimizer's schedule length does not change the compiled program; any run length works here.
_SCHEDULE_STEPS = 100_000


@dataclasses.dataclass(frozen=True)
class MemoryReport:
  """Per-device bytes of the compiled train step (XLA's `memory_analysis`)."""

  device_kind: str
  num_devices: int
  mesh: Mapping[str, int]
  batch_size: int
  seq_len: int
  parameters: int
  argument_bytes: int
  output_bytes: int
  temp_bytes: int
  alias_bytes: int  # outputs written into donated argument buffers, counted once
  compile_seconds: float

  @property
  def total_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes + self.temp_bytes - self.alias_bytes

  def format(self) -> str:
    gib = 1024 ** 3
    mesh = ", ".join(f"{axis}={size}" for axis, size in self.mesh.items())
    return "\n".join([
        f"devices: {self.num_devices} x {self.device_kind}; mesh {mesh}",
        f"batch {self.batch_size} x {self.seq_len}; {self.parameters / 1e6:,.1f}M parameters; "
        f"compiled in {self.compile_seconds:.1f} s",
        "per-device memory:",
        f"  arguments {self.argument_bytes / gib:10.3f} GiB",
        f"  outputs   {self.output_bytes / gib:10.3f} GiB (of which {self.alias_bytes / gib:.3f} GiB alias "
        "donated arguments)",
        f"  temp      {self.temp_bytes / gib:10.3f} GiB",
        f"  total     {self.total_bytes / gib:10.3f} GiB",
    ])


def check_batch(batch_size: int, mesh: jax.sharding.Mesh, grad_accum_steps: int) -> None:
  parallel = mesh.shape["data"] * mesh.shape["fsdp"]
  if batch_size % (parallel * grad_accum_steps):
    raise ValueError(
        f"Batch {batch_size} is not divisible by data-parallel size {parallel} x grad_accum_steps "
        f"{grad_accum_steps}; pick a multiple of {parallel * grad_accum_steps}.")


def abstract_batch(mesh: jax.sharding.Mesh, batch_size: int, seq_len: int,
                   features: Sequence[str]) -> dict[str, jax.ShapeDtypeStruct]:
  batch_sharding = sharding.batch_sharding(mesh)
  return {name: jax.ShapeDtypeStruct((batch_size, seq_len), jnp.int32, sharding=batch_sharding)
          for name in features}


def lm_program(model_config: DecoderConfig, mesh: jax.sharding.Mesh, rules: sharding.LogicalRules, *,
               grad_accum_steps: int, packed: bool, trainable: str = ".*", frozen: str = "") -> step_lib.TrainProgram:
  """The LM's train program with default AdamW, as the bench and checks use."""
  return step_lib.assemble(lambda rngs: Decoder(model_config, rngs=rngs), step_lib.lm_loss,
                           step_lib.LM_FEATURES if packed else step_lib.LM_UNPACKED_FEATURES, mesh, rules,
                           settings=optimizer.AdamWSettings(), total_steps=_SCHEDULE_STEPS, trainable=trainable,
                           frozen=frozen, grad_accum_steps=grad_accum_steps)


def compile_train_step(model_config: DecoderConfig, *, mesh_shape: Mapping[str, int], batch_size: int,
                       seq_len: int, devices: Sequence[jax.Device] | None = None,
                       rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES,
                       grad_accum_steps: int = 1, trainable: str = ".*", frozen: str = "",
                       packed: bool = True) -> MemoryReport:
  """Compiles the LM train step for `mesh_shape` over `devices` (default: this host's) and reports memory."""
  mesh = sharding.make_mesh(mesh_shape, devices)
  check_batch(batch_size, mesh, grad_accum_steps)
  program = lm_program(model_config, mesh, rules, grad_accum_steps=grad_accum_steps, packed=packed,
                       trainable=trainable, frozen=frozen)
  spec = program.spec
  start = time.perf_counter()
  compiled = program.train_step.lower(spec.abstract, abstract_batch(mesh, batch_size, seq_len,
                                                                    program.features)).compile()
  seconds = time.perf_counter() - start
  analysis = compiled.memory_analysis()
  if analysis is None:
    raise RuntimeError(f"The {mesh.devices.flat[0].platform} compiler reports no memory analysis.")
  trainable_count, frozen_count = state_lib.parameter_count(spec.abstract)
  return MemoryReport(
      device_kind=mesh.devices.flat[0].device_kind, num_devices=mesh.devices.size, mesh=dict(mesh.shape),
      batch_size=batch_size, seq_len=seq_len, parameters=trainable_count + frozen_count,
      argument_bytes=int(analysis.argument_size_in_bytes), output_bytes=int(analysis.output_size_in_bytes),
      temp_bytes=int(analysis.temp_size_in_bytes), alias_bytes=int(analysis.alias_size_in_bytes),
      compile_seconds=seconds,
  )
