"""Tests for the generated multimodal data: determinism, file formats, answers true by construction."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from visual_priors.data.multimodal import gen_assets, gen_questions, generate
from visual_priors.eval import benchmarks
from visual_priors.data.multimodal.gen_objects import EMOJI_OBJECTS, SHAPES, by_name
from visual_priors.data.multimodal.gen_questions import GROUP_NOUNS, GROUPS, KINDS, LETTERS, TYPES
from visual_priors.data.multimodal.scene import RELATIONS, SIZE_LEVELS, quadrant, relation
from visual_priors.names import UnknownNameError

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


def test_same_seed_gives_byte_identical_files_in_another_process(shapes_set, tmp_path):
  again = tmp_path / "again"
  settings = {k: v for k, v in SMALL.items() if k != "log"}
  code = ("import sys; from visual_priors.data.multimodal import generate; "
          f"generate.generate(sys.argv[1], seed=3, objects='shapes', log=lambda _: None, **{settings!r})")
  env = {**os.environ, "PYTHONHASHSEED": "12345"}  # set iteration order must not matter
  subprocess.run([sys.executable, "-c", code, str(again)], check=True, env=env)
  assert _all_files(again) == _all_files(shapes_set)


def test_same_seed_gives_byte_identical_emoji_files(emoji_set, tmp_path):
  again = tmp_path / "again"
  generate.generate(again, seed=5, objects="emoji", **SMALL)
  assert _all_files(again) == _all_files(emoji_set)


def test_another_seed_gives_other_images(shapes_set, tmp_path):
  other = tmp_path / "other"
  generate.generate(other, seed=4, objects="shapes",
                    **{**SMALL, "n_instruct": 20, "n_eval_per_benchmark": 4, "n_mle_per_level": 2})
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


# Independent ground-truth checks: each recomputes a question's answer from the scene record.

def _objects(scene: dict, name: str) -> list[dict]:
  return [o for o in scene["objects"] if o["name"] == name]


def _one(scene: dict, name: str) -> dict:
  (found,) = _objects(scene, name)
  return found


def _present_names(scene: dict) -> set[str]:
  names = set(scene["background_contains"])
  for o in scene["objects"]:
    names |= CLASSES[o["name"]].names
  return names


def _relations(a: list[int], b: list[int]) -> set[str]:
  """Every relation that holds between two boxes (x0, y0, x1, y1)."""
  found = set()
  if a[2] <= b[0]:
    found.add("to the left of")
  if b[2] <= a[0]:
    found.add("to the right of")
  if a[3] <= b[1]:
    found.add("above")
  if b[3] <= a[1]:
    found.add("below")
  return found


def _chart_value(scene: dict, label: str) -> int:
  chart = scene["chart"]
  return chart["values"][chart["labels"].index(label)]


def _match(pattern: str, question: str) -> tuple[str, ...]:
  found = re.fullmatch(pattern, question)
  assert found, (pattern, question)
  return found.groups()


def _true_answer(task: str, question: str, choices: list[str] | None, scene: dict) -> str:
  """The answer recomputed from the scene; also asserts that no other choice is true."""
  s = scene
  if task == "existence":
    (name,) = _match(r"Is there (?:an?|some) (.+) in the image\?", question)
    if _objects(s, name):
      return "Yes"
    assert not CLASSES[name].names & _present_names(s)
    return "No"
  if task == "identity":
    present = [c for c in choices if c in _present_names(s)]
    assert len(present) == 1
    return present[0]
  if task == "colour":
    (name,) = _match(r"What colour is the (.+)\?", question)
    return _one(s, name)["colour"]
  if task == "shape":
    (colour,) = _match(r"Which shape is (.+)\?", question)
    (found,) = [o for o in s["objects"] if o["colour"] == colour]
    return found["name"]
  if task == "position":
    (name,) = _match(r"Where is the (.+) in the image\?", question)
    x0, y0, x1, y1 = _one(s, name)["box"]
    half = 64 / 2
    assert (x1 <= half or x0 >= half) and (y1 <= half or y0 >= half)
    return f"{'top' if y1 <= half else 'bottom'} {'left' if x1 <= half else 'right'}"
  if task == "legs_total":
    return str(sum(CLASSES[o["name"]].legs for o in s["objects"]))
  if task == "sides_total":
    return str(sum(CLASSES[o["name"]].sides for o in s["objects"]))
  if task == "chart_sum":
    a, b = _match(r"What is the sum of the values of (\w+) and (\w+)\?", question)
    return str(_chart_value(s, a) + _chart_value(s, b))
  if task == "chart_difference":
    a, b = _match(r"How much greater is the value of (\w+) than the value of (\w+)\?", question)
    assert _chart_value(s, a) > _chart_value(s, b)
    return str(_chart_value(s, a) - _chart_value(s, b))
  if task == "category":
    (noun,) = _match(r"Which of these objects in the image is (.+)\?", question)
    group = {v: k for k, v in GROUP_NOUNS.items()}[noun]
    matching = [c for c in choices if CLASSES[c].group == group]
    assert len(matching) == 1 and _objects(s, matching[0])
    return matching[0]
  if task in ("read_word", "read_word_open"):
    assert question == "What word is written on the sign?"
    return s["text"]
  if task in ("bar_value", "line_value"):
    pattern = r"What is the value of (\w+) in the chart\?" if task == "bar_value" else \
        r"What is the value in (\w+)\?"
    (label,) = _match(pattern, question)
    return str(_chart_value(s, label))
  if task == "chart_max":
    chart = s["chart"]
    assert chart["values"].count(max(chart["values"])) == 1
    return chart["labels"][chart["values"].index(max(chart["values"]))]
  if task in ("count", "count_open"):
    (plural,) = _match(r"How many (.+) are there in the image\?", question)
    return str(sum(CLASSES[o["name"]].plural == plural for o in s["objects"]))
  if task == "count_compare":
    a, b = _match(r"Are there more (.+) than (.+) in the image\?", question)
    count = lambda plural: sum(CLASSES[o["name"]].plural == plural for o in s["objects"])
    return "Yes" if count(a) > count(b) else "No"
  if task == "spatial_relation":
    a, b = _match(r"Where is the (.+) relative to the (.+)\?", question)
    (truth,) = _relations(_one(s, a)["box"], _one(s, b)["box"])
    return truth
  if task == "spatial_yes_no":
    a, rel, b = _match(r"Is the (.+) (to the left of|to the right of|above|below) the (.+)\?",
                       question)
    truths = _relations(_one(s, a)["box"], _one(s, b)["box"])
    assert len(truths) == 1
    return "Yes" if rel in truths else "No"
  if task == "larger":
    (which,) = _match(r"Which object is (larger|smaller) in the image\?", question)
    by_area = sorted(choices, key=lambda c: _one(s, c)["area"])
    small, big = (_one(s, c) for c in by_area)
    assert big["area"] >= 2 * small["area"]
    return by_area[1] if which == "larger" else by_area[0]
  if task == "depth":
    by_depth = sorted(choices, key=lambda c: _one(s, c)["depth"])
    back = _one(s, by_depth[0])
    assert back["area"] < back["full_area"]
    return by_depth[1] if "in front" in question else by_depth[0]
  raise AssertionError(f"no checker for task {task!r}")


def test_every_eval_answer_is_among_its_choices_and_true_of_the_scene(dataset):
  scenes = _scenes(dataset)
  checked = set()
  for name in generate.BENCHMARKS:
    for row in _read_jsonl(dataset / "eval" / f"{name}.jsonl"):
      scene = scenes[f"eval/{row['image']}"]
      assert scene["split"] == "eval" and row["type"] in TYPES
      if row["type"] == "multiple_choice":
        assert row["answer"] in row["choices"] and len(set(row["choices"])) == len(row["choices"])
        assert row["choices"][LETTERS.index(row["answer_letter"])] == row["answer"]
      else:
        assert row["choices"] is None and row["answer_letter"] is None
      assert row["answer"] == _true_answer(row["task"], row["question"], row["choices"], scene)
      assert row["prompt"].startswith(row["question"])
      checked.add(row["task"])
  assert len(checked) >= 18


def _parse_turn(value: str) -> tuple[str, list[str] | None]:
  lines = value.removeprefix("<image>\n").split("\n")
  options = [line[3:] for line in lines[1:] if re.match(r"[A-H]\. ", line)]
  return lines[0], options or None


def test_every_instruct_answer_is_true_of_the_scene(dataset):
  scenes = _scenes(dataset)
  for item in json.loads((dataset / "instruct.json").read_text()):
    if item["task"] in ("text_only", "describe"):
      continue
    turns = item["conversations"]
    for human, gpt in zip(turns[::2], turns[1::2]):
      question, choices = _parse_turn(human["value"])
      answer = choices[LETTERS.index(gpt["value"])] if choices else gpt["value"]
      assert answer == _true_answer(item["task"], question, choices, scenes[item["image"]])


def test_captions_name_every_object(dataset):
  scenes = _scenes(dataset)
  rows = _read_jsonl(dataset / "captions.jsonl")
  items = json.loads((dataset / "instruct.json").read_text())
  rows += [{"image": i["image"], "caption": i["conversations"][1]["value"]}
           for i in items if i["task"] == "describe"]
  for row in rows:
    scene = scenes[row["image"]]
    for o in scene["objects"]:
      assert o["name"] in row["caption"] or CLASSES[o["name"]].plural in row["caption"]
    if scene["text"]:
      assert f'"{scene["text"]}"' in row["caption"]
    if scene["chart"]:
      for label, value in zip(scene["chart"]["labels"], scene["chart"]["values"]):
        assert f"{label} {value}" in row["caption"]


def test_mle_bench_rows_honour_size_levels_and_exclude_present_objects(dataset):
  scenes = _scenes(dataset)
  rows = _read_jsonl(dataset / "eval" / "mle_bench.jsonl")
  assert [r["sub_task"] for r in rows] == [level for level in SIZE_LEVELS
                                           for _ in range(SMALL["n_mle_per_level"])]
  for row in rows:
    assert set(row) == {"image", "question", "choices", "answer", "sub_task", "prompt"}
    assert row["question"] == "Which of the following objects appears in the image?"
    assert len(row["choices"]) == 4 and len(set(row["choices"])) == 4
    assert row["answer"] in row["choices"]
    scene = scenes[f"eval/{row['image']}"]
    target = max(scene["objects"], key=lambda o: o["depth"])
    assert target["name"] == row["answer"] and target["area"] == target["full_area"]
    low, high = SIZE_LEVELS[row["sub_task"]]
    assert low < target["area"] <= high
    present = _present_names(scene)
    for distractor in row["choices"]:
      if distractor != row["answer"]:
        assert not CLASSES[distractor].names & present


def test_size_levels_all_occur_with_areas_spread_inside_them(dataset):
  scenes = _scenes(dataset)
  areas = {}
  for row in _read_jsonl(dataset / "eval" / "mle_bench.jsonl"):
    target = max(scenes[f"eval/{row['image']}"]["objects"], key=lambda o: o["depth"])
    areas.setdefault(row["sub_task"], []).append(target["area"])
  assert set(areas) == set(SIZE_LEVELS)
  assert max(areas["existence_0-30"]) < min(areas["existence_30-60"])
  assert max(areas["existence_30-60"]) < min(areas["existence_60-100"])


def test_four_groups_with_mostly_multiple_choice(dataset):
  rows = []
  for name, group in generate.BENCHMARKS.items():
    bench = _read_jsonl(dataset / "eval" / f"{name}.jsonl")
    assert len(bench) == SMALL["n_eval_per_benchmark"] and {r["group"] for r in bench} == {group}
    rows += bench
  assert {r["group"] for r in rows} == set(GROUPS)
  types = [r["type"] for r in rows]
  assert set(types) == set(TYPES) and types.count("multiple_choice") > len(types) / 2
  letters = [r["answer_letter"] for r in rows if r["type"] == "multiple_choice"]
  assert len(set(letters)) >= 3  # options are shuffled, not always "A"
  yes_no = [r["answer"] for r in rows if r["type"] == "yes_no"]
  assert "Yes" in yes_no and "No" in yes_no


def test_evaluation_images_are_held_out_from_training(dataset):
  scenes = list(_scenes(dataset).values())
  train_bytes = {(dataset / s["image"]).read_bytes() for s in scenes if s["split"] == "train"}
  for scene in scenes:
    if scene["background"] is not None:
      width = gen_assets.photo_pixels(scene["background"]).shape[1]
      boundary = int(width * gen_assets.TRAIN_REGION)
      x0, _, x1, _ = scene["crop"]
      assert x1 <= boundary if scene["split"] == "train" else x0 >= boundary
    if scene["split"] == "eval":
      assert (dataset / scene["image"]).read_bytes() not in train_bytes


def test_emoji_fetch_failure_falls_back_to_shapes_named_in_the_manifest(monkeypatch, tmp_path):
  def unreachable(*args, **kwargs):
    raise RuntimeError("registry unreachable")

  monkeypatch.setattr(gen_assets, "emoji_font_path", unreachable)
  tiny = {**SMALL, "n_captions": 2, "n_instruct": 5, "n_eval_per_benchmark": 1, "n_mle_per_level": 1}
  manifest = generate.generate(tmp_path / "auto", objects="auto", **tiny)
  assert manifest["object_source"]["name"] == "PIL-drawn shapes"
  assert "fallback" in manifest["object_source"]["reason"]
  assert set(manifest["vocabulary"]) == {c.name for c in SHAPES}
  assert "legs_total" not in manifest["tasks"]
  with pytest.raises(RuntimeError, match="unreachable"):
    generate.generate(tmp_path / "emoji", objects="emoji", **tiny)


def test_text_answers_ask_for_and_teach_the_option_text_with_the_same_scenes(shapes_set, tmp_path):
  """mc_answer="text": every multiple-choice prompt ends with the text instruction and is answered with the correct
  option's text; the questions, options, answers and images are those of the letter format."""
  text = tmp_path / "text"
  manifest = generate.generate(text, seed=3, objects="shapes", mc_answer="text", **SMALL)
  assert manifest["mc_answer"] == "text"
  letter_items = json.loads((shapes_set / "instruct.json").read_text())
  text_items = json.loads((text / "instruct.json").read_text())
  multiple_choice = 0
  for letter_item, text_item in zip(letter_items, text_items, strict=True):
    assert letter_item.get("image") == text_item.get("image")
    assert len(letter_item["conversations"]) == len(text_item["conversations"])
    for (q_letter, a_letter), (q_text, a_text) in zip(
        zip(letter_item["conversations"][::2], letter_item["conversations"][1::2]),
        zip(text_item["conversations"][::2], text_item["conversations"][1::2])):
      if q_letter["value"].endswith(gen_questions.MC_INSTRUCTION):
        multiple_choice += 1
        assert q_text["value"] == (q_letter["value"][:-len(gen_questions.MC_INSTRUCTION)]
                                   + gen_questions.MC_TEXT_INSTRUCTION)
        options = dict(line.split(". ", 1) for line in q_letter["value"].split("\n") if line[1:3] == ". ")
        assert a_text["value"] == options[a_letter["value"]]
      else:
        assert (q_text, a_text) == (q_letter, a_letter)
  assert multiple_choice > 20
  for benchmark in ("gen_general", "gen_vision_centric"):
    letter_rows = _read_jsonl(shapes_set / "eval" / f"{benchmark}.jsonl")
    text_rows = _read_jsonl(text / "eval" / f"{benchmark}.jsonl")
    for letter_row, text_row in zip(letter_rows, text_rows, strict=True):
      assert {k: v for k, v in letter_row.items() if k != "prompt"} == {k: v for k, v in text_row.items()
                                                                       if k != "prompt"}
      if letter_row["choices"]:
        assert text_row["prompt"].endswith(gen_questions.MC_TEXT_INSTRUCTION)
  # MLE-Bench is asked the same way, through the benchmark registry the eval stage reads it with.
  items = benchmarks.BENCHMARKS["gen_mle_bench"].load(text / "eval" / "mle_bench.jsonl")
  assert items and all(item["prompt"].endswith(gen_questions.MC_TEXT_INSTRUCTION) for item in items)
  letter_items = benchmarks.BENCHMARKS["gen_mle_bench"].load(shapes_set / "eval" / "mle_bench.jsonl")
  assert all(item["prompt"].endswith(gen_questions.MC_INSTRUCTION) for item in letter_items)
  with pytest.raises(ValueError, match="mc_answer"):
    generate.generate(tmp_path / "x", objects="shapes", mc_answer="word", log=lambda _: None)


