"""The benchmark registry and one tiny fixture per loader, written in that benchmark's released on-disk format."""

from __future__ import annotations

import base64
import io
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from visual_priors.data.multimodal.gen_questions import format_prompt
from visual_priors.eval import benchmarks as bm
from visual_priors.names import UnknownNameError


def _png(colour: str = "red", size: tuple[int, int] = (8, 6)) -> bytes:
  buffer = io.BytesIO()
  Image.new("RGB", size, colour).save(buffer, format="PNG")
  return buffer.getvalue()


def _write(path: pathlib.Path, data: bytes | str | object) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(data, bytes):
    path.write_bytes(data)
  elif isinstance(data, str):
    path.write_text(data, encoding="utf-8")
  else:
    path.write_text(json.dumps(data), encoding="utf-8")
  return path


def _parquet(path: pathlib.Path, rows: list[dict]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(pa.Table.from_pylist(rows), path)


def _by_id(items):
  return {item["id"]: item for item in items}


def _check_common(items, name):
  for item in items:
    assert set(item) >= {"id", "benchmark", "image", "question", "choices", "answer", "type", "prompt", "group",
                         "meta"}
    assert item["benchmark"] == name and item["group"] == bm.BENCHMARKS[name].group
    assert item["type"] in bm.BENCHMARKS[name].answer_types
    if item["type"] == "mc":
      assert item["answer"] in item["choices"]
    if isinstance(item["image"], str):
      assert pathlib.Path(item["image"]).is_absolute() and pathlib.Path(item["image"]).is_file()


def test_registry_holds_the_papers_sixteen_in_four_groups():
  assert len(bm.PAPER_BENCHMARKS) == 16 and set(bm.PAPER_BENCHMARKS) <= set(bm.BENCHMARKS)
  groups = [bm.BENCHMARKS[n].group for n in bm.PAPER_BENCHMARKS]
  assert {g: groups.count(g) for g in set(groups)} == {"General": 4, "Knowledge": 4, "OCR & Chart": 3,
                                                       "Vision-Centric": 5}
  assert [bm.BENCHMARKS[n].group for n in bm.GENERATED_BENCHMARKS] == ["General", "Knowledge", "OCR & Chart",
                                                                       "Vision-Centric"]
  assert bm.BENCHMARKS["mle_bench"].group is None and bm.BENCHMARKS["gen_mle_bench"].group is None


def test_entries_are_checked():
  with pytest.raises(ValueError, match="group 'Perception'"):
    bm.Benchmark("x", "Perception", ("mc",), "x", lambda path: [])
  with pytest.raises(ValueError, match="answer types"):
    bm.Benchmark("x", None, ("choice",), "x", lambda path: [])


def test_unknown_names_fail_with_close_matches():
  with pytest.raises(UnknownNameError, match="'gqa'"):
    bm.get_benchmark("gqa2")
  with pytest.raises(UnknownNameError, match="cvbench_"):
    bm.load_benchmark("cvbench", "/nonexistent")


@pytest.mark.parametrize("name", sorted(bm.BENCHMARKS))
def test_absent_files_report_missing(tmp_path, name):
  with pytest.raises(bm.BenchmarkMissing):
    bm.load_benchmark(name, tmp_path)


def test_paths_override_and_limit(tmp_path):
  _write(tmp_path / "elsewhere" / "testdev_balanced_questions.json",
         {f"q{i}": {"imageId": "n1", "question": "Is it red?", "answer": "yes"} for i in range(5)})
  _write(tmp_path / "elsewhere" / "images" / "n1.jpg", _png())
  items = bm.load_benchmark("gqa", tmp_path, paths={"gqa": "elsewhere"}, limit=2)
  assert [i["id"] for i in items] == ["q0", "q1"]
  assert len(bm.load_benchmark("gqa", tmp_path, paths={"gqa": str(tmp_path / "elsewhere")}, limit=0)) == 5
  with pytest.raises(ValueError, match="limit"):
    bm.load_benchmark("gqa", tmp_path, paths={"gqa": "elsewhere"}, limit=-1)


def test_gqa(tmp_path):
  root = tmp_path / "gqa"
  _write(root / "testdev_balanced_questions.json", {
      "201307251": {"imageId": "n288870", "question": "What is the colour of the bus?", "answer": "white",
                    "fullAnswer": "The bus is white.", "types": {"structural": "query"}},
      "201640614": {"imageId": "n288870", "question": "Is the bus to the left of the car?", "answer": "no"}})
  _write(root / "images" / "n288870.jpg", _png())
  items = _by_id(bm.load_benchmark("gqa", tmp_path))
  _check_common(items.values(), "gqa")
  bus = items["201307251"]
  assert bus["type"] == "open" and bus["answer"] == "white" and bus["meta"]["metric"] == "exact"
  assert bus["prompt"] == format_prompt("What is the colour of the bus?", None)


def test_gqa_missing_image_is_an_error_not_missing(tmp_path):
  _write(tmp_path / "gqa" / "testdev_balanced_questions.json", {"1": {"imageId": "n1", "question": "q", "answer": "a"}})
  (tmp_path / "gqa" / "images").mkdir()
  with pytest.raises(FileNotFoundError, match="n1.jpg") as error:
    bm.load_benchmark("gqa", tmp_path)
  assert not isinstance(error.value, bm.BenchmarkMissing)


def test_mme_task_folders_both_layouts(tmp_path):
  root = tmp_path / "mme"
  _write(root / "artwork" / "images" / "10002.jpg", _png())
  _write(root / "artwork" / "questions_answers_YN" / "10002.txt",
         "Is this artwork created by Rembrandt? Please answer yes or no.\tYes\n"
         "Is this artwork created by Monet? Please answer yes or no.\tNo\n")
  _write(root / "existence" / "000000006040.jpg", _png())
  _write(root / "existence" / "000000006040.txt", "Is there a train in this image? Please answer yes or no.\tYes\n")
  items = _by_id(bm.load_benchmark("mme", tmp_path))
  _check_common(items.values(), "mme")
  assert sorted(items) == ["artwork/10002/0", "artwork/10002/1", "existence/000000006040/0"]
  assert items["artwork/10002/1"]["answer"] == "No" and items["artwork/10002/1"]["type"] == "yes_no"
  assert items["existence/000000006040/0"]["meta"] == {"category": "existence", "image_id": "existence/000000006040"}


def test_mme_parquet(tmp_path):
  _parquet(tmp_path / "mme" / "data" / "test-00000-of-00001.parquet", [
      {"question_id": "code_reasoning/0020.png", "image": {"bytes": _png(), "path": "0020.png"},
       "question": "Is the output 3? Please answer yes or no.", "answer": "Yes", "category": "code_reasoning"},
      {"question_id": "code_reasoning/0020.png", "image": {"bytes": _png(), "path": "0020.png"},
       "question": "Is the output 4? Please answer yes or no.", "answer": "No", "category": "code_reasoning"}])
  items = bm.load_benchmark("mme", tmp_path)
  _check_common(items, "mme")
  assert [i["answer"] for i in items] == ["Yes", "No"] and isinstance(items[0]["image"], bytes)
  assert len({i["id"] for i in items}) == 2


def test_mmbench_tsv_with_base64_and_image_references(tmp_path):
  image = base64.b64encode(_png("blue")).decode()
  header = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\tl2-category\tsplit\n"
  rows = [f"0\tWhat colour is the square?\t\tred\tblue\tgreen\t\tB\tattribute\t{image}\tperception\tdev\n",
          "1\tWhich is larger?\tTwo shapes are drawn.\tleft\tright\t\t\tA\tspatial\t0\treasoning\tdev\n"]
  _write(tmp_path / "mmbench" / "MMBench_DEV_EN.tsv", header + "".join(rows))
  items = _by_id(bm.load_benchmark("mmbench", tmp_path))
  _check_common(items.values(), "mmbench")
  assert items["0"]["choices"] == ["red", "blue", "green"] and items["0"]["answer"] == "blue"
  assert items["0"]["image"] == _png("blue") and items["1"]["image"] == _png("blue")  # "0": row 0's image
  assert items["1"]["question"] == "Two shapes are drawn.\nWhich is larger?"
  assert items["1"]["prompt"] == format_prompt("Two shapes are drawn.\nWhich is larger?", ["left", "right"])


def test_seed_bench_images_only(tmp_path):
  root = tmp_path / "seed_bench"
  _write(root / "SEED-Bench.json", {"questions": [
      {"question_id": "101669", "question": "How many towels are in the image?", "choice_a": "One", "choice_b": "Two",
       "choice_c": "Three", "choice_d": "Four", "answer": "A", "data_id": "1454426_2591111986", "data_type": "image",
       "question_type_id": 5},
      {"question_id": "v1", "question": "What happens next?", "choice_a": "a", "choice_b": "b", "choice_c": "c",
       "choice_d": "d", "answer": "B", "data_id": "clip.mp4", "data_type": "video", "question_type_id": 10}]})
  _write(root / "SEED-Bench-image" / "1454426_2591111986", _png())
  items = bm.load_benchmark("seed", tmp_path)
  _check_common(items, "seed")
  assert [i["id"] for i in items] == ["101669"] and items[0]["answer"] == "One"


def test_scienceqa_test_questions_with_images(tmp_path):
  root = tmp_path / "scienceqa"
  _write(root / "problems.json", {
      "5": {"question": "Which animal's feet are adapted for digging?", "choices": ["mole", "hamster", "goat"],
            "answer": 0, "hint": "Moles live underground.", "image": "image.png", "split": "test",
            "subject": "natural science", "grade": "grade4"},
      "6": {"question": "Which word is a noun?", "choices": ["run", "dog"], "answer": 1, "hint": "",
            "image": None, "split": "test"},
      "7": {"question": "Q?", "choices": ["a", "b"], "answer": 1, "hint": "", "image": "image.png", "split": "train"}})
  _write(root / "images" / "test" / "5" / "image.png", _png())
  items = bm.load_benchmark("scienceqa", tmp_path)
  _check_common(items, "scienceqa")
  assert [i["id"] for i in items] == ["5"] and items[0]["answer"] == "mole"
  assert items[0]["prompt"].startswith("Context: Moles live underground.\nWhich animal's feet")


def test_mmmu_parquet_multiple_choice_open_and_two_images(tmp_path):
  _parquet(tmp_path / "mmmu" / "Art" / "validation-00000-of-00001.parquet", [
      {"id": "validation_Art_1", "question": "Which style is shown in <image 1>?",
       "options": "['Baroque', 'Cubism', 'Impressionism', 'Pop art', 'Surrealism', 'Dada', 'Fauvism', "
                  "'Realism', 'Rococo']", "answer": "I", "question_type": "multiple-choice",
       "image_1": {"bytes": _png("red", (8, 6)), "path": "a.png"}, "image_2": None, "subfield": "Art History"},
      {"id": "validation_Art_2", "question": "Compare <image 1> and <image 2>: how many figures in total?",
       "options": "[]", "answer": "5", "question_type": "open",
       "image_1": {"bytes": _png("red", (8, 6)), "path": "a.png"},
       "image_2": {"bytes": _png("blue", (4, 3)), "path": "b.png"}, "subfield": "Art History"}])
  items = _by_id(bm.load_benchmark("mmmu", tmp_path))
  _check_common(items.values(), "mmmu")
  mc, open_ = items["validation_Art_1"], items["validation_Art_2"]
  assert mc["answer"] == "Rococo" and len(mc["choices"]) == 9 and "I. Rococo" in mc["prompt"]
  assert mc["question"] == "Which style is shown in image 1?"
  assert open_["type"] == "open" and open_["answer"] == "5" and open_["meta"]["metric"] == "numeric"
  joined = Image.open(io.BytesIO(open_["image"]))
  assert joined.size == (16, 6) and open_["meta"]["images"] == 2  # 8x6 and 4x3 scaled to height 6, side by side


def test_ai2d_questions_restricted_to_test_ids(tmp_path):
  root = tmp_path / "ai2d"
  for name in ("0", "1"):
    _write(root / "images" / f"{name}.png", _png())
    _write(root / "questions" / f"{name}.png.json", {"imageName": f"{name}.png", "questions": {
        f"Which stage comes after the egg? ({name})": {"abcLabel": False, "answerTexts": ["larva", "adult", "pupa",
                                                                                         "egg"],
                                                      "correctAnswer": 0, "questionId": f"{name}.png-0"}}})
  _write(root / "ai2d_test_ids.csv", "1\n")
  items = bm.load_benchmark("ai2d", tmp_path)
  _check_common(items, "ai2d")
  assert [i["id"] for i in items] == ["1.png-0"] and items[0]["answer"] == "larva"


@pytest.mark.parametrize("layout", ["json", "parquet"])
def test_mathvista_testmini(tmp_path, layout):
  root = tmp_path / "mathvista"
  rows = [
      {"pid": "1", "question": "What is the length of the line?", "image": "images/1.jpg", "choices": None,
       "unit": "cm", "precision": 1.0, "answer": "2.5", "question_type": "free_form", "answer_type": "float"},
      {"pid": "2", "question": "Which shape is largest?", "image": "images/2.jpg", "choices": ["circle", "square"],
       "unit": None, "precision": None, "answer": "square", "question_type": "multi_choice", "answer_type": "text"}]
  if layout == "json":
    _write(root / "testmini.json", {row["pid"]: row for row in rows})
    for pid in "12":
      _write(root / "images" / f"{pid}.jpg", _png())
  else:
    _parquet(root / "data" / "testmini-00000-of-00001.parquet",
             [{**row, "decoded_image": {"bytes": _png(), "path": row["image"]}} for row in rows])
  items = _by_id(bm.load_benchmark("mathvista", tmp_path))
  _check_common(items.values(), "mathvista")
  assert items["1"]["type"] == "open" and items["1"]["meta"]["precision"] == 1
  assert items["2"]["type"] == "mc" and items["2"]["answer"] == "square"
  assert isinstance(items["1"]["image"], bytes if layout == "parquet" else str)


def test_textvqa_ten_answers(tmp_path):
  root = tmp_path / "textvqa"
  _write(root / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa", "data": [
      {"question_id": 34602, "question": "what is the brand of this camera?", "image_id": "003a8ae2ef43b901",
       "answers": ["nous les gosses", "dakota", "clos culombu", "dakota digital", "dakota", "dakota",
                   "dakota digital", "dakota digital", "dakota", "dakota"]}]})
  _write(root / "train_images" / "003a8ae2ef43b901.jpg", _png())
  items = bm.load_benchmark("textvqa", tmp_path)
  _check_common(items, "textvqa")
  assert items[0]["id"] == "34602" and len(items[0]["answer"]) == 10 and items[0]["meta"]["metric"] == "vqa"


