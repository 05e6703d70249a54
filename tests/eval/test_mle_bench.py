"""MLE-Bench: levels and their boundaries, building rows from masks/boxes, the generator adapter, level reports."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from visual_priors.data.multimodal import generate, loaders
from visual_priors.eval import mle_bench
from visual_priors.names import UnknownNameError

VOCABULARY = ["dog", "cat", "horse", "cow", "apple", "banana", "car", "bus"]
SYNONYMS = {"dog": {"puppy"}, "kitten": {"cat"}, "car": {"automobile"}}


def _mask(height: int, width: int, pixels: int) -> np.ndarray:
  mask = np.zeros(height * width, bool)
  mask[:pixels] = True
  return mask.reshape(height, width)


def test_levels_hold_their_lower_bound_and_large_holds_one():
  assert [mle_bench.level_of(f) for f in (0.01, 0.2999, 0.3, 0.5999, 0.6, 1.0)] == [
      "small", "small", "medium", "medium", "large", "large"]
  for bad in (0.0, -0.1, 1.01):
    with pytest.raises(ValueError, match="outside"):
      mle_bench.level_of(bad)
  assert mle_bench.resolve_level("existence_30-60") == "medium" and mle_bench.resolve_level("large") == "large"
  with pytest.raises(UnknownNameError, match="small"):
    mle_bench.resolve_level("smal")


def test_areas_from_masks_boxes_and_fractions_with_instances_merged():
  annotation = {"image": "a.png", "height": 10, "width": 10, "objects": [
      {"name": "dog", "mask": _mask(10, 10, 25)},
      {"name": "dog", "box": [0, 0, 10, 3]},  # overlaps the mask's first 25 pixels: union 30 + ... = rows 0-2
      {"name": "car", "box": [5.0, 5.0, 10.0, 9.0]},
      {"name": "sign", "area": 0.1}, {"name": "sign", "area": 0.05}]}
  areas = mle_bench.object_areas(annotation)
  assert areas == pytest.approx({"dog": 0.3, "car": 0.2, "sign": 0.15})
  with pytest.raises(ValueError, match="empty mask"):
    mle_bench.object_areas({"objects": [{"name": "dog", "mask": np.zeros((4, 4), bool)}]})
  with pytest.raises(ValueError, match="image size is unknown"):
    mle_bench.object_areas({"objects": [{"name": "dog", "box": [0, 0, 2, 2]}]})
  with pytest.raises(ValueError, match="empty box"):
    mle_bench.object_areas({"height": 4, "width": 4, "objects": [{"name": "dog", "box": [2, 2, 2, 3]}]})
  with pytest.raises(ValueError, match="no objects"):
    mle_bench.object_areas({"objects": []})
  with pytest.raises(ValueError, match="bool"):
    mle_bench.object_areas({"objects": [{"name": "dog", "mask": np.ones((2, 2), np.uint8)}]})


def _annotations(count: int = 30) -> list[dict]:
  rng = np.random.default_rng(0)
  out = []
  for i in range(count):
    target = VOCABULARY[i % 4]
    out.append({"image": f"img_{i}.png", "objects": [
        {"name": target, "mask": _mask(20, 20, int(rng.integers(1, 400)))},
        {"name": "puppy" if i % 2 else "kitten", "box": [0, 0, 2, 2]}]})
  return out


def test_build_rows_are_deterministic_released_format_and_exclude_present_names_and_synonyms():
  annotations = _annotations()
  rows = mle_bench.build_mle_bench(annotations, VOCABULARY, synonyms=SYNONYMS, seed=7)
  assert rows == mle_bench.build_mle_bench(annotations, VOCABULARY, synonyms=SYNONYMS, seed=7)
  assert rows != mle_bench.build_mle_bench(annotations, VOCABULARY, synonyms=SYNONYMS, seed=8)
  # Order-independent: each image's question depends on the seed and the image only.
  reversed_rows = mle_bench.build_mle_bench(annotations[::-1], VOCABULARY, synonyms=SYNONYMS, seed=7)
  assert sorted(map(json.dumps, reversed_rows)) == sorted(map(json.dumps, rows))
  positions = set()
  for row, annotation in zip(rows, annotations):
    assert set(row) == set(loaders.MLE_BENCH_FIELDS) and row["question"] == generate.MLE_QUESTION
    assert len(row["choices"]) == 4 == len(set(row["choices"])) and row["answer"] in row["choices"]
    areas = mle_bench.object_areas(annotation)
    assert row["sub_task"] == mle_bench.LEVELS[mle_bench.level_of(areas[row["answer"]])][0]
    wrong = set(row["choices"]) - {row["answer"]}
    # "puppy" is a synonym of dog, "kitten" of cat (listed the other way round): both excluded.
    present = {annotation["objects"][0]["name"], "dog" if "puppy" in areas else "cat"}
    assert not wrong & present
    positions.add(row["choices"].index(row["answer"]))
  assert positions == {0, 1, 2, 3}
  assert {r["answer"] for r in rows} <= set(VOCABULARY) | {"puppy", "kitten"}


def test_per_image_levels_targets_and_clear_errors():
  annotation = {"image": "x.png", "height": 10, "width": 10, "objects": [
      {"name": "dog", "box": [0, 0, 10, 7]}, {"name": "cat", "box": [0, 7, 10, 9]},
      {"name": "cow", "box": [0, 9, 2, 10]}]}
  rows = mle_bench.build_mle_bench([annotation], VOCABULARY, seed=0, per_image=3)
  assert sorted((r["answer"], r["sub_task"]) for r in rows) == [
      ("cat", "existence_0-30"), ("cow", "existence_0-30"), ("dog", "existence_60-100")]
  large = mle_bench.build_mle_bench([annotation], VOCABULARY, seed=0, per_image=3, levels=["existence_60-100"])
  assert [r["answer"] for r in large] == ["dog"]
  assert mle_bench.build_mle_bench([annotation], VOCABULARY, seed=0, levels=["medium"]) == []
  assert [r["answer"] for r in mle_bench.build_mle_bench([{**annotation, "targets": ["cat"]}], VOCABULARY,
                                                          seed=0)] == ["cat"]
  with pytest.raises(UnknownNameError, match="medium"):
    mle_bench.build_mle_bench([annotation], VOCABULARY, seed=0, levels=["meduim"])
  with pytest.raises(ValueError, match="distractors are needed"):
    mle_bench.build_mle_bench([annotation], ["dog", "cat", "cow", "bus", "car"], seed=0)
  with pytest.raises(ValueError, match="not among its objects"):
    mle_bench.build_mle_bench([{**annotation, "targets": ["bus"]}], VOCABULARY, seed=0)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
  root = tmp_path_factory.mktemp("gen") / "data"
  generate.generate(root, seed=3, image_size=64, n_captions=0, n_instruct=0, n_eval_per_benchmark=0,
                    n_mle_per_level=3, objects="shapes", log=lambda _: None)
  return root


def test_generated_mle_bench_agrees_with_this_modules_levels_and_exclusions(generated):
  scenes = {json.loads(l)["image"]: json.loads(l) for l in (generated / "scenes.jsonl").read_text().splitlines()}
  vocabulary, synonyms = mle_bench.generated_vocabulary(generated)
  symmetric = mle_bench._symmetric(synonyms)  # pylint: disable=protected-access
  rows = loaders.load_mle_bench(generated / "eval" / "mle_bench.jsonl")
  assert len(rows) == 9
  for row in rows:
    scene = scenes[pathlib.Path(row["image"]).relative_to(generated.resolve()).as_posix()]
    target = scene["objects"][-1]
    assert row["answer"] == target["name"]
    assert row["sub_task"] == mle_bench.LEVELS[mle_bench.level_of(target["area"])][0]
    excluded = mle_bench.excluded_names([o["name"] for o in scene["objects"]] + scene["background_contains"],
                                        symmetric)
    assert not {c for c in row["choices"] if c != row["answer"]} & excluded


def test_rebuilding_the_generated_bench_with_another_seed(generated, tmp_path):
  original = loaders.load_mle_bench(generated / "eval" / "mle_bench.jsonl")
  rebuilt = mle_bench.build_generated(generated, seed=11)
  assert rebuilt == mle_bench.build_generated(generated, seed=11)
  assert {(r["image"], r["answer"], r["sub_task"]) for r in rebuilt} == {
      (r["image"], r["answer"], r["sub_task"]) for r in original}
  small = mle_bench.build_generated(generated, seed=11, levels=["small"])
  assert len(small) == 3 and {r["sub_task"] for r in small} == {"existence_0-30"}
  mle_bench.write_rows(tmp_path / "out" / "mle.jsonl", rebuilt)
  assert loaders.load_mle_bench(tmp_path / "out" / "mle.jsonl") == [
      {"id": f"mle-{i}", **r} for i, r in enumerate(rebuilt)]
  anything = mle_bench.build_generated(generated, seed=11, target="any", per_image=3)
  assert len(anything) >= len(rebuilt)
  with pytest.raises(ValueError, match="existence scenes only"):
    mle_bench.build_generated(generated, seed=1, kinds=("objects",))


def test_level_report_weighted_and_unweighted_overall_by_hand():
  rows = ([{"sub_task": "existence_0-30"}] * 4 + [{"sub_task": "existence_30-60"}] * 2
          + [{"sub_task": "existence_60-100"}] * 1)
  correct = [True, True, True, False] + [True, False] + [False]
  report = {r["metric"]: r for r in mle_bench.level_report(rows, correct, benchmark="gen_mle_bench")}
  # small 3/4 = 75%, medium 1/2 = 50%, large 0/1 = 0%; weighted 4/7; unweighted (75 + 50 + 0) / 3 = 41.67%.
  assert report["accuracy_small"]["value"] == 75.0 and report["accuracy_small"]["count"] == 4
  assert report["accuracy_medium"]["value"] == 50.0 and report["accuracy_large"]["value"] == 0.0
  assert report["overall_weighted"]["value"] == pytest.approx(400 / 7)
  assert report["overall_unweighted"]["value"] == pytest.approx(125 / 3)
  assert {r["benchmark"] for r in report.values()} == {"gen_mle_bench"} and report["overall_weighted"]["count"] == 7
  assert "accuracy_chance" not in report  # rows without their choices: chance unknown
  with_choices = [{**row, "choices": ["a", "b", "c", "d"]} for row in rows[:6]] + [{**rows[6], "choices": ["a", "b"]}]
  chance = {r["metric"]: r for r in mle_bench.level_report(with_choices, correct)}["accuracy_chance"]
  assert chance["value"] == pytest.approx(100 * (6 * 0.25 + 0.5) / 7) and chance["count"] == 7
  with pytest.raises(ValueError, match="correctness"):
    mle_bench.level_report(rows, correct[:-1])
  with pytest.raises(UnknownNameError, match="MLE-Bench level"):
    mle_bench.level_report([{"sub_task": "existence_90-100"}], [True])
