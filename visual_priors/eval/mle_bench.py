"""MLE-Bench (Multi-Level Existence): building its rows from object annotations, and per-level scoring.

Levels come from the target object's area fraction (its mask's pixels / the image's pixels; a box's
area for boxes). Boundary convention: each level holds its lower bound and not its upper one, the
last one both: small [0, 0.3), medium [0.3, 0.6), large [0.6, 1.0]; as sub_task names (the released
data's) existence_0-30, existence_30-60, existence_60-100. (The generator, `data/multimodal/scene.py`,
accepts a target area in the open-closed (low, high]; it aims well inside each level, so an area on
a boundary does not occur there in practice; `build_generated` re-derives levels with this module's
convention.)

A question (docs/paper.md, section 5.5): "Which of the following objects appears in the image?", the
target (one present object) and three distractors from the vocabulary, none of which shares a name
or listed synonym with anything present in the image (a vocabulary word is excluded when it or one
of its synonyms is a present name or a synonym of one; the synonym mapping is read symmetrically).
Rows have the released format {image, question, choices, answer, sub_task}.

Scoring: `level_report` gives accuracy per level, the paper's "overall_weighted" (accuracy over all
questions, i.e. levels weighted by their question counts) and a public harness's "overall_unweighted"
(the mean of the level accuracies), in percent.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from visual_priors.data.cache import iter_jsonl, read_json, write_text_atomic
from visual_priors.data.multimodal.generate import MLE_QUESTION
from visual_priors.data.multimodal.gen_objects import EMOJI_OBJECTS, SHAPES
from visual_priors.names import lookup

QUESTION = MLE_QUESTION
# level -> (sub_task, lower bound (included), upper bound (excluded, except 1.0 for "large"))
LEVELS: dict[str, tuple[str, float, float]] = {
    "small": ("existence_0-30", 0.0, 0.3),
    "medium": ("existence_30-60", 0.3, 0.6),
    "large": ("existence_60-100", 0.6, 1.0),
}
SUB_TASKS: dict[str, str] = {sub_task: level for level, (sub_task, _, _) in LEVELS.items()}
DISTRACTORS = 3
TARGET_MODES = ("designed", "any")
# What an error about a damaged file of a generated data set tells the user to do.
REGENERATE = "delete the data set and generate it again (python -m visual_priors.data.multimodal.generate)"


def level_of(fraction: float) -> str:
  """The level ("small", "medium", "large") of a target covering `fraction` of the image."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"Area fraction {fraction} is outside (0, 1]; a present object covers some of the image.")
  return next(level for level, (_, low, high) in LEVELS.items() if low <= fraction < high or high == 1.0)


def resolve_level(name: str) -> str:
  """A level name from either form ("small" or "existence_0-30"); unknown names raise with the closest."""
  return lookup({**{level: level for level in LEVELS}, **SUB_TASKS}, name, "MLE-Bench level")


def _symmetric(synonyms: Mapping[str, Iterable[str]] | None) -> dict[str, set[str]]:
  out: dict[str, set[str]] = {}
  for name, others in (synonyms or {}).items():
    for other in others:
      if other != name:
        out.setdefault(name, set()).add(other)
        out.setdefault(other, set()).add(name)
  return out


def _image_key(annotation: Mapping[str, Any], index: int) -> bytes:
  key = annotation.get("id", annotation.get("image"))
  if isinstance(key, (bytes, bytearray)):
    return hashlib.sha256(bytes(key)).digest()
  if key is None or isinstance(key, np.ndarray):
    raise ValueError(f"Annotation {index} needs an 'id' (or an image path) to seed its question.")
  return str(key).encode("utf-8")


def _rng(seed: int, key: bytes) -> np.random.Generator:
  digest = hashlib.sha256(key).digest()
  return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def _image_size(annotation: Mapping[str, Any], what: str) -> tuple[int, int] | None:
  shapes = {tuple(np.shape(o["mask"])) for o in annotation["objects"] if o.get("mask") is not None}
  if len(shapes) > 1:
    raise ValueError(f"{what}: object masks differ in shape {sorted(shapes)}.")
  given = (annotation["height"], annotation["width"]) if "height" in annotation and "width" in annotation else None
  if shapes and given and shapes != {tuple(given)}:
    raise ValueError(f"{what}: masks are {shapes.pop()} but height x width is {given}.")
  return next(iter(shapes), None) or (tuple(int(v) for v in given) if given else None)