def test_chartqa_human_and_augmented(tmp_path):
  test = tmp_path / "chartqa" / "test"
  _write(test / "test_human.json", [{"imgname": "41699051005347.png", "query": "How many bars exceed 40?",
                                     "label": "3"}])
  _write(test / "test_augmented.json", [{"imgname": "41699051005347.png", "query": "What is the peak value?",
                                         "label": "57.2"}])
  _write(test / "png" / "41699051005347.png", _png())
  items = _by_id(bm.load_benchmark("chartqa", tmp_path))
  _check_common(items.values(), "chartqa")
  assert sorted(items) == ["augmented-0", "human-0"] and items["augmented-0"]["meta"]["metric"] == "relaxed"


def test_ocrbench(tmp_path):
  root = tmp_path / "ocrbench"
  _write(root / "OCRBench.json", [
      {"dataset_name": "IIIT5K", "id": 0, "image_path": "IIIT5K/1.jpg", "question": "what is written in the image?",
       "answers": ["STOP"], "type": "Regular Text Recognition"},
      {"dataset_name": "HME100k", "id": 1, "image_path": "HME100k/2.jpg", "question": "Write the formula in LaTeX.",
       "answers": "x^{2}+1", "type": "Handwritten Mathematical Expression Recognition"}])
  _write(root / "OCRBench_Images" / "IIIT5K" / "1.jpg", _png())
  _write(root / "OCRBench_Images" / "HME100k" / "2.jpg", _png())
  items = _by_id(bm.load_benchmark("ocrbench", tmp_path))
  _check_common(items.values(), "ocrbench")
  assert items["IIIT5K/0"]["answer"] == "STOP" and items["IIIT5K/0"]["meta"]["metric"] == "contains"
  assert items["HME100k/1"]["meta"]["metric"] == "contains_nospace"


