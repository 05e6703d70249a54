"""Tests for visual_priors.train.checkpoint: exact round trips, keep-last-K, clear errors on bad checkpoints."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from visual_priors.train import checkpoint


def _state(scale=1.0):
  params = {"layers": {"0": {"kernel": jnp.arange(12.0).reshape(3, 4) * scale}}, "norm": jnp.ones(4)}
  return {"step": jnp.int32(7), "params": params, "opt_state": optax.adam(1e-3).init(params),
          "rng": jax.random.key_data(jax.random.key(3))}


def _abstract(state):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state)


@pytest.mark.parametrize("data_state", [{"next_index": 5, "epoch": [1, 2]}, b"\x00grain-bytes\xff"])
def test_round_trip_is_exact_including_the_data_iterator_state(tmp_path, data_state):
  manager = checkpoint.Checkpointer(tmp_path, keep=2, async_save=True)
  state = _state(scale=1.0 / 3.0)
  manager.save(7, state, data_state)
  manager.wait()
  assert (tmp_path / "7" / "data" / "process_0-of-1.json").exists()  # one file per host
  restored, restored_data = manager.restore(7, _abstract(state))
  manager.close()
  assert restored_data == data_state
  assert isinstance(restored["opt_state"][0], optax.ScaleByAdamState)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_keeps_the_last_k_steps(tmp_path):
  manager = checkpoint.Checkpointer(tmp_path, keep=2, async_save=False)
  for step in (1, 2, 3):
    manager.save(step, _state(), {"i": step})
  manager.wait()
  assert manager.all_steps() == [2, 3] and manager.latest_step() == 3
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["2", "3"]
  manager.close()


def test_shape_mismatch_names_the_array_and_the_path(tmp_path):
  manager = checkpoint.Checkpointer(tmp_path, keep=1, async_save=False)
  manager.save(1, _state(), {})
  manager.wait()
  other = _state()
  other["params"]["layers"]["0"]["kernel"] = jnp.zeros((3, 5))
  with pytest.raises(ValueError, match=r"Checkpoint .*/1/state.*params/layers/0/kernel: stored \(3, 4\) float32, "
                                      r"expected \(3, 5\) float32") as error:
    manager.restore(1, _abstract(other))
  assert str(tmp_path) in str(error.value)
  del other["params"]["norm"]
  with pytest.raises(ValueError, match="unexpected params/norm"):
    manager.restore(1, _abstract(other))
  manager.close()


def test_missing_item_is_a_clear_error(tmp_path):
  manager = checkpoint.Checkpointer(tmp_path, keep=1, async_save=False)
  manager.save(1, _state(), {})
  manager.wait()
  shutil.rmtree(tmp_path / "1" / "data")
  with pytest.raises(FileNotFoundError, match=f"{tmp_path / '1'} has no 'data' item"):
    manager.restore(1, _abstract(_state()))
  manager.close()


def test_damaged_array_files_are_a_clear_error(tmp_path):
  manager = checkpoint.Checkpointer(tmp_path, keep=1, async_save=False)
  manager.save(1, _state(), {})
  manager.wait()
  array_files = [p for p in (tmp_path / "1" / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert array_files  # the OCDBT data files holding the array bytes
  for path in array_files:
    path.write_bytes(b"\x00" * path.stat().st_size)
  with pytest.raises(ValueError, match=f"Checkpoint {tmp_path / '1'} (is unreadable|could not be restored)"):
    manager.restore(1, _abstract(_state()))
  (tmp_path / "1" / "state" / "_METADATA").write_text("not json")
  with pytest.raises(ValueError, match=f"Checkpoint {tmp_path / '1'} is unreadable"):
    manager.restore(1, _abstract(_state()))
  manager.close()


def test_damaged_data_state_names_its_file_and_line(tmp_path):
  manager = checkpoint.Checkpointer(tmp_path, keep=1, async_save=False)
  manager.save(1, _state(), {"next_index": 5})
  manager.wait()
  path = tmp_path / "1" / "data" / "process_0-of-1.json"
  path.write_text(path.read_text()[:-3])  # truncated by an interrupted copy
  with pytest.raises(ValueError, match=f"{path} line 1 column [0-9]+: invalid JSON .*damaged or truncated: delete "
                                       f"the step directory {tmp_path / '1'} to resume"):
    manager.restore(1, _abstract(_state()))
  manager.close()