def test_bad_arguments_are_rejected(tmp_path):
  with pytest.raises(ValueError, match="objects="):
    generate.generate(tmp_path / "x", objects="clipart", log=lambda _: None)
  with pytest.raises(ValueError, match="image_size"):
    generate.generate(tmp_path / "x", image_size=16, objects="shapes", log=lambda _: None)
  with pytest.raises(ValueError, match="n_instruct"):
    generate.generate(tmp_path / "x", n_instruct=-1, objects="shapes", log=lambda _: None)
  assert not (tmp_path / "x").exists()


def test_relation_holds_for_exactly_one_direction():
  left, right = (0, 10, 10, 20), (12, 15, 20, 25)
  assert relation(left, right) == "to the left of" and relation(right, left) == "to the right of"
  top, bottom = (5, 0, 15, 8), (0, 9, 10, 20)
  assert relation(top, bottom) == "above" and relation(bottom, top) == "below"
  assert relation((0, 0, 5, 5), (10, 10, 15, 15)) is None  # diagonal: left and above both hold
  assert relation((0, 0, 10, 10), (5, 5, 15, 15)) is None  # overlapping boxes
  assert set(RELATIONS) == {"to the left of", "to the right of", "above", "below"}


def test_quadrant_needs_the_box_wholly_inside_one():
  assert quadrant((0, 0, 32, 32), 64) == "top left"
  assert quadrant((32, 40, 60, 64), 64) == "bottom right"
  assert quadrant((30, 0, 40, 10), 64) is None


