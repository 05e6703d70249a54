"""Tests for the generated multimodal data: determinism, file formats, answers true by construction."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from visual_priors.data.multimodal import gen_assets, generate
from visual_priors.data.multimodal.gen_objects import EMOJI_OBJECTS, SHAPES, by_name
from visual_priors.data.multimodal.gen_questions import GROUPS, KINDS, LETTERS, TYPES
from visual_priors.data.multimodal.scene import RELATIONS, SIZE_LEVELS, quadrant, relation

SMALL = {"image_size": 64, "n_captions": 12, "n_instruct": 60, "n_eval_per_benchmark": 14,
         "n_mle_per_level": 6, "log": lambda _: None}
CLASSES = by_name((*EMOJI_OBJECTS, *SHAPES))


def _read_jsonl(path: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("gen") / "shapes"
  generate.generate(out, seed=3, objects="shapes", **SMALL)
  return out


def _emoji_available() -> bool:
  try:
    gen_assets.emoji_font_path(log=lambda _: None)
  except RuntimeError:
    return False
  return True


@pytest.fixture(scope="module")
def emoji_set(tmp_path_factory) -> pathlib.Path:
  if not _emoji_available():
    pytest.skip("fonts-noto-color-emoji cannot be fetched here (no apt-get or no registry)")
  out = tmp_path_factory.mktemp("gen") / "emoji"
  generate.generate(out, seed=5, objects="emoji", **SMALL)
  return out


@pytest.fixture(params=["shapes_set", "emoji_set"])
def dataset(request) -> pathlib.Path:
  return request.getfixturevalue(request.param)


def _all_files(root: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(shapes_set, tmp_path):
  again = tmp_path / "again"
  generate.generate(again, seed=3, objects="shapes", **SMALL)
  assert _all_files(again) == _all_files(shapes_set)


def test_another_seed_gives_other_images(shapes_set, tmp_path):
  other = tmp_path / "other"
  generate.generate(other, seed=4, objects="shapes", **SMALL)
  ours, theirs = _all_files(shapes_set), _all_files(other)
  same = [name for name in ours if name.startswith("images/") and ours[name] == theirs.get(name)]
  assert not same


def _scenes(root: pathlib.Path) -> dict[str, dict]:
  return {s["image"]: s for s in _read_jsonl(root / "scenes.jsonl")}


def test_images_exist_with_the_configured_size(dataset):
  manifest = json.loads((dataset / "manifest.json").read_text())
  scenes = _scenes(dataset)
  assert len(scenes) == manifest["counts"]["images"]
  for image in scenes:
    with Image.open(dataset / image) as im:
      assert im.size == (64, 64) and im.mode == "RGB"


def test_captions_and_instruct_follow_the_llava_format(dataset):
  scenes = _scenes(dataset)
  captions = _read_jsonl(dataset / "captions.jsonl")
  assert len(captions) == SMALL["n_captions"]
  assert all(set(c) == {"image", "caption"} and c["image"] in scenes and c["caption"] for c in captions)
  items = json.loads((dataset / "instruct.json").read_text())
  assert len(items) == SMALL["n_instruct"]
  for item in items:
    assert item["kind"] in KINDS
    turns = item["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2) and turns
    assert all(t["value"] for t in turns)
    if "image" in item:
      assert item["image"] in scenes and scenes[item["image"]]["split"] == "train"
      assert turns[0]["value"].startswith("<image>\n")
      assert sum("<image>" in t["value"] for t in turns) == 1
    else:
      assert item["kind"] == "other" and not any("<image>" in t["value"] for t in turns)
  assert {i["kind"] for i in items} == set(KINDS)
  assert any("image" not in i for i in items) and any("image" in i for i in items)
