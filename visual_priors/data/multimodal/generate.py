"""Deterministic generated image-text data with exact ground truth: captions, SFT conversations, VQA evals.

Images are real photos from the scikit-image wheel (cropped and resized) with objects pasted at
controlled sizes and positions: Noto Color Emoji glyphs (Debian `fonts-noto-color-emoji`, fetched once
into the download cache) or, when that package cannot be fetched, shapes drawn with PIL (the manifest's
`object_source` says which). Words are rendered in DejaVu Sans Bold (bundled with matplotlib); charts
are drawn by matplotlib. Everything a question asks is known by construction: `scenes.jsonl` holds each
image's ground truth (objects with visible boxes, visible/full area fractions and paste depth, the
word, the chart's values, the background photo and crop box).

Files written under `out_dir` (replaced as a whole). Image paths are relative to the folder of the
file that names them, as the loaders in `loaders.py` resolve them by default:
  images/*.png            training images (captions and instruction data)
  eval/images/*.png       held-out evaluation images
  scenes.jsonl            {"image", "split", "kind", "objects", "text", "chart", "background", ...}
  captions.jsonl          {"image", "caption"}: one true sentence per image, for alignment
  instruct.json           LLaVA/Cambrian list of {"id", "image"?, "conversations", "kind", "task"};
                          the first human turn of an image item starts with "<image>\n"; items
                          without "image" are text-only (kind "other")
  eval/<benchmark>.jsonl  gen_general, gen_knowledge, gen_ocr_chart, gen_vision_centric (only those
                          with a selected task when `tasks` is given), one row per question:
                          {"id", "image", "question", "choices" (list or null), "answer" (the answer
                          text: the correct choice, "Yes"/"No", or the open answer), "answer_letter"
                          (of the correct choice; null unless multiple choice), "prompt" (the question
                          formatted exactly as in instruct.json), "group", "type", "task"}
  eval/mle_bench.jsonl    MLE-Bench rows: {"image", "question", "choices", "answer" (text), "sub_task", "prompt"}
  manifest.json           settings, sources and versions, counts, task table, file digests

Question tasks (eval group; SFT kind; answer type):
  General (perception):
    existence         "Is there a dog in the image?" for present and absent classes (yes/no)
    identity          "Which of these objects can be seen in the image?" 1 present + 3 absent (MC)
    colour            "What colour is the triangle?" over seven named colours (MC)
    shape             "Which shape is red?" over six shapes (MC)
    position          "Where is the dog in the image?" an object placed wholly inside a quadrant (MC)
  Knowledge (reasoning):
    legs_total        "How many legs do the animals in the image have in total?" (MC; emoji only)
    sides_total       "How many straight sides do the shapes ... have in total?" circle = 0 (MC)
    chart_sum         "What is the sum of the values of ants and bees?" on a bar chart (MC)
    chart_difference  "How much greater is the value of ants than the value of bees?" (MC)
    category          "Which of these objects in the image is a fruit?" (MC; emoji only)
  OCR & Chart (perception):
    read_word         "What word is written on the sign?" 3 distractors of the same length (MC)
    read_word_open    the same, answered with the word (open)
    bar_value         "What is the value of cats in the chart?" values are written on the bars (MC)
    line_value        "What is the value in Mar?" on a line chart (MC)
    chart_max         "Which bar/month has the highest value in the chart?" unique maximum (MC)
  Vision-Centric (counting and perception questions train as perception, the rest as reasoning):
    count             "How many dogs are there in the image?" 1-5 copies, none touching (MC)
    count_open        the same, answered with the number (open)
    count_compare     "Are there more dogs than cats in the image?" counts differ (yes/no)
    spatial_relation  "Where is the dog relative to the cat?" left of/right of/above/below (MC);
                      exactly one relation holds: the boxes are apart on one axis, overlap on the other
    spatial_yes_no    "Is the dog to the left of the cat?" (yes/no)
    larger            "Which object is larger/smaller in the image?" visible area and box area differ
                      at least twofold (MC, 2 choices)
    depth             "Which object is in front, closer to the camera?" / "... partly hidden behind
                      the other?": 15-60% of the back object is covered (MC, 2 choices)
  Instruction data only:
    describe          "Describe the image briefly." answered with the scene's caption (perception)
    text_only         kind "other", no image: animal legs, polygon sides, arithmetic, spelling,
                      "is X a fruit?", chit-chat; one to three turns
MLE-Bench-style existence (eval/mle_bench.jsonl): "Which of the following objects appears in the
image?" about one target whose visible pixels cover 0-30%, 30-60% or 60-100% of the image
(sub_task existence_0-30 / existence_30-60 / existence_60-100); it is pasted last so nothing covers
it; it may share the image with up to two small objects that do not touch it.
The 3 distractors are vocabulary classes sharing no name or synonym with any object in the image or
with anything the background photo shows (e.g. the cat in "chelsea").

Multiple-choice options are in random order; instruct.json asks them as in `format_prompt`:
options "A. ..." and "Answer with the option's letter from the given choices directly.", answered
with the letter (or, with mc_answer="text", "Answer with the option's text from the given choices
directly.", answered with the option's text, and the benchmarks' prompts, MLE-Bench's included, ask the same way);
short open and yes/no questions end with "Answer the question using a single word or phrase." Each instruction
item has one to three questions of one task about one image.

Held-out evaluation: evaluation scenes crop their backgrounds only from the right 40% of each photo
and training scenes only from the left 60% (`gen_assets.TRAIN_REGION`), scenes are drawn from
separate random streams, and an evaluation image whose bytes equal a training image's (possible
only for charts) is drawn again. So no evaluation image, and no background pixel of one, is in the
training files.

Determinism: every item draws from `numpy.random.default_rng([seed, stream, index, ...])`, so the
same seed, sizes and object source give byte-identical files (on the same library versions, which the
manifest records). A tiny set (64x64, a few hundred items) takes a few seconds on one core; pass
image_size=224 or 384 for real runs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from visual_priors.data.cache import atomic_directory, sha256_file
from visual_priors.data.multimodal import gen_assets
from visual_priors.data.multimodal import scene as sc
from visual_priors.data.multimodal.gen_captions import caption
from visual_priors.data.multimodal.gen_objects import EMOJI_OBJECTS, SHAPES, absent_classes
from visual_priors.data.multimodal.gen_questions import GROUPS, MC_ANSWERS, TASKS, Task, available, format_prompt
from visual_priors.data.multimodal.gen_text_only import TEXT_ONLY_EVERY, text_only_turns
from visual_priors.names import lookup

FORMAT = "visual_priors.generated_multimodal/1"
# Bumped whenever the same settings would generate different data; it enters the mmdata stage key
# (`experiment/mmdata.py`), so finished stages are never reused across versions. 2: numeric distractors form
# a window around the answer at a uniform offset (the answer was most often the middle option). 3: the MLE-Bench
# rows carry their prompt, asked in the data's mc_answer format like the other benchmarks.
GENERATOR_VERSION = 3
BENCHMARKS = {"gen_general": "General", "gen_knowledge": "Knowledge", "gen_ocr_chart": "OCR & Chart",
              "gen_vision_centric": "Vision-Centric"}
MLE_QUESTION = "Which of the following objects appears in the image?"
OBJECT_SOURCES = ("auto", "emoji", "shapes")
_STREAM_CAPTIONS, _STREAM_INSTRUCT, _STREAM_EVAL, _STREAM_MLE = 1, 2, 10, 20


def _object_source(objects: str, downloads_dir, log) -> tuple[str | None, dict[str, Any]]:
  if objects not in OBJECT_SOURCES:
    raise ValueError(f"objects={objects!r} is not one of {OBJECT_SOURCES}.")
  if objects == "shapes":
    return None, {"name": "PIL-drawn shapes", "reason": "requested (objects='shapes')"}
  try:
    path, version = gen_assets.emoji_font_path(downloads_dir, log)
  except RuntimeError as error:
    if objects == "emoji":
      raise
    log(f"Noto Color Emoji unavailable, drawing shapes instead: {error}")
    return None, {"name": "PIL-drawn shapes",
                  "reason": f"fallback: {gen_assets.EMOJI_PACKAGE.name} could not be fetched"}
  return str(path), {"name": "Noto Color Emoji", "package": f"deb:{gen_assets.EMOJI_PACKAGE.name}",
                     "version": version, "licence": "OFL-1.1 (font), Apache-2.0 (images)"}


class _Images:
  """Writes scene images as PNG and collects their ground truth and digests."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    (root / "images").mkdir()
    (root / "eval" / "images").mkdir(parents=True)
    self.scenes: list[dict[str, Any]] = []
    self.digests: dict[str, str] = {}

  @staticmethod
  def encode(scene: sc.Scene) -> bytes:
    buffer = io.BytesIO()
    scene.image.save(buffer, format="PNG")
    return buffer.getvalue()

  def save(self, name: str, scene: sc.Scene, split: str, data: bytes | None = None) -> str:
    """Writes the image; returns its path relative to the split's folder (root, or eval/)."""
    data = self.encode(scene) if data is None else data
    relative = f"images/{name}.png"
    from_root = relative if split == "train" else f"eval/{relative}"
    (self.root / from_root).write_bytes(data)
    self.digests[from_root] = hashlib.sha256(data).hexdigest()
    self.scenes.append({"image": from_root, "split": split, **scene.record()})
    return relative


