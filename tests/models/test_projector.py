"""The projector (linear, mlp2x_gelu) against hand-written maps, and patch-grid resampling."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.models import projector as projector_lib
from visual_priors.models.projector import Projector, ProjectorConfig, resample_tokens


def _params(module: nnx.Module) -> dict[str, nnx.Variable]:
  return {"/".join(map(str, path)): variable for path, variable in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def _randomise(module: nnx.Module, seed: int) -> None:
  """Gives the (zero-initialised) biases values too, so the tests see them."""
  for index, (_, variable) in enumerate(sorted(_params(module).items())):
    variable[...] = jax.random.normal(jax.random.key(seed + index), variable.shape) * 0.3


def test_linear_projector_is_one_affine_map():
  config = ProjectorConfig("linear", in_dim=6, out_dim=10)
  proj = Projector(config, rngs=nnx.Rngs(0))
  _randomise(proj, 1)
  params = {path: np.asarray(v[...]) for path, v in _params(proj).items()}
  assert set(params) == {"fc1/kernel", "fc1/bias"}
  x = np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32)
  expected = x @ params["fc1/kernel"] + params["fc1/bias"]
  np.testing.assert_allclose(np.asarray(proj(jnp.asarray(x))), expected, rtol=1e-5, atol=1e-5)


def test_mlp2x_gelu_projector_matches_two_affine_maps_around_exact_gelu():
  config = ProjectorConfig("mlp2x_gelu", in_dim=6, out_dim=10)
  proj = Projector(config, rngs=nnx.Rngs(0))
  _randomise(proj, 2)
  p = {path: np.asarray(v[...], np.float64) for path, v in _params(proj).items()}
  assert p["fc1/kernel"].shape == (6, 10) and p["fc2/kernel"].shape == (10, 10)
  x = np.random.default_rng(1).normal(size=(3, 4, 6))
  hidden = x @ p["fc1/kernel"] + p["fc1/bias"]
  erf = np.vectorize(math.erf)
  gelu = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))
  expected = gelu @ p["fc2/kernel"] + p["fc2/bias"]
  np.testing.assert_allclose(np.asarray(proj(jnp.asarray(x, jnp.float32))), expected, rtol=1e-4, atol=1e-5)


def test_projector_parameters_carry_logical_axes_and_biases_start_at_zero():
  proj = Projector(ProjectorConfig("mlp2x_gelu", in_dim=6, out_dim=10), rngs=nnx.Rngs(0))
  params = _params(proj)
  axes = {path: v.get_metadata()["out_sharding"] for path, v in params.items()}
  assert axes == {"fc1/kernel": ("vis_embed", "mlp"), "fc1/bias": ("mlp",),
                  "fc2/kernel": ("mlp", "embed"), "fc2/bias": ("embed",)}
  assert not np.asarray(params["fc1/bias"][...]).any()
  # Kernels ~ N(0, 1/fan_in): the output scale does not grow with the input width.
  wide = Projector(ProjectorConfig("linear", in_dim=4096, out_dim=64), rngs=nnx.Rngs(0))
  assert 0.8 < float(jnp.std(wide.fc1.kernel[...])) * 64 < 1.1


def test_bfloat16_compute_keeps_float32_parameters():
  proj = Projector(ProjectorConfig("mlp2x_gelu", 6, 10, dtype="bfloat16"), rngs=nnx.Rngs(0))
  out = proj(jnp.ones((1, 2, 6)))
  assert out.dtype == jnp.bfloat16
  assert all(v[...].dtype == jnp.float32 for v in _params(proj).values())


def test_bad_projector_type_and_dims_are_rejected():
  with pytest.raises(ValueError, match="linear"):
    ProjectorConfig("mlp3x", 4, 4)
  with pytest.raises(ValueError, match="positive"):
    ProjectorConfig("linear", 0, 4)


def _grid_tokens(grid: np.ndarray) -> jax.Array:
  """(B, g, g, W) -> (B, g*g, W) in row-major order, as a ViT returns its patches."""
  b, g, _, w = grid.shape
  return jnp.asarray(grid.reshape(b, g * g, w), jnp.float32)


@pytest.mark.parametrize("method", projector_lib.RESAMPLE_METHODS)
def test_resampling_to_the_same_grid_is_the_identity(method):
  tokens = _grid_tokens(np.random.default_rng(0).normal(size=(2, 4, 4, 3)))
  np.testing.assert_array_equal(np.asarray(resample_tokens(tokens, 16, method)), np.asarray(tokens))


def test_area_downsampling_by_an_integer_factor_averages_blocks():
  grid = np.random.default_rng(0).normal(size=(2, 6, 6, 3))
  out = np.asarray(resample_tokens(_grid_tokens(grid), 9, "area")).reshape(2, 3, 3, 3)
  block_means = grid.reshape(2, 3, 2, 3, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(out, block_means, rtol=1e-5, atol=1e-6)


def test_area_upsampling_by_an_integer_factor_repeats_cells():
  grid = np.random.default_rng(1).normal(size=(1, 2, 2, 4))
  out = np.asarray(resample_tokens(_grid_tokens(grid), 16, "area")).reshape(1, 4, 4, 4)
  np.testing.assert_allclose(out, grid.repeat(2, axis=1).repeat(2, axis=2), rtol=1e-6)


def test_area_weights_rows_are_averages_for_uneven_ratios():
  for source, target in ((14, 24), (24, 14), (7, 3), (3, 7)):
    weights = projector_lib.area_weights(source, target)
    assert weights.shape == (target, source)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert (weights >= 0).all()


@pytest.mark.parametrize("target", [9, 36, 576])
def test_bilinear_resampling_keeps_constants_and_the_row_major_layout(target):
  grid = np.ones((1, 4, 4, 2)) * 3.0
  np.testing.assert_allclose(np.asarray(resample_tokens(_grid_tokens(grid), target)), 3.0, rtol=1e-6)
  # A grid whose value is its row index stays constant along each output row and rises down the rows.
  rows = np.broadcast_to(np.arange(4.0)[None, :, None, None], (1, 4, 4, 1))
  side = int(np.sqrt(target))
  out = np.asarray(resample_tokens(_grid_tokens(rows), target)).reshape(side, side)
  np.testing.assert_allclose(out, out[:, :1].repeat(side, axis=1), atol=1e-5)
  assert (np.diff(out[:, 0]) >= -1e-6).all() and out[-1, 0] > out[0, 0]


def test_bilinear_upsampling_interpolates_between_patch_centres():
  # 2x2 -> 4x4 with half-pixel centres: output centres at 0.25, 0.75, 1.25, 1.75 in input units; along
  # one axis the values (a, b) become (a, 0.75a + 0.25b, 0.25a + 0.75b, b) (edges clamp).
  grid = np.zeros((1, 2, 2, 1))
  grid[0, :, 1, 0] = 4.0
  out = np.asarray(resample_tokens(_grid_tokens(grid), 16, "bilinear")).reshape(4, 4)
  np.testing.assert_allclose(out, np.broadcast_to([0.0, 1.0, 3.0, 4.0], (4, 4)), atol=1e-5)


def test_resampling_rejects_grids_and_counts_that_are_not_squares():
  with pytest.raises(ValueError, match="num_visual_tokens must be a positive perfect square.*e.g. 16 or 25"):
    resample_tokens(jnp.zeros((1, 16, 2)), 20)
  with pytest.raises(ValueError, match="patch-token count"):
    resample_tokens(jnp.zeros((1, 15, 2)), 16)
  with pytest.raises(ValueError, match="resample method"):
    resample_tokens(jnp.zeros((1, 16, 2)), 16, "nearest")