def object_areas(annotation: Mapping[str, Any], what: str = "annotation") -> dict[str, float]:
  """Area fraction per object name: the union of its instances' masks and boxes, plus any given 'area'."""
  objects = annotation.get("objects") or []
  if not objects:
    raise ValueError(f"{what} has no objects; every MLE-Bench image needs at least one present object.")
  size = _image_size(annotation, what)
  canvases: dict[str, np.ndarray] = {}
  given: dict[str, float] = {}
  for number, obj in enumerate(objects):
    name = obj.get("name")
    if not isinstance(name, str) or not name:
      raise ValueError(f"{what} object {number} has no name.")
    where = f"{what} object {number} ({name!r})"
    if obj.get("mask") is not None or obj.get("box") is not None:
      if size is None:
        raise ValueError(f"{where} has a box but the image size is unknown; add 'height' and 'width'.")
      canvas = canvases.setdefault(name, np.zeros(size, bool))
      if obj.get("mask") is not None:
        mask = np.asarray(obj["mask"])
        if mask.dtype != bool:
          raise ValueError(f"{where}: mask has dtype {mask.dtype}; pass a bool array (decode RLE/polygons first).")
        if not mask.any():
          raise ValueError(f"{where} has an empty mask.")
        canvas |= mask
      else:
        x0, y0, x1, y1 = (int(round(float(v))) for v in obj["box"])
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size[1]), min(y1, size[0])
        if x1 <= x0 or y1 <= y0:
          raise ValueError(f"{where} has an empty box {list(obj['box'])} in a {size[1]}x{size[0]} image.")
        canvas[y0:y1, x0:x1] = True
    elif obj.get("area") is not None:
      area = float(obj["area"])
      if not 0.0 < area <= 1.0:
        raise ValueError(f"{where} has area {area}; an area fraction is in (0, 1].")
      given[name] = given.get(name, 0.0) + area
    else:
      raise ValueError(f"{where} has neither a mask, a box nor an area.")
  names = list(dict.fromkeys(o["name"] for o in objects))
  return {n: min(1.0, (float(canvases[n].mean()) if n in canvases else 0.0) + given.get(n, 0.0)) for n in names}


def excluded_names(present: Iterable[str], synonyms: Mapping[str, set[str]]) -> set[str]:
  """Present names and their synonyms: no vocabulary word meeting these may be a distractor."""
  names = set(present)
  for name in list(names):
    names |= synonyms.get(name, set())
  return names


