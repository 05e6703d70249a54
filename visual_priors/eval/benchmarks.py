"""The VQA benchmark registry: each benchmark's group, answer types, default location and on-disk loader.

Every loader maps its public release's files to one common item:
    {"id", "benchmark", "image" (absolute path | encoded bytes | None), "question", "choices" (list | None),
     "answer" (the correct choice's text for "mc"; "Yes"/"No" for "yes_no"; a text or a list of reference
     answers for "open"), "type" ("mc" | "open" | "yes_no"), "prompt" (the user turn's text), "group", "meta"}
Multiple-choice prompts use the lettered format of the generated instruction data (`gen_questions.format_prompt`:
"A. ..." lines and "Answer with the option's letter ..."), extended past H for MMMU's nine options; yes/no and
open questions end with "Answer the question using a single word or phrase." (as LLaVA asks them). For open
answers `meta["metric"]` names the rule in `answers.OPEN_METRICS` the benchmark's own evaluation uses.

Benchmarks live under one `data_root`, each at a default sub-path (override per name with `paths`):
  gqa          gqa/            testdev_balanced_questions.json + images/<imageId>.jpg (open, exact match)
  mme          mme/            the release's task folders at any depth (MME_Benchmark_release_version/<task>/images +
                               questions_answers_YN/*.txt, or the images and txt side by side), or the eval tool's
                               eval_tool/Your_Results/<task>.txt (image, question, answer) with the release's images,
                               or the Hugging Face parquet files (yes/no; accuracy per question, not MME's summed
                               "score")
  mmbench      mmbench/        MMBench_DEV_EN.tsv with base64 images (the dev split has answers; single pass, not
                               CircularEval)
  seed         seed_bench/     SEED-Bench.json + SEED-Bench-image/ (image questions, "SEED-I")
  scienceqa    scienceqa/      problems.json + images/test/<pid>/image.png (test questions with an image, "SQA-I")
  mmmu         mmmu/           <Subject>/validation-*.parquet (validation split; several images are joined side
                               by side; open answers by number/exact match)
  ai2d         ai2d/           questions/*.json + images/ (+ ai2d_test_ids.csv, which restricts to the test split)
  mathvista    mathvista/      testmini.json (+ images/) or testmini-*.parquet (free-form answers: the number at
                               the given precision)
  textvqa      textvqa/        TextVQA_0.5.1_val.json + train_images/ (VQA soft accuracy, no OCR tokens given)
  chartqa      chartqa/        test/test_human.json + test/test_augmented.json + test/png/ (relaxed accuracy)
  ocrbench     ocrbench/       OCRBench.json + OCRBench_Images/ (reference contained in the reply; ids are
                               "<dataset_name>/<id>": the release numbers questions within each source data set)
  realworldqa  realworldqa/    *.parquet or *.jsonl (+ images); lettered options in the question are parsed out
  blink        blink/          <Task>/val-*.parquet (val split; several images are joined side by side)
  cvbench_coco, cvbench_ade, cvbench_omni3d
               cvbench/        test*.parquet (test_2d + test_3d), or test_2d.jsonl + test_3d.jsonl (earlier releases:
                               test.jsonl) + img/ (one benchmark per source data set)
  gen_general, gen_knowledge, gen_ocr_chart, gen_vision_centric
               generated/eval/<name>.jsonl   (the generator's held-out rows, asked with their own prompts)
  gen_mle_bench  generated/eval/mle_bench.jsonl;   mle_bench  mle_bench/ (*.parquet or *.jsonl, the release)
CV-Bench: the paper lists "CV-Bench (COCO, ADE, Omni3D splits)" among 16 benchmarks; the other twelve plus
RealWorldQA and BLINK make 14, so the three source splits count as three benchmarks (`PAPER_BENCHMARKS`).
(Cambrian's single CV-Bench number, mean(mean(COCO, ADE), Omni3D), is added by `vqa.tabulate` as an extra row.)
MLE-Bench rows keep "sub_task" (their size level) and have no group: they are not part of the VQA group means.

A benchmark whose files are absent raises `BenchmarkMissing` (callers list it as missing, never score it 0);
files that are present but broken (a question naming an absent image) raise ordinary errors.
"""

from __future__ import annotations

import ast
import base64
import collections
import dataclasses
import io
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from visual_priors.data import cache
from visual_priors.data.multimodal.gen_questions import GROUPS, MC_INSTRUCTION, format_prompt
from visual_priors.data.multimodal.generate import BENCHMARKS as GENERATED_GROUPS
from visual_priors.eval.answers import LETTERS, OPEN_METRICS
from visual_priors.names import lookup

