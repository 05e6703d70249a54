"""Benchmark loaders read excerpts of the real released files (tests/fixtures/benchmarks/, sources in its README)."""

from __future__ import annotations

import collections
import io
import json
import pathlib
import shutil

import pytest
from PIL import Image

from visual_priors.data.multimodal.gen_questions import format_prompt
from visual_priors.eval import benchmarks as bm
from visual_priors.eval import zero_shot

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"


def _copy(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
  """The excerpt of `name` copied under a data root (images are added next to it by each test)."""
  shutil.copytree(FIXTURES / name, tmp_path / name)
  return tmp_path / name


def _placeholders(folder: pathlib.Path, names) -> None:
  """Small generated images where the release keeps the real ones (they are not in the excerpts)."""
  for name in set(names):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), "gray").save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")


def _check(items, name: str, count: int) -> dict[str, dict]:
  assert len(items) == count
  ids = [item["id"] for item in items]
  assert len(set(ids)) == len(ids)
  for item in items:
    assert item["benchmark"] == name and item["group"] == bm.BENCHMARKS[name].group
    assert item["type"] in bm.BENCHMARKS[name].answer_types
    if item["type"] == "mc":
      assert item["answer"] in item["choices"]
    assert pathlib.Path(item["image"]).is_file()
  return {item["id"]: item for item in items}


def test_fixture_readme_lists_every_excerpt():
  readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
  for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
    assert f"`{folder.name}/" in readme, folder.name


def test_ocrbench_release_ids_unique_across_source_data_sets(tmp_path):
  root = _copy(tmp_path, "ocrbench")
  rows = json.loads((root / "OCRBench.json").read_text(encoding="utf-8"))
  assert collections.Counter(row["id"] for row in rows)[0] == 4  # IC15_1811, WordArt, ocrVQA and FUNSD all use 0
  _placeholders(root / "OCRBench_Images", [row["image_path"] for row in rows])
  items = _check(bm.load_benchmark("ocrbench", tmp_path), "ocrbench", 25)
  assert [item["id"] for item in bm.load_benchmark("ocrbench", tmp_path)] == [
      f"{row['dataset_name']}/{row['id']}" for row in rows]  # stable: the file's order, named by data set and id
  first = items["IIIT5K/2843"]
  assert first["question"] == "what is written in the image?" and first["answer"] == "CENTRE"
  assert first["meta"] == {"dataset": "IIIT5K", "question_type": "Regular Text Recognition", "metric": "contains"}
  assert items["ctw/54"]["answer"] == ["ANTONIOS", "ANTONIO'S"]
  hme = items["HME100k/14413"]
  assert hme["answer"] == ["y _ { 2 } = - 1\n", "y_2 = - 1\n"] and hme["meta"]["metric"] == "contains_nospace"
  assert hme["image"].endswith("HME100K/test/test_images/test_17522.jpg")


def test_mathvista_testmini_json(tmp_path):
  root = _copy(tmp_path, "mathvista")
  rows = json.loads((root / "testmini.json").read_text(encoding="utf-8"))
  _placeholders(root, [row["image"] for row in rows.values()])
  items = _check(bm.load_benchmark("mathvista", tmp_path), "mathvista", 30)
  assert sorted(items, key=int) == [str(pid) for pid in range(1, 31)]
  spring = items["1"]
  assert spring["type"] == "open" and spring["answer"] == "1.2" and spring["meta"]["precision"] == 1
  assert spring["question"].startswith("When a spring does work on an object")
  assert "integration.\r\n\r\nIn Figure, a cumin canister" in spring["question"]
  cup = items["2"]
  assert cup["answer"] == "1000" and cup["meta"] == {"answer_type": "integer", "precision": None, "unit": "g",
                                                      "metric": "numeric"}
  angle = items["3"]
  assert angle["type"] == "mc" and angle["choices"] == ["135°", "140°", "145°", "150°"]
  assert angle["answer"] == "145°"
  clock = items["7"]
  assert clock["choices"] == ["half", "quarter", "o'clock", "quarter to", "quarter past"]
  assert clock["answer"] == "quarter" and clock["prompt"] == format_prompt(clock["question"], clock["choices"])
  assert collections.Counter(item["type"] for item in items.values()) == {"mc": 19, "open": 11}


def test_chartqa_human_and_augmented_test_files(tmp_path):
  root = _copy(tmp_path, "chartqa")
  names = [row["imgname"] for split in ("human", "augmented")
           for row in json.loads((root / "test" / f"test_{split}.json").read_text(encoding="utf-8"))]
  _placeholders(root / "test" / "png", names)
  items = _check(bm.load_benchmark("chartqa", tmp_path), "chartqa", 40)
  assert items["human-0"]["question"] == "How many food item is shown in the bar graph?"
  assert items["human-0"]["answer"] == "14" and items["human-0"]["image"].endswith("41699051005347.png")
  assert items["human-3"]["answer"] == "No" and items["human-3"]["meta"] == {"split": "human", "metric": "relaxed"}
  assert items["augmented-10"]["question"] == "Who is predicted to have the highest gross profit margin?"
  assert items["augmented-10"]["answer"] == "Ted Baker"