def test_realworldqa_parses_lettered_options(tmp_path):
  _parquet(tmp_path / "realworldqa" / "data" / "test-00000-of-00002.parquet", [
      {"image": {"bytes": _png(), "path": None},
       "question": "In which direction is the car turning?\nA. Left\nB. Right\nC. Straight\nPlease answer directly "
                   "with only the letter of the correct option and nothing else.", "answer": "B"},
      {"image": {"bytes": _png(), "path": None},
       "question": "Is the traffic light green?\nPlease answer directly with a single word or number.",
       "answer": "Yes"},
      {"image": {"bytes": _png(), "path": None},
       "question": "How many cars are visible?\nPlease answer directly with a single word or number.",
       "answer": "3"}])
  items = bm.load_benchmark("realworldqa", tmp_path)
  _check_common(items, "realworldqa")
  mc, yes_no, count = items
  assert mc["type"] == "mc" and mc["choices"] == ["Left", "Right", "Straight"] and mc["answer"] == "Right"
  assert mc["prompt"] == format_prompt("In which direction is the car turning?", ["Left", "Right", "Straight"])
  assert yes_no["type"] == "yes_no" and yes_no["question"] == "Is the traffic light green?"
  assert count["type"] == "open" and count["answer"] == "3"


def test_realworldqa_jsonl_with_image_files(tmp_path):
  root = tmp_path / "realworldqa"
  _write(root / "images" / "0.png", _png())
  _write(root / "test.jsonl", json.dumps({"image": "images/0.png", "question": "Is it day?", "answer": "no"}) + "\n")
  items = bm.load_benchmark("realworldqa", tmp_path)
  assert items[0]["type"] == "yes_no" and items[0]["answer"] == "No" and items[0]["image"].endswith("0.png")