TYPES = ("mc", "open", "yes_no")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
# What an error about a damaged benchmark file tells the user to do.
_DATA_FIX = "replace it with an intact copy of the benchmark's release (or regenerate a generated set)"


class BenchmarkMissing(FileNotFoundError):
  """A benchmark's files are not under the data root (report it as missing, do not score it)."""


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """A registered benchmark: `load(folder_or_file)` returns its items."""

  name: str
  group: str | None
  answer_types: tuple[str, ...]
  default_path: str  # relative to data_root
  load: Callable[[pathlib.Path], list[dict[str, Any]]]
  metric: str = "exact"  # the rule for open answers (answers.OPEN_METRICS)
  source: str = ""  # the on-disk format, in words

  def __post_init__(self):
    if self.group is not None and self.group not in GROUPS:
      raise ValueError(f"Benchmark {self.name!r}: group {self.group!r} is not one of {GROUPS} (or None).")
    if not self.answer_types or not set(self.answer_types) <= set(TYPES):
      raise ValueError(f"Benchmark {self.name!r}: answer types {self.answer_types} must be among {TYPES}.")
    if self.metric not in OPEN_METRICS:
      raise ValueError(f"Benchmark {self.name!r}: metric {self.metric!r} is not one of {sorted(OPEN_METRICS)}.")


def mc_prompt(question: str, choices: Sequence[str]) -> str:
  """The lettered multiple-choice prompt of the instruction data (`format_prompt`), with letters past H."""
  if len(choices) <= 8:
    return format_prompt(question, list(choices))
  options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
  return f"{question}\n{options}\n{MC_INSTRUCTION}"