def _rng(seed: int, *stream: int) -> np.random.Generator:
  return np.random.default_rng([seed, *stream])


def _conversation(image: bool, turns: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
  messages = []
  for i, (question, answer) in enumerate(turns):
    prefix = "<image>\n" if image and i == 0 else ""
    messages += [{"from": "human", "value": prefix + question}, {"from": "gpt", "value": answer}]
  return messages


def _captions(images: _Images, tasks: Sequence[Task], ctx: sc.Context, seed: int, n: int) -> list[dict]:
  rows = []
  for i in range(n):
    scene, _ = tasks[i % len(tasks)].build(ctx, _rng(seed, _STREAM_CAPTIONS, i))
    rows.append({"image": images.save(f"caption_{i:06d}", scene, "train"), "caption": caption(scene)})
  return rows


def _instruct(images: _Images, tasks: Sequence[Task], ctx: sc.Context, seed: int, n: int,
              mc_answer: str, text_only_every: int) -> list[dict]:
  items = []
  for i in range(n):
    rng = _rng(seed, _STREAM_INSTRUCT, i)
    item_id = f"gen_instruct_{i:06d}"
    if text_only_every and i % text_only_every == text_only_every - 1:
      items.append({"id": item_id, "conversations": _conversation(False, text_only_turns(rng)),
                    "kind": "other", "task": "text_only"})
      continue
    task = tasks[(i - (i // text_only_every if text_only_every else 0)) % len(tasks)]
    scene, qas = task.build(ctx, rng)
    chosen = [qas[j] for j in rng.permutation(len(qas))[:int(rng.integers(1, 4))]]
    items.append({"id": item_id, "image": images.save(f"instruct_{i:06d}", scene, "train"),
                  "conversations": _conversation(True, [(qa.prompt_for(mc_answer), qa.reply(mc_answer))
                                                         for qa in chosen]),
                  "kind": task.kind, "task": task.name})
  return items


def _held_out(build: Callable[[np.random.Generator], Any], encode: Callable[[Any], bytes],
              train_digests: set[str], seed: int, *stream: int):
  """The first draw whose image bytes are not a training image's; returns (result, png bytes)."""
  attempt = 0
  while True:
    result = build(_rng(seed, *stream, attempt))
    data = encode(result[0])
    if hashlib.sha256(data).hexdigest() not in train_digests:
      return result, data
    attempt += 1


def _benchmark(images: _Images, name: str, tasks: Sequence[Task], ctx: sc.Context, seed: int,
               n: int, stream: int, train_digests: set[str], mc_answer: str) -> list[dict]:
  rows = []
  for i in range(n):
    task = tasks[i % len(tasks)]

    def build(rng, task=task):
      scene, qas = task.build(ctx, rng)
      return scene, qas[int(rng.integers(len(qas)))]

    (scene, qa), data = _held_out(build, images.encode, train_digests, seed, stream, i)
    rows.append({"id": f"{name}_{i:06d}", "image": images.save(f"{name}_{i:06d}", scene, "eval", data),
                 "question": qa.question, "choices": list(qa.choices) if qa.choices else None,
                 "answer": qa.answer_text,
                 "answer_letter": qa.answer if qa.choices else None, "prompt": qa.prompt_for(mc_answer),
                 "group": BENCHMARKS[name], "type": qa.type, "task": task.name})
  return rows


def _mle_bench(images: _Images, ctx: sc.Context, seed: int, n_per_level: int,
               train_digests: set[str], mc_answer: str) -> list[dict]:
  names = {c.name: c for c in ctx.vocabulary}
  rows = []
  for level_index, level in enumerate(sc.SIZE_LEVELS):
    for i in range(n_per_level):

      def build(rng, level=level):
        scene = sc.retry(sc.existence_scene, ctx, rng, level)
        present = [names[o.name] for o in scene.objects]
        absent = absent_classes(ctx.vocabulary, present, scene.background_contains)
        wrong = [absent[j].name for j in rng.permutation(len(absent))[:3]]
        choices = [scene.objects[-1].name, *wrong]
        return scene, [choices[j] for j in rng.permutation(len(choices))]

      (scene, choices), data = _held_out(build, images.encode, train_digests, seed,
                                         _STREAM_MLE + level_index, i)
      image = images.save(f"mle_{level}_{i:06d}", scene, "eval", data)
      rows.append({"image": image, "question": MLE_QUESTION, "choices": choices,
                   "answer": scene.objects[-1].name, "sub_task": level,
                   "prompt": format_prompt(MLE_QUESTION, choices, mc_answer=mc_answer)})
  return rows


def _jsonl(path: pathlib.Path, rows: Sequence[dict]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _versions() -> dict[str, str]:
  import importlib.metadata

  return {p: importlib.metadata.version(p) for p in ("numpy", "pillow", "matplotlib", "scikit-image")}


def _selected_tasks(names: Sequence[str] | None, emoji: bool, source: str) -> list[Task]:
  usable = available(emoji)
  if names is None:
    return list(usable.values())
  if not names:
    raise ValueError("tasks=[] selects nothing; pass None for every task.")
  chosen = []
  for name in names:
    task = lookup(TASKS, name, "question task")
    if name not in usable:
      raise ValueError(f"Task {name!r} needs emoji objects but the object source is {source}.")
    chosen.append(task)
  return chosen


def generate(out_dir: str | os.PathLike[str], *, seed: int = 0, image_size: int = 64,
             n_captions: int = 64, n_instruct: int = 160, n_eval_per_benchmark: int = 32,
             n_mle_per_level: int | None = None, objects: str = "auto",
             tasks: Sequence[str] | None = None, mc_answer: str = "letter",
             text_only_every: int = TEXT_ONLY_EVERY, downloads_dir: str | os.PathLike[str] | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
  """Writes the generated data set into `out_dir` (replacing it) and returns its manifest.

  n_mle_per_level: MLE-Bench-style questions per size level (default n_eval_per_benchmark).
  objects: "emoji" (Noto Color Emoji, fetched once; fails if it cannot be), "shapes" (PIL-drawn,
  no download) or "auto" (emoji when the package can be fetched, else shapes).
  tasks: only these question tasks (names in `gen_questions.TASKS`) for captions, instruction data
  and benchmarks, e.g. ["colour", "existence"] for a quick learnability check; a benchmark left
  without tasks is not written. None: every task the object source allows.
  mc_answer: how instruction data and benchmarks ask multiple-choice questions to be answered
  (`gen_questions.MC_ANSWERS`): "letter" (LLaVA's format) or "text" (the option's text; MLE-Bench rows keep
  their letter format either way).
  text_only_every: every this-many-th instruction item is a text-only conversation (0: none).
  """
  if mc_answer not in MC_ANSWERS:
    raise ValueError(f"mc_answer={mc_answer!r} is not one of {MC_ANSWERS}.")
  if isinstance(text_only_every, bool) or not isinstance(text_only_every, int) or text_only_every < 0:
    raise ValueError(f"text_only_every={text_only_every!r} must be an integer >= 0 (0: no text-only items).")
  if image_size < 32:
    raise ValueError(f"image_size={image_size} is too small to place objects; use 32 or more.")
  counts = {"n_captions": n_captions, "n_instruct": n_instruct,
            "n_eval_per_benchmark": n_eval_per_benchmark}
  for key, value in counts.items():
    if value < 0:
      raise ValueError(f"{key}={value} must not be negative.")
  n_mle = n_eval_per_benchmark if n_mle_per_level is None else n_mle_per_level
  emoji_font, object_source = _object_source(objects, downloads_dir, log)
  vocabulary = EMOJI_OBJECTS if emoji_font else SHAPES
  train = sc.Context(image_size, "train", vocabulary, emoji_font)
  held_out = sc.Context(image_size, "eval", vocabulary, emoji_font)
  image_tasks = _selected_tasks(tasks, emoji_font is not None, object_source["name"])
  out = pathlib.Path(out_dir)
  with atomic_directory(out) as root:
    images = _Images(root)
    captions = _captions(images, [t for t in image_tasks if t.group is not None] or image_tasks,
                         train, seed, n_captions)
    instruct = _instruct(images, image_tasks, train, seed, n_instruct, mc_answer, text_only_every)
    train_digests = set(images.digests.values())
    benchmarks = {}
    for b, (name, group) in enumerate(BENCHMARKS.items()):
      group_tasks = [t for t in image_tasks if t.group == group]
      if not group_tasks:
        continue
      benchmarks[name] = _benchmark(images, name, group_tasks, held_out, seed,
                                    n_eval_per_benchmark, _STREAM_EVAL + b, train_digests, mc_answer)
    mle = _mle_bench(images, held_out, seed, n_mle, train_digests, mc_answer)
    _jsonl(root / "captions.jsonl", captions)
    (root / "instruct.json").write_text(json.dumps(instruct, indent=1) + "\n", encoding="utf-8")
    for name, rows in benchmarks.items():
      _jsonl(root / "eval" / f"{name}.jsonl", rows)
    _jsonl(root / "eval" / "mle_bench.jsonl", mle)
    _jsonl(root / "scenes.jsonl", images.scenes)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.json*"))
    manifest = {
        "format": FORMAT, "generator_version": GENERATOR_VERSION, "seed": seed, "image_size": image_size,
        **counts,
        "n_mle_per_level": n_mle, "object_source": object_source, "mc_answer": mc_answer,
        "vocabulary": [c.name for c in vocabulary],
        "backgrounds": [{"name": p.name, "contains": list(p.contains), "licence": p.licence,
                         "source": "scikit-image skimage.data"} for p in gen_assets.PHOTOS],
        "text_font": "DejaVu Sans Bold (matplotlib's bundled copy)",
        "held_out": (f"evaluation crops come from the right {1 - gen_assets.TRAIN_REGION:.0%} of each "
                     f"photo, training crops from the left {gen_assets.TRAIN_REGION:.0%}; separate "
                     "random streams; no evaluation image equals a training image byte for byte"),
        "versions": _versions(),
        "tasks": {t.name: {"group": t.group, "kind": t.kind} for t in image_tasks},
        "benchmarks": {name: {"group": BENCHMARKS[name], "rows": len(rows)}
                       for name, rows in benchmarks.items()},
        "groups": list(GROUPS),
        "counts": {"images": len(images.digests), "captions": len(captions),
                   "instruct": len(instruct),
                   "instruct_text_only": sum("image" not in item for item in instruct),
                   "mle_bench": len(mle)},
        "files": {f: sha256_file(root / f) for f in files},
        "images_sha256": hashlib.sha256(json.dumps(images.digests, sort_keys=True).encode()).hexdigest(),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                        encoding="utf-8")
  log(f"generated {manifest['counts']['images']} images, {len(instruct)} instruction items, "
      f"{sum(len(r) for r in benchmarks.values()) + len(mle)} evaluation rows into {out}")
  return manifest


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="output directory (replaced)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--image-size", type=int, default=64)
  parser.add_argument("--captions", type=int, default=64)
  parser.add_argument("--instruct", type=int, default=160)
  parser.add_argument("--eval", type=int, default=32, help="rows per benchmark")
  parser.add_argument("--mle-per-level", type=int, default=None)
  parser.add_argument("--objects", choices=OBJECT_SOURCES, default="auto")
  parser.add_argument("--tasks", nargs="+", default=None, help="only these question tasks")
  parser.add_argument("--mc-answer", choices=MC_ANSWERS, default="letter",
                      help="multiple choice answered with the option's letter or its text")
  args = parser.parse_args(argv)
  generate(args.out, seed=args.seed, image_size=args.image_size, n_captions=args.captions,
           n_instruct=args.instruct, n_eval_per_benchmark=args.eval,
           n_mle_per_level=args.mle_per_level, objects=args.objects, tasks=args.tasks, mc_answer=args.mc_answer)


if __name__ == "__main__":
  main()
