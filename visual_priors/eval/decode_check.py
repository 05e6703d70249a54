"""Lower and compile an evaluation's batched greedy decoding for a target mesh without running it; report memory.

The program compiled is the one evaluation runs (`decode._compiled_generate`): the prefill of a batch of image
prompts, then the decode loop (its body is one cached decode step, compiled once whatever the number of new
tokens). Everything is abstract: the MLLM's float32 weights (as evaluation restores them) are
`jax.ShapeDtypeStruct`s in their training shardings (`sharding.state_shardings`), the prompts are split over
the batch axes and the KV cache is constrained inside (batch over data and fsdp, KV heads over tensor), so a 13B
evaluation's per-device memory is known before launch. The devices can be this host's or a TPU slice described
by libtpu (`train.topology.topology_devices`).

The prompt is `visual_tokens` image slots plus `text_tokens` other tokens (BOS, chat template, question),
padded to its bucket (`decode.prompt_bucket`); the KV cache holds the bucket plus `max_new_tokens - 1` columns.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from visual_priors.eval import decode
from visual_priors.models import sharding
from visual_priors.models.mllm import MLLM, MLLMConfig
from visual_priors.train import partition
from visual_priors.train.compile_check import MemoryReport


@dataclasses.dataclass(frozen=True)
class DecodeReport:
  """The compiled decoding's memory per device (`memory`: batch x KV-cache length) and its prompt shape."""

  memory: MemoryReport
  prompt_bucket: int
  visual_tokens: int
  max_new_tokens: int

  def format(self) -> str:
    lines = self.memory.format().split("\n")
    lines[1] = (f"batch {self.memory.batch_size} prompts of {self.prompt_bucket} tokens ({self.visual_tokens} "
                f"visual) + {self.max_new_tokens} new; KV cache {self.memory.seq_len} columns; "
                f"{self.memory.parameters / 1e6:,.1f}M parameters; compiled in {self.memory.compile_seconds:.1f} s")
    return "\n".join(lines)


def compile_decode(config: MLLMConfig, *, mesh_shape: Mapping[str, int], batch_size: int, text_tokens: int = 64,
                   max_new_tokens: int = 32, devices: Sequence[jax.Device] | None = None,
                   rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES) -> DecodeReport:
  """Compiles prefill + decode loop of `config`'s MLLM for `mesh_shape` over `devices` (default: this host's)."""
  if max_new_tokens < 1 or text_tokens < 1:
    raise ValueError(f"max_new_tokens ({max_new_tokens}) and text_tokens ({text_tokens}) must be >= 1.")
  mesh = sharding.make_mesh(mesh_shape, devices)
  shards = sharding.batch_shards(mesh, rules)
  if batch_size % shards:
    raise ValueError(f"Batch {batch_size} is not divisible by the {shards} devices the batch is split over on this "
                     f"mesh ({dict(mesh.shape)}); pick a multiple of {shards}.")
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: MLLM(config, rngs=nnx.Rngs(0))))
  placed = nnx.to_pure_dict(sharding.state_shardings(abstract, mesh, rules))
  state = jax.tree.map(lambda leaf, where: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=where),
                       nnx.to_pure_dict(abstract), placed)
  bucket = decode.prompt_bucket(config.num_visual_tokens + text_tokens)
  rows = jax.sharding.NamedSharding(mesh, sharding.logical_to_spec(("batch",), rules))
  size = config.vision.image_size

  def batch(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype, sharding=rows)

  generate = decode._compiled_generate(graphdef, max_new_tokens, 1, mesh, rules)  # pylint: disable=protected-access
  start = time.perf_counter()
  compiled = generate.lower(state, batch((batch_size, bucket), jnp.int32), batch((batch_size,), jnp.int32),
                            batch((batch_size, size, size, 3), jnp.float32),
                            batch((batch_size, bucket), jnp.int32)).compile()
  seconds = time.perf_counter() - start
  analysis = compiled.memory_analysis()
  if analysis is None:
    raise RuntimeError(f"The {mesh.devices.flat[0].platform} compiler reports no memory analysis.")
  parameters = sum(int(leaf.size) for leaf in partition.flatten_paths(nnx.to_pure_dict(abstract)).values())
  memory = MemoryReport(
      device_kind=mesh.devices.flat[0].device_kind, num_devices=mesh.devices.size, mesh=dict(mesh.shape),
      batch_size=batch_size, seq_len=bucket + max_new_tokens - 1, parameters=parameters,
      argument_bytes=int(analysis.argument_size_in_bytes), output_bytes=int(analysis.output_size_in_bytes),
      temp_bytes=int(analysis.temp_size_in_bytes), alias_bytes=int(analysis.alias_size_in_bytes),
      compile_seconds=seconds)
  return DecodeReport(memory=memory, prompt_bucket=bucket, visual_tokens=config.num_visual_tokens,
                      max_new_tokens=max_new_tokens)