def test_scienceqa_problems_json_keeps_test_questions_with_images(tmp_path):
  root = _copy(tmp_path, "scienceqa")
  problems = json.loads((root / "problems.json").read_text(encoding="utf-8"))
  _placeholders(root / "images" / "test", [f"{pid}/{p['image']}" for pid, p in problems.items()
                                             if p["split"] == "test" and p["image"]])
  items = _check(bm.load_benchmark("scienceqa", tmp_path), "scienceqa", 3)
  assert list(items) == ["5", "11", "23"]  # of 40 problems: the test split's with an image
  colony = items["11"]
  assert colony["question"] == "What is the name of the colony shown?"
  assert colony["choices"] == ["Maryland", "New Hampshire", "Rhode Island", "Vermont"]
  assert colony["answer"] == "New Hampshire" and colony["meta"] == {"subject": "social science", "grade": "grade5"}
  lichen = items["23"]
  assert lichen["question"].startswith("Context: Below is a food web from a tundra ecosystem in Nunavut")
  assert lichen["question"].endswith("\nWhich of these organisms contains matter that was once part of the lichen?")
  assert lichen["answer"] == "mushroom"


def test_mme_eval_tool_results_with_nested_release_images(tmp_path):
  root = _copy(tmp_path, "mme")
  release = root / "MME_Benchmark_release_version"  # what unpacking the release's zip creates
  lines = {text.stem: [line.split("\t") for line in text.read_text(encoding="utf-8").splitlines()]
           for text in (root / "eval_tool" / "Your_Results").glob("*.txt")}
  _placeholders(release / "artwork" / "images", [line[0] for line in lines["artwork"]])  # images/ + questions_...
  _placeholders(release / "existence", [line[0] for line in lines["existence"]])  # images beside their txt files
  _placeholders(release / "code_reasoning", [line[0] for line in lines["code_reasoning"]])
  items = _check(bm.load_benchmark("mme", tmp_path), "mme", 36)
  train = items["existence/000000006040/0"]
  assert train["question"] == "Is there a train in this image? Please answer yes or no." and train["answer"] == "Yes"
  assert train["meta"] == {"category": "existence", "image_id": "existence/000000006040"}
  assert items["existence/000000007108/1"]["question"].startswith("Is there a hair drier in this image?")
  assert items["existence/000000007108/1"]["answer"] == "No"
  glass = items["artwork/10002/1"]
  assert glass["question"] == "Does this artwork exist in the form of glassware? Please answer yes or no."
  assert glass["answer"] == "No" and glass["image"] == str((release / "artwork" / "images" / "10002.jpg").resolve())
  code = items["code_reasoning/0001/1"]
  assert code["question"].endswith("Is the output of the code 'World'? Please answer yes or no.")
  assert collections.Counter(item["meta"]["category"] for item in items.values()) == {
      "existence": 20, "artwork": 10, "code_reasoning": 6}


def test_mme_nested_release_folder_and_missing_images(tmp_path):
  root = tmp_path / "mme" / "MME_Benchmark_release_version" / "MME_Benchmark"  # some copies nest one level deeper
  _placeholders(root / "artwork" / "images", ["10002.jpg"])
  (root / "artwork" / "questions_answers_YN").mkdir(parents=True)
  (root / "artwork" / "questions_answers_YN" / "10002.txt").write_text(
      "Does this artwork exist in the form of painting? Please answer yes or no.\tYes\n", encoding="utf-8")
  assert [item["id"] for item in bm.load_benchmark("mme", tmp_path)] == ["artwork/10002/0"]
  shutil.rmtree(tmp_path / "mme")
  _copy(tmp_path, "mme")  # the eval tool's files without the release: an error naming what to unpack
  with pytest.raises(FileNotFoundError, match="MME_Benchmark_release_version") as error:
    bm.load_benchmark("mme", tmp_path)
  assert not isinstance(error.value, bm.BenchmarkMissing)


def test_mmbench_dev_tsv_rows_with_quoted_multiline_hints(tmp_path):
  _copy(tmp_path, "mmbench")
  items = bm.load_benchmark("mmbench", tmp_path)
  assert [item["id"] for item in items] == ["241", "252", "253"] and {i["benchmark"] for i in items} == {"mmbench"}
  item = items[0]
  assert item["choices"] == [
      "Does Madelyn's snowboard slide down a hill in less time when it has a thin layer of wax or a thick layer of "
      "wax?",
      "Does Madelyn's snowboard slide down a hill in less time when it has a layer of wax or when it does not have a "
      "layer of wax?"]  # C and D are empty in the file
  assert item["answer"] == item["choices"][1]
  assert item["question"].startswith("The passage below describes an experiment. Read the passage and then follow")
  assert item["question"].endswith(
      "Figure: snowboarding down a hill.\nIdentify the question that Madelyn and Tucker's experiment can best answer.")
  assert item["meta"] == {"category": "identity_reasoning", "l2_category": "attribute_reasoning"}
  assert Image.open(io.BytesIO(item["image"])).size == (8, 6)  # the placeholder in the image cell
  concrete, soda = items[1], items[2]
  assert concrete["question"].endswith("Figure: preparing a concrete slump test.\n"
                                       "Which of the following could Laura and Isabella's test show?")
  assert concrete["answer"] == "if a new batch of concrete was firm enough to use"  # B
  assert soda["choices"] == ["the temperature of the soda", "the size of the ice pieces"]
  assert soda["answer"] == "the temperature of the soda"  # A
  assert soda["meta"] == {"category": "physical_property_reasoning", "l2_category": "attribute_reasoning"}
  for row in items:
    assert row["answer"] in row["choices"]