def test_canvas_measures_visible_area_after_occlusion():
  from visual_priors.data.multimodal.scene import Canvas

  canvas = Canvas(Image.new("RGB", (10, 10), (0, 0, 0)))
  square = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
  canvas.paste("back", square, (0, 0), (4, 4))
  canvas.paste("front", square, (2, 2), (4, 4))
  canvas.paste("edge", square, (8, 8), (4, 4))  # 2x2 of it inside the image
  back, front, edge = canvas.placed()
  assert back.full_area == 16 / 100 and back.area == 12 / 100 and back.box == (0, 0, 4, 4)
  assert front.area == front.full_area == 16 / 100 and front.box == (2, 2, 6, 6)
  assert edge.area == 4 / 100 and edge.box == (8, 8, 10, 10)
  assert [p.depth for p in (back, front, edge)] == [0, 1, 2]
  assert np.asarray(canvas.rgb())[3, 3].tolist() == [255, 0, 0]


def test_no_pasted_object_is_named_like_something_the_photo_shows(dataset):
  for scene in _scenes(dataset).values():
    for o in scene["objects"]:
      assert not CLASSES[o["name"]].names & set(scene["background_contains"]), (scene["image"], o)


def test_task_selection_limits_every_output(tmp_path):
  tiny = {**SMALL, "n_captions": 4, "n_instruct": 10, "n_eval_per_benchmark": 4, "n_mle_per_level": 0}
  manifest = generate.generate(tmp_path / "sel", objects="shapes", tasks=["colour", "count"], **tiny)
  assert sorted(manifest["tasks"]) == ["colour", "count"]
  assert sorted(p.name for p in (tmp_path / "sel" / "eval").glob("*.jsonl")) == [
      "gen_general.jsonl", "gen_vision_centric.jsonl", "mle_bench.jsonl"]
  items = json.loads((tmp_path / "sel" / "instruct.json").read_text())
  assert {i["task"] for i in items} == {"colour", "count", "text_only"}
  generate.generate(tmp_path / "images_only", objects="shapes", tasks=["colour", "count"], text_only_every=0, **tiny)
  items = json.loads((tmp_path / "images_only" / "instruct.json").read_text())
  assert [i["task"] for i in items] == ["colour", "count"] * 5  # every item has an image; the tasks alternate
  with pytest.raises(ValueError, match="text_only_every"):
    generate.generate(tmp_path / "bad", objects="shapes", text_only_every=-1, **tiny)
  with pytest.raises(UnknownNameError, match="colour"):
    generate.generate(tmp_path / "bad", objects="shapes", tasks=["color"], **tiny)
  with pytest.raises(ValueError, match="emoji"):
    generate.generate(tmp_path / "bad", objects="shapes", tasks=["legs_total"], **tiny)


