"""The interoperability tests' shared vocabulary (helpers in tests/hf_helpers.py)."""

import pathlib

import pytest

from hf_helpers import train_spm


@pytest.fixture(scope="session")
def spm_vocab(tmp_path_factory) -> pathlib.Path:
  return train_spm(tmp_path_factory.mktemp("vocab"))
