"""Tests for visual_priors.train.topology: TPU slice names -> topologies, and abstract devices."""

import importlib.util

import pytest

from visual_priors.train import topology


@pytest.mark.parametrize("name, expected", [
    ("v5p-128", ("v5p:4x4x4", "v5p-128")),
    ("v4-32", ("v4:2x2x4", "v4-32")),
    ("v5p-8", ("v5p:2x2x1", "v5p-8")),
    ("v5e-16", ("v5e:4x4", "v5litepod-16")),
    ("v6e-64", ("v6e:8x8", "v6e-64")),
])
def test_parse_slice(name, expected):
  assert topology.parse_slice(name) == expected


@pytest.mark.parametrize("name, message", [
    ("v3-8", "Unknown TPU slice"),
    ("v5p-12", "no standard topology"),
    ("v4-4", "no standard topology"),
])
def test_bad_slices_are_rejected(name, message):
  with pytest.raises(ValueError, match=message):
    topology.parse_slice(name)


def test_missing_libtpu_says_how_to_install_it(monkeypatch):
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *args: None if name == "libtpu" else real_find_spec(name, *args))
  with pytest.raises(RuntimeError, match="needs libtpu.*pip install"):
    topology.topology_devices("v5p-8")


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (extra 'tpu')")
def test_topology_devices_describe_the_slice():
  devices = topology.topology_devices("v5p-16")
  assert len(devices) == 8 and devices[0].platform == "tpu" and "v5" in devices[0].device_kind