def build_mle_bench(annotations: Sequence[Mapping[str, Any]], vocabulary: Sequence[str], *,
                    synonyms: Mapping[str, Iterable[str]] | None = None, seed: int, per_image: int = 1,
                    levels: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """MLE-Bench rows {image, question, choices, answer, sub_task} from annotated images.

  annotations: per image {"image" (path, bytes... copied to the row), "id"? (seeds its draws; default the
  image path), "objects": [{"name", and "mask" (bool HxW) | "box" [x0, y0, x1, y1] pixels | "area"
  (a fraction)}], "height"/"width" (needed for boxes without masks), "also_present"? (names visible but
  not annotated, e.g. a background's content: never distractors), "targets"? (the names that may be
  asked about; default every annotated name)}. Instances of one name count together (union of masks).
  Per image, up to `per_image` distinct targets (drawn by seed and the image's id, so a question does
  not depend on the order of the images), each in one of `levels` (default all; an image with no
  target in them gets no question), three distractors drawn from the vocabulary words not excluded
  (`excluded_names`), and the answer at a drawn position.
  """
  if per_image < 1:
    raise ValueError(f"per_image={per_image} must be at least 1.")
  vocabulary = list(dict.fromkeys(vocabulary))
  if not all(isinstance(v, str) and v for v in vocabulary):
    raise ValueError("The vocabulary must be a list of non-empty names.")
  wanted = {resolve_level(l) for l in levels} if levels is not None else set(LEVELS)
  if not wanted:
    raise ValueError("levels=[] selects no level; pass None for all three.")
  synonym_map = _symmetric(synonyms)
  rows = []
  for index, annotation in enumerate(annotations):
    what = f"annotation {index} (image {str(annotation.get('id', annotation.get('image')))[:80]!r})"
    areas = object_areas(annotation, what)
    excluded = excluded_names([*areas, *annotation.get("also_present", ())], synonym_map)
    pool = [v for v in vocabulary if not ({v} | synonym_map.get(v, set())) & excluded]
    if len(pool) < DISTRACTORS:
      raise ValueError(f"{what}: only {len(pool)} vocabulary words are absent from the image ({pool}); "
                       f"{DISTRACTORS} distractors are needed. Use a larger vocabulary.")
    candidates = list(annotation.get("targets") or areas)
    unknown = [name for name in candidates if name not in areas]
    if unknown:
      raise ValueError(f"{what}: targets {unknown} are not among its objects {list(areas)}.")
    candidates = [name for name in candidates if level_of(areas[name]) in wanted]
    rng = _rng(seed, _image_key(annotation, index))
    for target_index in rng.permutation(len(candidates))[:per_image]:
      target = candidates[int(target_index)]
      wrong = [pool[int(i)] for i in rng.choice(len(pool), DISTRACTORS, replace=False)]
      choices = [target, *wrong]
      choices = [choices[int(i)] for i in rng.permutation(len(choices))]
      rows.append({"image": annotation["image"], "question": QUESTION, "choices": choices, "answer": target,
                   "sub_task": LEVELS[level_of(areas[target])][0]})
  return rows


def generated_vocabulary(root: str | os.PathLike[str]) -> tuple[list[str], dict[str, set[str]]]:
  """(vocabulary, synonyms) of a generated data set, from the object classes its manifest names."""
  manifest = read_json(pathlib.Path(root) / "manifest.json", REGENERATE)
  classes = EMOJI_OBJECTS if manifest["object_source"]["name"] == "Noto Color Emoji" else SHAPES
  names = [c.name for c in classes]
  if names != list(manifest["vocabulary"]):
    raise ValueError(f"{root}/manifest.json lists another vocabulary than this version's generator classes; "
                     "regenerate the data set.")
  return names, {c.name: set(c.synonyms) for c in classes}


def scene_annotations(root: str | os.PathLike[str], *, split: str = "eval", kinds: Sequence[str] = ("existence",),
                      target: str = "designed") -> list[dict[str, Any]]:
  """Annotations (for `build_mle_bench`) of a generated data set's scenes, from its scenes.jsonl.

  Objects carry their visible area fraction; the background photo's content is `also_present`.
  target "designed": only the object each existence scene was built around (pasted last, never covered)
  is asked about, as the generator's own MLE-Bench does; "any": every object of the scene may be.
  """
  if target not in TARGET_MODES:
    raise ValueError(f"target={target!r}; choose one of {TARGET_MODES}.")
  if target == "designed" and set(kinds) != {"existence"}:
    raise ValueError("target='designed' is defined for existence scenes only; use kinds=('existence',) or "
                     "target='any'.")
  root = pathlib.Path(root)
  annotations = []
  for scene in iter_jsonl(root / "scenes.jsonl", REGENERATE):
    if scene["split"] != split or scene["kind"] not in kinds or not scene["objects"]:
      continue
    annotations.append({
        "image": str((root / scene["image"]).resolve()), "id": scene["image"],
        "objects": [{"name": o["name"], "area": o["area"]} for o in scene["objects"]],
        "also_present": list(scene.get("background_contains", ())),
        "targets": [scene["objects"][-1]["name"]] if target == "designed" else None,
    })
  return annotations


def build_generated(root: str | os.PathLike[str], *, seed: int, levels: Sequence[str] | None = None,
                    per_image: int = 1, kinds: Sequence[str] = ("existence",), target: str = "designed",
                    split: str = "eval") -> list[dict[str, Any]]:
  """MLE-Bench rows rebuilt from a generated data set's scenes with another seed, levels or targets.

  Images are absolute paths (`write_rows` makes them relative to the file it writes).
  """
  vocabulary, synonyms = generated_vocabulary(root)
  return build_mle_bench(scene_annotations(root, split=split, kinds=kinds, target=target), vocabulary,
                         synonyms=synonyms, seed=seed, per_image=per_image, levels=levels)


def write_rows(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
  """Writes rows as JSONL atomically; image paths become relative to the file's folder (as loaders read them)."""
  path = pathlib.Path(path)
  folder = path.parent.resolve()
  lines = []
  for row in rows:
    row = dict(row)
    if isinstance(row["image"], str):
      row["image"] = os.path.relpath(pathlib.Path(row["image"]).resolve(), folder)
    lines.append(json.dumps(row) + "\n")
  write_text_atomic(path, "".join(lines))


def level_report(rows: Sequence[Mapping[str, Any]], correct: Sequence[bool], *,
                 benchmark: str = "mle_bench") -> list[dict[str, Any]]:
  """Result rows: accuracy_<level> per level present, overall_weighted, overall_unweighted and, where every row
  lists its choices, accuracy_chance (a uniform guess; 25% for four choices), all in percent.

  overall_weighted: correct answers over all questions (the paper's "Overall"); overall_unweighted: the
  mean of the per-level accuracies (a public harness's), over the levels present (count = questions).
  """
  if len(rows) != len(correct):
    raise ValueError(f"{len(rows)} rows but {len(correct)} correctness values.")
  if not rows:
    raise ValueError("No MLE-Bench rows to report.")
  hits: dict[str, list[bool]] = {}
  for row, hit in zip(rows, correct):
    hits.setdefault(resolve_level(str(row["sub_task"])), []).append(bool(hit))
  out = []
  accuracies = []
  for level in LEVELS:
    if level in hits:
      accuracy = 100.0 * float(np.mean(hits[level]))
      accuracies.append(accuracy)
      out.append({"benchmark": benchmark, "group": None, "metric": f"accuracy_{level}", "value": accuracy,
                  "count": len(hits[level])})
  total = len(rows)
  out.append({"benchmark": benchmark, "group": None, "metric": "overall_weighted",
              "value": 100.0 * sum(bool(c) for c in correct) / total, "count": total})
  out.append({"benchmark": benchmark, "group": None, "metric": "overall_unweighted",
              "value": float(np.mean(accuracies)), "count": total})
  choices = [len(row["choices"]) for row in rows if row.get("choices")]
  if len(choices) == total:  # a uniform guess among each question's choices
    out.append({"benchmark": benchmark, "group": None, "metric": "accuracy_chance",
                "value": 100.0 * float(np.mean([1 / n for n in choices])), "count": total})
  return out
