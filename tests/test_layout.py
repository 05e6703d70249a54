"""The test tree's own rule: test module names are unique (pytest's default import mode imports them by name)."""

import collections
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent


def test_test_module_basenames_are_unique():
  names = collections.Counter(path.name for path in TESTS.rglob("test_*.py"))
  assert not [name for name, count in names.items() if count > 1]
