"""Tests for visual_priors.train.compile_cache: where the cache goes, and a compile served from it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from jax._src import monitoring

from visual_priors.train import compile_cache


def test_the_directory_defaults_to_the_runs_root_and_the_environment_wins(tmp_path):
  assert compile_cache.resolve(tmp_path, "", {}) == tmp_path / ".jax_cache"
  assert compile_cache.resolve(None, "", {}) is None
  assert compile_cache.resolve(tmp_path, "off", {}) is None
  assert compile_cache.resolve(tmp_path, str(tmp_path / "elsewhere"), {}) == tmp_path / "elsewhere"
  assert compile_cache.resolve(tmp_path, "", {compile_cache.ENV: "off"}) is None
  assert compile_cache.resolve(tmp_path, "off", {compile_cache.ENV: str(tmp_path / "env")}) == tmp_path / "env"


def test_a_second_compile_is_served_from_the_cache_and_the_setting_is_restored(tmp_path):
  hits = []

  def listen(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
      hits.append(event)

  before = compile_cache.current()
  monitoring.register_event_listener(listen)
  minimum = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  try:
    with compile_cache.use(tmp_path / "first") as where:
      assert where == compile_cache.current() == tmp_path / "first"
      jax.jit(lambda x: jnp.sin(x) * 3 + 1)(jnp.arange(5.0)).block_until_ready()
      assert any((tmp_path / "first").iterdir())  # the executable was written
      jax.clear_caches()  # as a new process would: nothing compiled in memory
      jax.jit(lambda x: jnp.sin(x) * 3 + 1)(jnp.arange(5.0)).block_until_ready()
      assert hits
    assert compile_cache.current() == before
    with compile_cache.use(tmp_path / "second"):  # another runs root in the same process gets its own cache
      jax.jit(lambda x: jnp.cos(x) - 2)(jnp.arange(3.0)).block_until_ready()
      assert any((tmp_path / "second").iterdir())
  finally:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", minimum)
    monitoring.unregister_event_listener(listen)
  assert compile_cache.current() == before


@pytest.mark.parametrize("value", ["off", "0", "none"])
def test_off_values(value, tmp_path):
  assert compile_cache.resolve(tmp_path, value, {}) is None