# pylint: disable-next=redefined-builtin
def make_item(benchmark: str, group: str | None, *, id: str, image: Any, question: str,
              choices: Sequence[Any] | None, answer: Any, type: str, prompt: str | None = None,
              metric: str = "exact", meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """One common item, checked: a multiple-choice answer is one of its choices, a yes/no answer is yes or no."""
  what = f"{benchmark} question {id!r}"
  if type not in TYPES:
    raise ValueError(f"{what}: type {type!r} is not one of {TYPES}.")
  meta = dict(meta or {})
  if type == "mc":
    choices = [str(c) for c in choices or []]
    if not 2 <= len(choices) <= len(LETTERS):
      raise ValueError(f"{what} has {len(choices)} choices; 2 to {len(LETTERS)} are supported.")
    if str(answer) not in choices:
      raise ValueError(f"{what}: answer {answer!r} is not one of its choices {choices}.")
    answer, prompt = str(answer), prompt or mc_prompt(question, choices)
  elif type == "yes_no":
    if str(answer).strip().lower() not in ("yes", "no"):
      raise ValueError(f"{what}: yes/no question with answer {answer!r}.")
    choices, answer = None, str(answer).strip().capitalize()
    prompt = prompt or format_prompt(question, None)
  else:
    if metric not in OPEN_METRICS:
      raise ValueError(f"{what}: open-answer metric {metric!r} is not one of {sorted(OPEN_METRICS)}.")
    answers = [str(a) for a in answer] if isinstance(answer, (list, tuple)) else [str(answer)]
    if not answers or not all(a.strip() for a in answers):
      raise ValueError(f"{what} has an empty reference answer: {answer!r}.")
    choices, answer = None, answers if len(answers) > 1 else answers[0]
    prompt = prompt or format_prompt(question, None)
    meta["metric"] = metric
  return {"id": str(id), "benchmark": benchmark, "image": image, "question": question, "choices": choices,
          "answer": answer, "type": type, "prompt": prompt, "group": group, "meta": meta}


# ---------------------------------------------------------------------------------------------- file helpers


def _need(path: pathlib.Path, what: str) -> pathlib.Path:
  """`path` if it exists, else BenchmarkMissing."""
  if not path.exists():
    raise BenchmarkMissing(f"{what}: {path} not found.")
  return path


def _need_glob(folder: pathlib.Path, patterns: Sequence[str], what: str) -> list[pathlib.Path]:
  if not folder.is_dir():
    raise BenchmarkMissing(f"{what}: folder {folder} not found.")
  for pattern in patterns:
    found = sorted(folder.glob(pattern))
    if found:
      return found
  raise BenchmarkMissing(f"{what}: no {' or '.join(patterns)} under {folder}.")


def _read_json(path: pathlib.Path) -> Any:
  return cache.read_json(path, _DATA_FIX)


def _read_jsonl(path: pathlib.Path) -> list[dict]:
  return cache.read_jsonl(path, _DATA_FIX)


def _read_table(paths: Sequence[pathlib.Path]) -> list[dict]:
  """Rows of parquet (through pyarrow) or JSONL files, concatenated, each with "_file" (its file)."""
  rows = []
  for path in paths:
    if path.suffix == ".parquet":
      import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

      table_rows = pq.read_table(path).to_pylist()
    else:
      table_rows = _read_jsonl(path)
    rows.extend({**row, "_file": path} for row in table_rows)
  return rows


def _image_file(folder: pathlib.Path, name: str, what: str) -> str:
  path = (folder / name).resolve()
  if not path.is_file():
    raise FileNotFoundError(f"{what}: image {path} not found.")
  return str(path)


def _image_value(value: Any, folder: pathlib.Path, what: str) -> Any:
  """An image cell: a {"bytes", "path"} struct (Hugging Face), bytes, or a path relative to `folder`."""
  if isinstance(value, Mapping):
    if value.get("bytes"):
      return bytes(value["bytes"])
    value = value.get("path")
  if isinstance(value, (bytes, bytearray)):
    return bytes(value)
  if not isinstance(value, str) or not value:
    raise ValueError(f"{what} has no usable image ({value!r}).")
  return _image_file(folder, value, what)


def _side_by_side(images: Sequence[Any]) -> Any:
  """One image: the only one unchanged, or several joined left to right at a common height (PNG bytes)."""
  if len(images) == 1:
    return images[0]
  from PIL import Image  # pylint: disable=import-outside-toplevel

  pictures = [Image.open(io.BytesIO(i) if isinstance(i, bytes) else i).convert("RGB") for i in images]
  height = max(p.height for p in pictures)
  pictures = [p.resize((max(1, round(p.width * height / p.height)), height)) for p in pictures]
  canvas = Image.new("RGB", (sum(p.width for p in pictures), height), "white")
  x = 0
  for picture in pictures:
    canvas.paste(picture, (x, 0))
    x += picture.width
  buffer = io.BytesIO()
  canvas.save(buffer, format="PNG")
  return buffer.getvalue()


def _find_image(folder: pathlib.Path, stem: str, what: str) -> str:
  for suffix in _IMAGE_SUFFIXES:
    if (folder / f"{stem}{suffix}").is_file():
      return str((folder / f"{stem}{suffix}").resolve())
  raise FileNotFoundError(f"{what}: no image {stem}.jpg/.png in {folder}.")


def _letter_answer(answer: Any, choices: Sequence[str], what: str) -> str:
  """The choice a letter answer ("B", "(B)") names."""
  letter = str(answer).strip().strip("()").strip().upper()
  if len(letter) != 1 or letter not in LETTERS[:len(choices)]:
    raise ValueError(f"{what}: answer {answer!r} is not a letter of its {len(choices)} choices.")
  return choices[LETTERS.index(letter)]


# -------------------------------------------------------------------------------------------------- loaders


def _load_gqa(root: pathlib.Path) -> list[dict]:
  questions = _read_json(_need(root / "testdev_balanced_questions.json", "GQA"))
  images = _need(root / "images", "GQA images")
  return [make_item("gqa", "General", id=qid, image=_image_file(images, f"{q['imageId']}.jpg", f"GQA {qid}"),
                    question=q["question"], choices=None, answer=q["answer"], type="open",
                    meta={"types": q.get("types", {})})
          for qid, q in questions.items()]


def _mme_lines(path: pathlib.Path, fields: int = 2) -> list[tuple[str, ...]]:
  """The tab-separated lines of an MME text file: "question<TAB>answer" (the release's per-image files) or, with
  fields=3, "image<TAB>question<TAB>answer" (the eval tool's Your_Results/<task>.txt; a fourth field, a model's
  reply, is ignored)."""
  rows = []
  for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    if line.strip():
      parts = line.rstrip("\n").split("\t")
      if len(parts) not in ((2,) if fields == 2 else (3, 4)):
        form = "question<TAB>answer" if fields == 2 else "image<TAB>question<TAB>answer"
        raise ValueError(f"MME {path} line {number}: expected '{form}', got {line!r}.")
      rows.append(tuple(part.strip() for part in parts[:fields]))
  return rows


def _mme_images(task: pathlib.Path) -> pathlib.Path:
  """Where a task folder of the release keeps its images: <task>/images, or the folder itself."""
  return task / "images" if (task / "images").is_dir() else task


def _mme_release_files(root: pathlib.Path) -> dict[pathlib.Path, list[pathlib.Path]]:
  """Task folder -> its per-image question files, at any depth under `root` (the release unpacks into
  MME_Benchmark_release_version/, some copies one level deeper): <task>/questions_answers_YN/<image>.txt, or
  <task>/<image>.txt beside <task>/<image>.jpg|png. The eval tool's folder is not part of the release."""
  tasks: dict[pathlib.Path, list[pathlib.Path]] = {}
  for text in sorted(root.rglob("*.txt")):
    if {"eval_tool", "Your_Results"} & set(text.relative_to(root).parts):
      continue
    if text.parent.name == "questions_answers_YN":
      tasks.setdefault(text.parent.parent, []).append(text)
    elif any((text.parent / f"{text.stem}{suffix}").is_file() for suffix in _IMAGE_SUFFIXES):
      tasks.setdefault(text.parent, []).append(text)
  return tasks


def _mme_item(task: str, stem: str, k: int, image: str, question: str, answer: str) -> dict:
  return make_item("mme", "General", id=f"{task}/{stem}/{k}", image=image, question=question, choices=None,
                   answer=answer, type="yes_no", meta={"category": task, "image_id": f"{task}/{stem}"})


def _load_mme(root: pathlib.Path) -> list[dict]:
  if not root.is_dir():
    raise BenchmarkMissing(f"MME: folder {root} not found.")
  parquet = sorted(root.glob("**/*.parquet"))
  items = []
  if parquet:
    for row in _read_table(parquet):
      qid = str(row["question_id"])
      items.append(make_item("mme", "General", id=f"{qid}/{len(items)}",
                             image=_image_value(row["image"], root, f"MME {qid}"), question=row["question"],
                             choices=None, answer=row["answer"], type="yes_no",
                             meta={"category": row.get("category"), "image_id": qid}))
    return items
  release = _mme_release_files(root)
  for task, texts in sorted(release.items(), key=lambda entry: entry[0].name):
    for text in texts:
      image = _find_image(_mme_images(task), text.stem, f"MME {task.name}/{text.name}")
      for k, (question, answer) in enumerate(_mme_lines(text)):
        items.append(_mme_item(task.name, text.stem, k, image, question, answer))
  # The eval tool's ground-truth files (eval_tool/Your_Results/<task>.txt: image, question, answer per line) for
  # tasks whose per-image files are absent; the images come from the release's task folder of that name.
  covered = {task.name for task in release}
  folders: dict[str, pathlib.Path] = {}
  for folder in sorted(root.rglob("*"), key=lambda p: (len(p.parts), str(p))):  # the shallowest of a name wins
    if folder.is_dir() and "eval_tool" not in folder.relative_to(root).parts:
      folders.setdefault(folder.name, folder)
  for text in sorted(root.glob("**/Your_Results/*.txt")):
    if text.stem in covered:
      continue
    if text.stem not in folders:
      raise FileNotFoundError(f"MME {text}: no task folder {text.stem!r} with its images under {root} (unpack "
                              "MME_Benchmark_release_version there).")
    images, counts = _mme_images(folders[text.stem]), collections.Counter()
    for name, question, answer in _mme_lines(text, fields=3):
      stem = pathlib.Path(name).stem
      items.append(_mme_item(text.stem, stem, counts[stem], _image_file(images, name, f"MME {text.stem}/{name}"),
                             question, answer))
      counts[stem] += 1
  if not items:
    raise BenchmarkMissing(f"MME: no parquet files, task folders with question txt files or eval_tool/Your_Results "
                           f"files under {root}.")
  return items


def _load_mmbench(path: pathlib.Path) -> list[dict]:
  import pandas as pd  # pylint: disable=import-outside-toplevel

  frame = pd.read_csv(_need(path, "MMBench"), sep="\t", dtype=str, keep_default_na=False)
  if "answer" not in frame.columns:
    raise ValueError(f"MMBench {path} has no 'answer' column (the test split hides answers); use the dev split.")
  images = dict(zip(frame["index"], frame["image"]))
  items = []
  for row in frame.to_dict("records"):
    what = f"MMBench {path.name} index {row['index']}"
    encoded = row["image"]
    if len(encoded) <= 64 and encoded in images:  # a reference to another row's image
      encoded = images[encoded]
    choices = [row[letter] for letter in LETTERS if letter in row and row[letter].strip()]
    hint = row.get("hint", "").strip()
    question = f"{hint}\n{row['question']}" if hint and hint.lower() != "nan" else row["question"]
    items.append(make_item("mmbench", "General", id=row["index"], image=base64.b64decode(encoded), question=question,
                           choices=choices, answer=_letter_answer(row["answer"], choices, what), type="mc",
                           meta={"category": row.get("category"), "l2_category": row.get("l2-category")}))
  return items


def _load_seed(root: pathlib.Path) -> list[dict]:
  data = _read_json(_need(root / "SEED-Bench.json", "SEED-Bench"))
  images = _need(root / "SEED-Bench-image", "SEED-Bench images")
  items = []
  for q in data["questions"]:
    if q.get("data_type", "image") != "image":
      continue
    what = f"SEED-Bench {q['question_id']}"
    choices = [q[f"choice_{c}"] for c in "abcd"]
    items.append(make_item("seed", "General", id=q["question_id"], image=_image_file(images, q["data_id"], what),
                           question=q["question"], choices=choices, answer=_letter_answer(q["answer"], choices, what),
                           type="mc", meta={"question_type_id": q.get("question_type_id")}))
  return items


def _load_scienceqa(root: pathlib.Path) -> list[dict]:
  problems = _read_json(_need(root / "problems.json", "ScienceQA"))
  images = _need(root / "images", "ScienceQA images")
  items = []
  for pid, p in problems.items():
    if p.get("split") != "test" or not p.get("image"):
      continue
    hint = (p.get("hint") or "").strip()
    question = f"Context: {hint}\n{p['question']}" if hint else p["question"]
    items.append(make_item("scienceqa", "Knowledge", id=pid,
                           image=_image_file(images, f"test/{pid}/{p['image']}", f"ScienceQA {pid}"),
                           question=question, choices=p["choices"], answer=p["choices"][int(p["answer"])], type="mc",
                           meta={"subject": p.get("subject"), "grade": p.get("grade")}))
  return items


def _literal_list(value: Any) -> list:
  if isinstance(value, str):
    value = ast.literal_eval(value) if value.strip().startswith("[") else [value]
  return list(value)


def _load_mmmu(root: pathlib.Path) -> list[dict]:
  items = []
  for row in _read_table(_need_glob(root, ["**/validation-*.parquet"], "MMMU")):
    what = f"MMMU {row['id']}"
    images = [_image_value(row[f"image_{k}"], root, what) for k in range(1, 8) if row.get(f"image_{k}")]
    question = re.sub(r"<image (\d+)>", r"image \1", row["question"])
    meta = {"subfield": row.get("subfield"), "images": len(images)}
    image = _side_by_side(images) if images else None
    if row["question_type"] == "multiple-choice":
      choices = [re.sub(r"<image (\d+)>", r"image \1", str(c)) for c in _literal_list(row["options"])]
      items.append(make_item("mmmu", "Knowledge", id=row["id"], image=image, question=question, choices=choices,
                             answer=_letter_answer(row["answer"], choices, what), type="mc", meta=meta))
    else:
      items.append(make_item("mmmu", "Knowledge", id=row["id"], image=image, question=question, choices=None,
                             answer=_literal_list(row["answer"]), type="open", metric="numeric", meta=meta))
  return items


def _load_ai2d(root: pathlib.Path) -> list[dict]:
  questions = _need(root / "questions", "AI2D questions")
  images = _need(root / "images", "AI2D images")
  test_ids = root / "ai2d_test_ids.csv"
  keep = ({line.strip() for line in test_ids.read_text(encoding="utf-8").splitlines() if line.strip()}
          if test_ids.is_file() else None)
  items = []
  for path in sorted(questions.glob("*.json")):
    data = _read_json(path)
    name = data["imageName"]
    if keep is not None and name.rsplit(".", 1)[0] not in keep:
      continue
    image = _image_file(images, name, f"AI2D {path.name}")
    for text, q in data["questions"].items():
      choices = q["answerTexts"]
      items.append(make_item("ai2d", "Knowledge", id=q["questionId"], image=image, question=text, choices=choices,
                             answer=choices[int(q["correctAnswer"])], type="mc",
                             meta={"abc_label": q.get("abcLabel")}))
  if not items:
    raise BenchmarkMissing(f"AI2D: no question files under {questions}.")
  return items


def _load_mathvista(root: pathlib.Path) -> list[dict]:
  if (root / "testmini.json").is_file():
    data = _read_json(root / "testmini.json")
    rows = [{"pid": pid, **row} for pid, row in data.items()] if isinstance(data, dict) else data
  else:
    rows = _read_table(_need_glob(root, ["testmini-*.parquet", "**/testmini-*.parquet"], "MathVista"))
  items = []
  for row in rows:
    what = f"MathVista {row['pid']}"
    image = row.get("decoded_image") or row["image"]
    meta = {"answer_type": row.get("answer_type"), "precision": row.get("precision"), "unit": row.get("unit")}
    if row["question_type"] == "multi_choice":
      items.append(make_item("mathvista", "Knowledge", id=row["pid"], image=_image_value(image, root, what),
                             question=row["question"], choices=row["choices"], answer=row["answer"], type="mc",
                             meta=meta))
    else:
      precision = row.get("precision")
      meta["precision"] = int(precision) if precision is not None and row.get("answer_type") == "float" else None
      items.append(make_item("mathvista", "Knowledge", id=row["pid"], image=_image_value(image, root, what),
                             question=row["question"], choices=None, answer=str(row["answer"]), type="open",
                             metric="numeric", meta=meta))
  return items


def _load_textvqa(root: pathlib.Path) -> list[dict]:
  data = _read_json(_need(root / "TextVQA_0.5.1_val.json", "TextVQA"))["data"]
  images = _need(root / "train_images", "TextVQA images")
  return [make_item("textvqa", "OCR & Chart", id=q["question_id"],
                    image=_image_file(images, f"{q['image_id']}.jpg", f"TextVQA {q['question_id']}"),
                    question=q["question"], choices=None, answer=q["answers"], type="open", metric="vqa")
          for q in data]


def _load_chartqa(root: pathlib.Path) -> list[dict]:
  test = _need(root / "test", "ChartQA")
  images = _need(test / "png", "ChartQA images")
  items = []
  for split in ("human", "augmented"):
    for index, q in enumerate(_read_json(_need(test / f"test_{split}.json", "ChartQA"))):
      items.append(make_item("chartqa", "OCR & Chart", id=f"{split}-{index}",
                             image=_image_file(images, q["imgname"], f"ChartQA {split} {index}"), question=q["query"],
                             choices=None, answer=str(q["label"]), type="open", metric="relaxed",
                             meta={"split": split}))
  return items


def _load_ocrbench(root: pathlib.Path) -> list[dict]:
  data = _read_json(_need(root / "OCRBench.json", "OCRBench"))
  images = _need(root / "OCRBench_Images", "OCRBench images")
  items = []
  for index, q in enumerate(data):
    answers = q["answers"] if isinstance(q["answers"], list) else [q["answers"]]
    # "id" counts within one source data set (the release repeats 0, 1, ... across them): the data set names it.
    qid = f"{q['dataset_name']}/{q['id']}" if q.get("dataset_name") and "id" in q else q.get("id", index)
    items.append(make_item("ocrbench", "OCR & Chart", id=qid,
                           image=_image_file(images, q["image_path"], f"OCRBench {index}"), question=q["question"],
                           choices=None, answer=answers, type="open",
                           metric="contains_nospace" if q.get("dataset_name") == "HME100k" else "contains",
                           meta={"dataset": q.get("dataset_name"), "question_type": q.get("type")}))
  return items


_OPTION_LINE = re.compile(r"^\s*([A-Z])[.)]\s*(.+?)\s*$")


def _split_options(text: str) -> tuple[str, list[str]]:
  """A question with lettered option lines ("A. left", "B. right", ...) split into (question, options)."""
  lines = text.splitlines()
  for start, line in enumerate(lines):
    match = _OPTION_LINE.match(line)
    if match and match.group(1) == "A":
      options = []
      for following in lines[start:]:
        match = _OPTION_LINE.match(following)
        if not match or match.group(1) != LETTERS[len(options)]:
          break
        options.append(match.group(2))
      if len(options) >= 2:
        return "\n".join(lines[:start]).strip(), options
  return text.strip(), []


def _load_realworldqa(root: pathlib.Path) -> list[dict]:
  items = []
  for index, row in enumerate(_read_table(_need_glob(root, ["**/*.parquet", "*.jsonl"], "RealWorldQA"))):
    what = f"RealWorldQA row {index}"
    image = _image_value(row["image"], row["_file"].parent, what)
    question, options = _split_options(row["question"])
    answer = str(row["answer"]).strip()
    rid = row.get("id", index)
    if options and len(answer) == 1 and answer.upper() in LETTERS[:len(options)]:
      items.append(make_item("realworldqa", "Vision-Centric", id=rid, image=image, question=question, choices=options,
                             answer=_letter_answer(answer, options, what), type="mc"))
    else:  # the instruction sentence after the question is replaced by the standard short-answer one
      question = question.splitlines()[0] if question else question
      kind = "yes_no" if answer.lower() in ("yes", "no") else "open"
      items.append(make_item("realworldqa", "Vision-Centric", id=rid, image=image, question=question, choices=None,
                             answer=answer, type=kind))
  return items


def _load_blink(root: pathlib.Path) -> list[dict]:
  items = []
  for row in _read_table(_need_glob(root, ["**/val-*.parquet", "**/val.jsonl"], "BLINK")):
    what = f"BLINK {row['idx']}"
    images = [_image_value(row[f"image_{k}"], row["_file"].parent, what) for k in range(1, 5) if row.get(f"image_{k}")]
    choices = list(row["choices"])
    items.append(make_item("blink", "Vision-Centric", id=row["idx"], image=_side_by_side(images),
                           question=row["question"], choices=choices,
                           answer=_letter_answer(row["answer"], choices, what), type="mc",
                           meta={"sub_task": row.get("sub_task"), "images": len(images)}))
  return items


def _cvbench_loader(name: str, source: str) -> Callable[[pathlib.Path], list[dict]]:
  def load(root: pathlib.Path) -> list[dict]:
    items = []
    # The release splits its annotations into test_2d/test_3d (.parquet and .jsonl); earlier ones had test.jsonl.
    files = _need_glob(root, ["**/test*.parquet", "test_[23]d.jsonl", "test.jsonl"], "CV-Bench")
    for row in _read_table(files):
      if row["source"] != source:
        continue
      what = f"CV-Bench {row['idx']}"
      image = _image_value(row.get("image") or row["filename"], row["_file"].parent, what)
      choices = list(row["choices"])
      items.append(make_item(name, "Vision-Centric", id=row["idx"], image=image, question=row["question"],
                             choices=choices, answer=_letter_answer(row["answer"], choices, what), type="mc",
                             meta={"task": row.get("task"), "type": row.get("type"), "source": source}))
    if not items:
      raise ValueError(f"CV-Bench under {root} has no rows from source {source!r}.")
    return items

  return load


_GENERATED_TYPES = {"multiple_choice": "mc", "open": "open", "yes_no": "yes_no"}


def _generated_loader(name: str) -> Callable[[pathlib.Path], list[dict]]:
  def load(path: pathlib.Path) -> list[dict]:
    items = []
    for row in _read_jsonl(_need(path, name)):
      items.append(make_item(name, row["group"], id=row["id"], image=_image_file(path.parent, row["image"], name),
                             question=row["question"], choices=row["choices"], answer=row["answer"],
                             type=_GENERATED_TYPES[row["type"]], prompt=row["prompt"], meta={"task": row["task"]}))
    return items

  return load


def _mle_bench_loader(name: str) -> Callable[[pathlib.Path], list[dict]]:
  def load(path: pathlib.Path) -> list[dict]:
    from visual_priors.data.multimodal.loaders import load_mle_bench  # pylint: disable=import-outside-toplevel

    files = [_need(path, name)] if path.suffix else _need_glob(path, ["*.parquet", "*.jsonl"], name)
    items = []
    for file in files:
      for row in load_mle_bench(file):
        item = make_item(name, None, id=row["id"], image=row["image"], question=row["question"],
                         choices=row["choices"], answer=row["answer"], type="mc", prompt=row.get("prompt"),
                         meta={"sub_task": row["sub_task"]})
        item["sub_task"] = row["sub_task"]
        items.append(item)
    return items

  return load


def _registry() -> dict[str, Benchmark]:
  entries = [
      Benchmark("gqa", "General", ("open",), "gqa", _load_gqa, "exact", "testdev_balanced_questions.json + images/"),
      Benchmark("mme", "General", ("yes_no",), "mme", _load_mme, "exact",
                "<task>/images + <task>/questions_answers_YN/*.txt, eval_tool/Your_Results/*.txt, or parquet"),
      Benchmark("mmbench", "General", ("mc",), "mmbench/MMBench_DEV_EN.tsv", _load_mmbench, "exact",
                "TSV with base64 images"),
      Benchmark("seed", "General", ("mc",), "seed_bench", _load_seed, "exact", "SEED-Bench.json + SEED-Bench-image/"),
      Benchmark("scienceqa", "Knowledge", ("mc",), "scienceqa", _load_scienceqa, "exact",
                "problems.json + images/test/<pid>/"),
      Benchmark("mmmu", "Knowledge", ("mc", "open"), "mmmu", _load_mmmu, "numeric", "<Subject>/validation-*.parquet"),
      Benchmark("ai2d", "Knowledge", ("mc",), "ai2d", _load_ai2d, "exact", "questions/*.json + images/"),
      Benchmark("mathvista", "Knowledge", ("mc", "open"), "mathvista", _load_mathvista, "numeric",
                "testmini.json + images/, or testmini-*.parquet"),
      Benchmark("textvqa", "OCR & Chart", ("open",), "textvqa", _load_textvqa, "vqa",
                "TextVQA_0.5.1_val.json + train_images/"),
      Benchmark("chartqa", "OCR & Chart", ("open",), "chartqa", _load_chartqa, "relaxed",
                "test/test_{human,augmented}.json + test/png/"),
      Benchmark("ocrbench", "OCR & Chart", ("open",), "ocrbench", _load_ocrbench, "contains",
                "OCRBench.json + OCRBench_Images/"),
      Benchmark("realworldqa", "Vision-Centric", ("mc", "yes_no", "open"), "realworldqa", _load_realworldqa, "exact",
                "parquet or JSONL"),
      Benchmark("blink", "Vision-Centric", ("mc",), "blink", _load_blink, "exact", "<Task>/val-*.parquet"),
  ]
  for name, source in (("cvbench_coco", "COCO"), ("cvbench_ade", "ADE20K"), ("cvbench_omni3d", "Omni3D")):
    entries.append(Benchmark(name, "Vision-Centric", ("mc",), "cvbench", _cvbench_loader(name, source), "exact",
                             f"test*.parquet or test_2d/test_3d.jsonl, rows with source {source}"))
  for name, group in GENERATED_GROUPS.items():
    entries.append(Benchmark(name, group, ("mc", "yes_no", "open"), f"generated/eval/{name}.jsonl",
                             _generated_loader(name), "exact", "the generator's eval JSONL"))
  entries.append(Benchmark("gen_mle_bench", None, ("mc",), "generated/eval/mle_bench.jsonl",
                           _mle_bench_loader("gen_mle_bench"), "exact", "the generator's MLE-Bench JSONL"))
  entries.append(Benchmark("mle_bench", None, ("mc",), "mle_bench", _mle_bench_loader("mle_bench"), "exact",
                           "*.parquet or *.jsonl MLE-Bench rows"))
  return {b.name: b for b in entries}


BENCHMARKS: dict[str, Benchmark] = _registry()
PAPER_BENCHMARKS = ("gqa", "mme", "mmbench", "seed", "scienceqa", "mmmu", "ai2d", "mathvista", "textvqa", "chartqa",
                    "ocrbench", "realworldqa", "blink", "cvbench_coco", "cvbench_ade", "cvbench_omni3d")
GENERATED_BENCHMARKS = tuple(GENERATED_GROUPS)


def get_benchmark(name: str) -> Benchmark:
  """The registered benchmark `name` (unknown names fail with the closest valid ones)."""
  return lookup(BENCHMARKS, name, "benchmark")


def benchmark_path(name: str, data_root: str | pathlib.Path,
                   paths: Mapping[str, str | pathlib.Path] | None = None) -> pathlib.Path:
  """Where `name` is read from: `paths[name]` (absolute, or relative to data_root), else its default sub-path."""
  benchmark = get_benchmark(name)
  relative = (paths or {}).get(name, benchmark.default_path)
  return (pathlib.Path(data_root) / relative).expanduser()


def load_benchmark(name: str, data_root: str | pathlib.Path, *, paths: Mapping[str, str | pathlib.Path] | None = None,
                   limit: int | None = None) -> list[dict[str, Any]]:
  """The items of benchmark `name` (the first `limit`; None or 0: all, as eval.limit = 0 means); BenchmarkMissing
  when its files are absent."""
  if limit is not None and limit < 0:
    raise ValueError(f"limit={limit} must not be negative (None or 0 for every question).")
  benchmark = get_benchmark(name)
  items = benchmark.load(benchmark_path(name, data_root, paths))
  if not items:
    raise ValueError(f"Benchmark {name!r} at {benchmark_path(name, data_root, paths)} has no questions.")
  repeated = [i for i, n in collections.Counter(item["id"] for item in items).items() if n > 1]
  if repeated:
    raise ValueError(f"Benchmark {name!r} has {len(repeated)} duplicate question ids, e.g. {repeated[0]!r}.")
  return items[:limit] if limit else items
