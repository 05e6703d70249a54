"""Tests of visual_priors.data.cache's JSON readers: a damaged file is named with its line and what to do."""

from __future__ import annotations

import pytest

from visual_priors.data import cache


def test_read_json_round_trips(tmp_path):
  path = tmp_path / "a.json"
  cache.write_json_atomic(path, {"b": [1, 2], "a": None})
  assert cache.read_json(path) == {"a": None, "b": [1, 2]}
  assert cache.read_json(str(path)) == {"a": None, "b": [1, 2]}


@pytest.mark.parametrize("content, where, problem", [
    ('{\n  "a": 1,\n  "b": [1, 2', "line 3 column 13", "invalid JSON (Expecting ',' delimiter)"),
    ('{"a": 1,}', "line 1 column 9", "invalid JSON (Expecting property name enclosed in double quotes)"),
    ("", "", "empty"),
    ("  \n", "", "empty"),
])
def test_read_json_names_file_line_column_and_fix(tmp_path, content, where, problem):
  path = tmp_path / "manifest.json"
  path.write_text(content)
  prefix = f"{path} {where}" if where else str(path)
  message = f"{prefix}: {problem}; the file is damaged or truncated: rebuild it."
  with pytest.raises(ValueError) as error:
    cache.read_json(path, "rebuild it")
  assert str(error.value) == message


def test_read_json_default_fix_and_errors_kept(tmp_path):
  path = tmp_path / "x.json"
  path.write_bytes(b'{"a": "\xff"}')
  with pytest.raises(ValueError, match=r"x.json byte 7: not UTF-8 text; .*: delete it and rerun the command"):
    cache.read_json(path)
  with pytest.raises(FileNotFoundError):
    cache.read_json(tmp_path / "absent.json")


def test_read_jsonl_skips_blank_lines_and_names_the_bad_line(tmp_path):
  path = tmp_path / "rows.jsonl"
  path.write_text('{"a": 1}\n\n{"a": 2}\n')
  assert cache.read_jsonl(path) == [{"a": 1}, {"a": 2}]
  path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')  # truncated by an interrupted write
  with pytest.raises(ValueError) as error:
    cache.read_jsonl(path, "regenerate it")
  assert str(error.value) == (f"{path} line 4: invalid JSON (Expecting value at column 6); the file is damaged or "
                              "truncated: regenerate it.")


def test_iter_jsonl_is_lazy(tmp_path):
  path = tmp_path / "rows.jsonl"
  path.write_text('{"a": 1}\nnot json\n')
  rows = cache.iter_jsonl(path)
  assert next(rows) == {"a": 1}
  with pytest.raises(ValueError, match=r"rows.jsonl line 2: invalid JSON"):
    next(rows)


def test_parse_json_names_its_place():
  assert cache.parse_json('{"a": 1}\n', "f line 1") == {"a": 1}
  with pytest.raises(ValueError, match=r"^gs://b/f.jsonl line 9: invalid JSON \(Unterminated string at column 7"
                                       r"\); the file is damaged or truncated: fix it\.$"):
    cache.parse_json('{"a": "b', "gs://b/f.jsonl line 9", "fix it")
