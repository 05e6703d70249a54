"""Helpers of the fault-injection suite: a tiny trainer run on learnable synthetic data, and data that goes bad."""

from __future__ import annotations

import json
import pathlib

import grain
import jax
import jax.numpy as jnp
import numpy as np

from visual_priors.models import scales
from visual_priors.models.decoder import Decoder
from visual_priors.train import config as config_lib, step as step_lib, trainer

VOCAB = 64


def run_config(work_dir: pathlib.Path, steps: int = 6):
  """A nano float32 run of `steps` steps on the 8 CPU devices, a checkpoint every 2 steps, logged every step."""
  config = config_lib.default_config()
  config.scale, config.compute_dtype = "nano", "float32"
  config.model.vocab_size = VOCAB
  config.batch_size, config.seq_len = 8, 16
  config.num_steps, config.token_budget = steps, 0
  config.optimizer.warmup_steps = 2
  config.log_every_steps = 1
  config.checkpoint.every_steps, config.checkpoint.keep, config.checkpoint.async_save = 2, 10, False
  config.work_dir = str(work_dir)
  return config


def _features(rows: np.ndarray) -> dict[str, np.ndarray]:
  inputs, targets = rows[..., :-1], rows[..., 1:]
  return {"decoder_input_tokens": inputs, "decoder_target_tokens": targets,
          "decoder_segment_ids": np.ones_like(targets),
          "decoder_positions": np.broadcast_to(np.arange(targets.shape[-1], dtype=np.int32), targets.shape).copy(),
          "decoder_loss_weights": np.ones_like(targets)}


def synthetic_data(batch_size: int = 8, seq_len: int = 16, seed: int = 0):
  """A factory of grain iterators over shuffled, repeating batches of arithmetic progressions (learnable)."""
  rng = np.random.default_rng(seed)
  start, stride = rng.integers(0, VOCAB - 1, (512, 1)), rng.integers(1, 3, (512, 1))
  rows = ((start + stride * np.arange(seq_len + 1)) % (VOCAB - 1) + 1).astype(np.int32)
  dataset = (grain.MapDataset.source(rows).shuffle(seed=seed).repeat(None)
             .batch(batch_size, drop_remainder=True).map(_features))
  return lambda: iter(dataset.to_iter_dataset())


class Poisoned:
  """Delegates to a grain iterator; batches `from_batch`..`to_batch` (1-based, inclusive; none when `from_batch`
  is None) get loss weight 2, which `scaled_loss` turns into a loss `scale` times larger (NaN for scale None)."""

  def __init__(self, inner, from_batch: int | None, to_batch: int | None = None):
    self.inner, self.from_batch, self.to_batch, self.served = inner, from_batch, to_batch, 0

  def __next__(self):
    batch = dict(next(self.inner))
    self.served += 1
    after = self.from_batch is not None and self.from_batch <= self.served
    if after and (self.to_batch is None or self.served <= self.to_batch):
      batch["decoder_loss_weights"] = np.full_like(batch["decoder_loss_weights"], 2)
    return batch

  def get_state(self):
    return {"inner": self.inner.get_state(), "served": self.served}

  def set_state(self, state):
    self.inner.set_state(state["inner"])
    self.served = state["served"]


def scaled_loss(scale: float | None):
  """The LM loss, times `scale` (NaN when None) on batches marked by `Poisoned`."""

  def loss_fn(model, batch, rng):
    weights = batch["decoder_loss_weights"]
    loss_sum, tokens = step_lib.lm_loss(model, {**batch, "decoder_loss_weights": jnp.minimum(weights, 1)}, rng)
    poisoned = jnp.any(weights > 1)
    if scale is None:
      return jnp.where(poisoned, jnp.nan, loss_sum), tokens
    return loss_sum * jnp.where(poisoned, scale, 1.0), tokens

  return loss_fn


def train(config, *, train_data=None, loss_fn=step_lib.lm_loss, stage: str = "pretrain", **kwargs):
  """`trainer.train` of the nano decoder on one CPU device (compiles faster than the 8-device mesh)."""
  kwargs.setdefault("devices", jax.devices()[:1])
  model_config = scales.get_scale(config.scale, dtype=config.compute_dtype, **config.model)
  return trainer.train(config, model_factory=lambda rngs: Decoder(model_config, rngs=rngs),
                       loss_fn=loss_fn, train_data=train_data or synthetic_data(), features=step_lib.LM_FEATURES,
                       stage=stage, **kwargs)


def losses(work_dir) -> dict[int, float]:
  rows = [json.loads(line) for line in (pathlib.Path(work_dir) / "metrics.jsonl").read_text().splitlines()]
  return {row["step"]: row["loss"] for row in rows if "loss" in row}