def test_blink_joins_images(tmp_path):
  _parquet(tmp_path / "blink" / "Relative_Depth" / "val-00000-of-00001.parquet", [
      {"idx": "val_Relative_Depth_1", "question": "Which point is closer to the camera?", "sub_task": "Relative_Depth",
       "image_1": {"bytes": _png(), "path": "x.png"}, "image_2": None, "image_3": None, "image_4": None,
       "choices": ["A", "B"], "answer": "(B)"}])
  _parquet(tmp_path / "blink" / "Jigsaw" / "val-00000-of-00001.parquet", [
      {"idx": "val_Jigsaw_1", "question": "Which piece completes the image?", "sub_task": "Jigsaw",
       "image_1": {"bytes": _png("red"), "path": "1.png"}, "image_2": {"bytes": _png("green"), "path": "2.png"},
       "image_3": {"bytes": _png("blue"), "path": "3.png"}, "image_4": None,
       "choices": ["the first image", "the second image"], "answer": "(A)"}])
  items = _by_id(bm.load_benchmark("blink", tmp_path))
  _check_common(items.values(), "blink")
  assert items["val_Relative_Depth_1"]["answer"] == "B" and items["val_Relative_Depth_1"]["image"] == _png()
  assert items["val_Jigsaw_1"]["answer"] == "the first image"
  assert Image.open(io.BytesIO(items["val_Jigsaw_1"]["image"])).size == (24, 6)


