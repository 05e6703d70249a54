"""Shared pieces of the trainer tests: learnable synthetic grain data and a CPU-sized run config."""

from __future__ import annotations

import grain
import numpy as np
import pytest

from visual_priors.train import config as config_lib


class SyntheticLM:
  """Learnable synthetic LM data; tests reach it through the `synthetic` fixture."""

  @staticmethod
  def rows(count: int, seq_len: int, vocab_size: int, seed: int) -> np.ndarray:
    """(count, seq_len + 1) arithmetic progressions over tokens 1..vocab_size-1 with stride 1 or 2.

    Each token is predictable from the two before it, so a model can go far below the (near uniform)
    unigram entropy, log(vocab_size - 1).
    """
    rng = np.random.default_rng(seed)
    start = rng.integers(0, vocab_size - 1, (count, 1))
    stride = rng.integers(1, 3, (count, 1))
    return ((start + stride * np.arange(seq_len + 1)) % (vocab_size - 1) + 1).astype(np.int32)

  @staticmethod
  def features(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Decoder features of full-length rows (one example per row, no padding)."""
    inputs, targets = rows[..., :-1], rows[..., 1:]
    positions = np.broadcast_to(np.arange(targets.shape[-1], dtype=np.int32), targets.shape)
    return {
        "decoder_input_tokens": inputs,
        "decoder_target_tokens": targets,
        "decoder_segment_ids": np.ones_like(targets),
        "decoder_positions": positions.copy(),
        "decoder_loss_weights": np.ones_like(targets),
    }

  @classmethod
  def batches(cls, count: int, batch_size: int, seq_len: int, vocab_size: int, seed: int = 1) -> list[dict]:
    rows = cls.rows(count * batch_size, seq_len, vocab_size, seed)
    return [cls.features(rows[i * batch_size:(i + 1) * batch_size]) for i in range(count)]

  @classmethod
  def train_data(cls, batch_size: int, seq_len: int, vocab_size: int, seed: int = 0, rows: int = 512):
    """A factory of grain iterators (get_state/set_state) over shuffled, repeating batches."""
    dataset = (grain.MapDataset.source(cls.rows(rows, seq_len, vocab_size, seed))
               .shuffle(seed=seed).repeat(None).batch(batch_size, drop_remainder=True).map(cls.features))
    return lambda: iter(dataset.to_iter_dataset())

  @classmethod
  def eval_set(cls, batch_size: int, seq_len: int, vocab_size: int, count: int = 2, seed: int = 99):
    batches = cls.batches(count, batch_size, seq_len, vocab_size, seed)
    return lambda: list(batches)


@pytest.fixture
def synthetic() -> type[SyntheticLM]:
  return SyntheticLM


@pytest.fixture
def run_config(tmp_path):
  """A nano-scale float32 run on the 8 CPU devices that finishes in seconds."""
  config = config_lib.default_config()
  config.scale = "nano"
  config.compute_dtype = "float32"
  config.model.vocab_size = 64
  config.batch_size = 8
  config.seq_len = 16
  config.num_steps = 6
  config.token_budget = 0
  config.optimizer.warmup_steps = 2
  config.log_every_steps = 1
  config.eval_every_steps = 3
  config.checkpoint.every_steps = 2
  config.checkpoint.keep = 5
  config.work_dir = str(tmp_path / "run")
  return config