def test_the_multimodal_loaders_read_every_file_with_their_default_image_folders(shapes_set):
  from visual_priors.data.multimodal import loaders

  items = loaders.load_llava(shapes_set / "instruct.json")
  captions = loaders.load_captions(shapes_set / "captions.jsonl")
  mle = loaders.load_mle_bench(shapes_set / "eval" / "mle_bench.jsonl")
  assert len(items) == SMALL["n_instruct"] and len(captions) == SMALL["n_captions"]
  assert len(mle) == 3 * SMALL["n_mle_per_level"]
  images = [r["image"] for r in (*items, *captions, *mle) if r["image"] is not None]
  assert all(pathlib.Path(p).is_file() for p in images)
  assert all("/eval/images/" in r["image"] for r in mle)
  for name in generate.BENCHMARKS:
    for row in _read_jsonl(shapes_set / "eval" / f"{name}.jsonl"):
      assert (shapes_set / "eval" / row["image"]).is_file()


def test_numeric_distractors_leave_the_answers_rank_uniform_away_from_the_bound():
  """Four consecutive values around the answer at a uniformly drawn offset: the sorted options do not give the
  answer away (it was most often the middle one), and none is below the bound."""
  rng = np.random.default_rng(0)
  ranks = {0: 0, 1: 0, 2: 0, 3: 0}
  for _ in range(4000):
    options = sorted([7, *map(int, gen_questions._near_numbers(rng, 7, step=2))])  # pylint: disable=protected-access
    assert options == list(range(options[0], options[0] + 8, 2))
    ranks[options.index(7)] += 1
  assert all(900 < count < 1100 for count in ranks.values()), ranks
  for answer in range(4):
    for _ in range(50):
      options = [answer, *map(int, gen_questions._near_numbers(rng, answer, low=0))]  # pylint: disable=protected-access
      assert min(options) >= 0 and len(set(options)) == 4
  assert generate.GENERATOR_VERSION >= 2  # the distractors changed with version 2