def _cvbench_rows():
  sources = [("COCO", "2D", "Count"), ("ADE20K", "2D", "Relation"), ("Omni3D", "3D", "Depth"), ("COCO", "2D", "Count")]
  return [{"idx": i, "type": kind, "task": task, "source": source, "question": f"Question {i}?",
           "choices": ["1", "2", "3"], "answer": "(C)", "filename": f"img/{kind}/{task.lower()}/{source}_{i}.png"}
          for i, (source, kind, task) in enumerate(sources)]


@pytest.mark.parametrize("layout", ["parquet", "jsonl", "jsonl_2d_3d"])
def test_cvbench_splits_by_source(tmp_path, layout):
  root = tmp_path / "cvbench"
  rows = _cvbench_rows()
  if layout == "parquet":
    _parquet(root / "test_2d.parquet", [{**r, "image": {"bytes": _png(), "path": r["filename"]}} for r in rows
                                        if r["type"] == "2D"])
    _parquet(root / "test_3d.parquet", [{**r, "image": {"bytes": _png(), "path": r["filename"]}} for r in rows
                                        if r["type"] == "3D"])
  else:  # the release's test_2d.jsonl + test_3d.jsonl (its README, "Files"), or an earlier release's test.jsonl
    files = ({"test_2d.jsonl": ["2D"], "test_3d.jsonl": ["3D"]} if layout == "jsonl_2d_3d"
             else {"test.jsonl": ["2D", "3D"]})
    for file, kinds in files.items():
      _write(root / file, "".join(json.dumps(r) + "\n" for r in rows if r["type"] in kinds))
    for r in rows:
      _write(root / r["filename"], _png())
  counts = {}
  for name in ("cvbench_coco", "cvbench_ade", "cvbench_omni3d"):
    items = bm.load_benchmark(name, tmp_path)
    _check_common(items, name)
    counts[name] = len(items)
    assert all(i["answer"] == "3" for i in items)
  assert counts == {"cvbench_coco": 2, "cvbench_ade": 1, "cvbench_omni3d": 1}


