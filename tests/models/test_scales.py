"""Named scales: parameter counts on the real module, lookups and overrides."""

from __future__ import annotations

import pytest

from visual_priors.models import scales
from visual_priors.names import UnknownNameError

NOMINAL = {"340m": 340e6, "1b": 1e9, "1.3b": 1.3e9, "3b": 3e9, "7b": 7e9, "13b": 13e9}


def _closed_form(config) -> int:
  d, h = config.d_model, config.head_dim
  per_layer = 2 * d * config.n_heads * h + 2 * d * config.n_kv_heads * h + 3 * d * config.d_ff + 2 * d
  embeddings = config.vocab_size * d * (1 if config.tie_embeddings else 2)
  return embeddings + config.n_layers * per_layer + d


@pytest.mark.parametrize("name", sorted(NOMINAL))
def test_paper_scale_parameter_count_is_within_3_percent(name):
  config = scales.get_scale(name)
  counted = scales.count_params(config)  # eval_shape of the real Decoder.
  assert counted == _closed_form(config)
  assert abs(counted / NOMINAL[name] - 1) <= 0.03, f"{name}: {counted / 1e6:.1f}M"
  assert config.vocab_size == 32000 and config.param_dtype == "float32"


def test_cpu_scales_are_small():
  assert scales.count_params(scales.get_scale("nano")) < 2e5
  assert scales.count_params(scales.get_scale("tiny")) < 2e6


def test_overrides_and_unknown_names():
  config = scales.get_scale("tiny", vocab_size=300, tie_embeddings=True)
  assert (config.vocab_size, config.tie_embeddings) == (300, True)
  assert scales.get_scale("tiny").vocab_size != 300  # The registry entry is untouched.
  with pytest.raises(UnknownNameError, match="'13b'"):
    scales.get_scale("13B")
  with pytest.raises(ValueError, match="d_mdl"):
    scales.get_scale("tiny", d_mdl=3)
