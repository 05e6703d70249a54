"""Tests for visual_priors.train.upstream: a finished run read back after its directory was moved."""

import pathlib

import jax
import pytest
import numpy as np
from flax import nnx

from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.train import config as config_lib, pretrain, upstream


def _untrained_lm(work_dir: pathlib.Path, vocab: pathlib.Path) -> None:
  config = config_lib.default_config()
  config.scale, config.model.vocab_size, config.model.attention_impl = "nano", 64, "xla"
  config.batch_size, config.seq_len, config.num_steps, config.token_budget = 2, 16, 1, 0
  config.work_dir, config.mesh = str(work_dir), {"data": 1, "fsdp": -1, "tensor": 1}
  pretrain.save_untrained(config, data_identity={"vocab": str(vocab)}, devices=jax.devices()[:1])


def _weights(run: upstream.UpstreamRun) -> dict:
  config = DecoderConfig(**run.manifest["model"])
  module = upstream.restore_module(run, lambda: Decoder(config, rngs=nnx.Rngs(0)))
  return jax.device_get(nnx.to_pure_dict(nnx.state(module, nnx.Param)))


def test_a_moved_run_finds_its_checkpoint_and_data_in_its_new_place(tmp_path):
  old = tmp_path / "old"
  vocab = old / "data" / "spm.model"
  vocab.parent.mkdir(parents=True)
  vocab.write_bytes(b"a vocabulary")
  _untrained_lm(old / "runs" / "lm", vocab)
  before = _weights(upstream.read_run(old / "runs" / "lm", "lm", ("pretrain",)))
  old.rename(tmp_path / "new")

  run = upstream.read_run(tmp_path / "new" / "runs" / "lm", "lm", ("pretrain",))
  assert run.checkpoint_step_dir.is_relative_to(tmp_path / "new" / "runs" / "lm")
  assert run.record["checkpoint_dir"] == run.manifest["checkpoint_dir"]
  assert run.manifest["data"]["vocab"] == str(tmp_path / "new" / "data" / "spm.model")
  jax.tree.map(np.testing.assert_array_equal, _weights(run), before)


def test_restoring_reads_the_step_as_written_without_orbax_warnings(tmp_path, caplog):
  vocab = tmp_path / "spm.model"
  vocab.write_bytes(b"a vocabulary")
  _untrained_lm(tmp_path / "lm", vocab)
  with caplog.at_level("WARNING"):
    _weights(upstream.read_run(tmp_path / "lm", "lm", ("pretrain",)))
  assert not [record.getMessage() for record in caplog.records if record.levelname != "DEBUG"]


def test_a_damaged_upstream_checkpoint_is_one_line_naming_the_run_and_step(tmp_path):
  vocab = tmp_path / "spm.model"
  vocab.write_bytes(b"a vocabulary")
  _untrained_lm(tmp_path / "lm", vocab)
  run = upstream.read_run(tmp_path / "lm", "lm", ("pretrain",))
  for path in (run.checkpoint_step_dir / "state").rglob("*"):
    if path.is_file() and path.name != "_METADATA":
      path.write_bytes(b"\0garbage")
  with pytest.raises(ValueError) as raised:
    _weights(run)
  message = str(raised.value)
  assert "\n" not in message
  assert f"checkpoint at step {run.manifest['step']} of {tmp_path / 'lm'} is damaged" in message