def test_generated_rows(tmp_path):
  eval_dir = tmp_path / "generated" / "eval"
  _write(eval_dir / "images" / "gen_general_000000.png", _png())
  rows = [{"id": "gen_general_000000", "image": "images/gen_general_000000.png", "question": "What colour is the "
           "triangle?", "choices": ["red", "blue"], "answer": "blue", "answer_letter": "B",
           "prompt": format_prompt("What colour is the triangle?", ["red", "blue"]), "group": "General",
           "type": "multiple_choice", "task": "colour"},
          {"id": "gen_general_000001", "image": "images/gen_general_000000.png", "question": "Is there a dog?",
           "choices": None, "answer": "No", "answer_letter": None, "prompt": "Is there a dog?\nAnswer briefly.",
           "group": "General", "type": "yes_no", "task": "existence"}]
  _write(eval_dir / "gen_general.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
  items = bm.load_benchmark("gen_general", tmp_path)
  _check_common(items, "gen_general")
  assert [i["type"] for i in items] == ["mc", "yes_no"]
  assert items[1]["prompt"] == "Is there a dog?\nAnswer briefly."  # the row's own prompt is kept
  assert items[0]["meta"] == {"task": "colour"}


def test_mle_bench_rows_keep_sub_task(tmp_path):
  eval_dir = tmp_path / "generated" / "eval"
  _write(eval_dir / "images" / "mle.png", _png())
  _write(eval_dir / "mle_bench.jsonl", json.dumps({
      "image": "images/mle.png", "question": "Which of the following objects appears in the image?",
      "choices": ["dog", "cat", "car", "tree"], "answer": "car", "sub_task": "existence_0-30"}) + "\n")
  items = bm.load_benchmark("gen_mle_bench", tmp_path)
  _check_common(items, "gen_mle_bench")
  assert items[0]["sub_task"] == "existence_0-30" and items[0]["answer"] == "car" and items[0]["group"] is None
  _parquet(tmp_path / "mle_bench" / "test-00000.parquet", [
      {"image": {"bytes": _png(), "path": "a.jpg"}, "question": "Which of the following objects appears?",
       "choices": ["sofa", "lamp", "bed", "cup"], "answer": "lamp", "sub_task": "existence_60-100"}])
  released = bm.load_benchmark("mle_bench", tmp_path)
  assert released[0]["sub_task"] == "existence_60-100" and isinstance(released[0]["image"], bytes)


def test_make_item_checks_answers():
  with pytest.raises(ValueError, match="not one of its choices"):
    bm.make_item("x", None, id="1", image=None, question="q", choices=["a", "b"], answer="c", type="mc")
  with pytest.raises(ValueError, match="yes/no"):
    bm.make_item("x", None, id="1", image=None, question="q", choices=None, answer="maybe", type="yes_no")
  with pytest.raises(ValueError, match="metric"):
    bm.make_item("x", None, id="1", image=None, question="q", choices=None, answer="a", type="open", metric="bleu")


def test_duplicate_ids_fail(tmp_path):
  root = tmp_path / "ocrbench"
  _write(root / "OCRBench.json", [{"id": 3, "image_path": "1.jpg", "question": "q", "answers": ["a"]}] * 2)
  _write(root / "OCRBench_Images" / "1.jpg", _png())
  with pytest.raises(ValueError, match="duplicate question id"):
    bm.load_benchmark("ocrbench", tmp_path)
