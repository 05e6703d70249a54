"""Trained decoders for evaluation: a finished pretrain run's Decoder with its weights, and its vocabulary."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
from flax import nnx

from visual_priors.data import segments
from visual_priors.models import sharding
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.train import upstream as upstream_lib


def load_decoder(run_dir: str | pathlib.Path, mesh: jax.sharding.Mesh | None = None,
                 rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES) -> tuple[Decoder, dict[str, Any]]:
  """(the Decoder of a finished pretrain run with its trained weights, the run's manifest).

  The weights are restored straight into their shardings on `mesh` (default: the first device); the
  optimizer state is never read.
  """
  run = upstream_lib.read_run(run_dir, "decoder", ("pretrain",))
  config = DecoderConfig(**run.manifest["model"])
  return upstream_lib.restore_module(run, lambda: Decoder(config, rngs=nnx.Rngs(0)), mesh, rules), run.manifest


def run_vocab_path(manifest: dict[str, Any]) -> pathlib.Path:
  """The vocabulary a pretrain run was trained with: its segment store's, checked against the recorded sha256."""
  data = manifest.get("data") or {}
  if "segment_store" not in data:
    raise ValueError("This pretrain manifest records no segment store (it was trained on other data); pass the "
                     "vocabulary path explicitly.")
  store = segments.recorded_store(data["segment_store"])
  if data.get("vocab_sha256") and data["vocab_sha256"] != store.manifest["vocab"]["sha256"]:
    raise ValueError(f"The segment store {store.root} now holds another vocabulary than the run recorded "
                     f"(sha256 {data['vocab_sha256'][:12]}); pass the run's vocabulary path explicitly.")
  return store.vocab_path