def test_gqa_release_format_sample(tmp_path):
  root = _copy(tmp_path, "gqa")
  # A verbatim sample of the release's val_balanced_questions.json; testdev_balanced_questions.json (the file the
  # loader reads) comes in the same zip in the same format, so the sample is placed under that name.
  (root / "SAMPLE-val_balanced_questions.json").rename(root / "testdev_balanced_questions.json")
  questions = json.loads((root / "testdev_balanced_questions.json").read_text(encoding="utf-8"))
  _placeholders(root / "images", [f"{q['imageId']}.jpg" for q in questions.values()])
  items = _check(bm.load_benchmark("gqa", tmp_path), "gqa", 5)
  assert list(items) == ["00126851", "00137872", "00137901", "00148535", "00155957"]
  carts = items["00126851"]
  assert carts["question"] == "Are there carts near the pond?" and carts["answer"] == "yes"
  assert carts["type"] == "open" and carts["image"].endswith("images/1159529.jpg")
  assert carts["meta"] == {"types": {"detailed": "existRelS", "semantic": "rel", "structural": "verify"},
                           "metric": "exact"}
  assert items["00137872"]["answer"] == "camera" and items["00148535"]["answer"] == "man"
  assert items["00137872"]["image"] == items["00137901"]["image"]  # two questions about one image


def test_piqa_release_labels_beside_the_rows(tmp_path):
  root = _copy(tmp_path, "piqa")
  path = zero_shot.find_file(tmp_path, "piqa")
  assert path == root / "valid.jsonl"
  rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
  assert all(set(row) == {"goal", "sol1", "sol2"} for row in rows)  # no label in the rows themselves
  labels = (root / "valid-labels.lst").read_text(encoding="utf-8").split()
  items = zero_shot.read_items(path, "piqa")
  assert len(items) == len(rows) == len(labels) == 30
  assert [item.label for item in items] == [int(label) for label in labels]
  cage = items[0]
  assert cage.contexts[0] == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
  assert cage.label == 0 and cage.continuations[0] == " " + rows[0]["sol1"]
  assert cage.continuations[1].endswith("bedding made of ripped jeans material, you will also need to supply it with a "
                                        "water bottle and a food dish.")
  dresser = items[1]
  assert dresser.contexts[0] == "Question: dresser\nAnswer:" and dresser.label == 1
  assert dresser.continuations[dresser.label] == " finish, woodgrain with  bobby pin "
  (root / "valid-labels.lst").write_text("0\n1\n", encoding="utf-8")  # fewer labels than rows: an error
  with pytest.raises(ValueError, match="line 3: valid-labels.lst has only 2 labels"):
    zero_shot.read_items(path, "piqa")


def test_seed_bench_documented_rows_keep_image_questions(tmp_path):
  root = _copy(tmp_path, "seed_bench")
  data = json.loads((root / "SEED-Bench.json").read_text(encoding="utf-8"))
  assert [q["data_type"] for q in data["questions"]] == ["image", "video", "video", "video"]
  # The official eval.py opens os.path.join(cc3m_dir, data_id): data_id is the image's file name as it stands.
  _placeholders(root / "SEED-Bench-image", [q["data_id"] for q in data["questions"] if q["data_type"] == "image"])
  items = _check(bm.load_benchmark("seed", tmp_path), "seed", 1)
  towels = items["101669"]
  assert towels["question"] == "How many towels are in the image?"
  assert towels["choices"] == ["One", "Two", "Three", "Four"] and towels["answer"] == "One"  # answer "A"
  assert towels["meta"] == {"question_type_id": 5}
  assert towels["image"] == str((root / "SEED-Bench-image" / "1454426_2591111986").resolve())


def test_boolq_readme_row(tmp_path):
  root = _copy(tmp_path, "boolq")
  (item,) = zero_shot.read_items(root / "readme_example.jsonl", "boolq")
  assert item.contexts[0].startswith("At the Liberation of France in the summer of 1944, Metropolitan France kept")
  assert item.contexts[0].endswith("remained the official time of Metropolitan France.\n"
                                   "Question: is france the same timezone as the uk?\nAnswer:")
  assert item.continuations == (" no", " yes") and item.label == 0  # "answer": false
