"""Tests for visual_priors.eval.suite: the alignment rows of a run, one per configured vision model, each named."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from visual_priors import experiment
from visual_priors.eval import suite
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.models.vision import ViT, get_encoder
from visual_priors.models.vision import random_hf
from visual_priors.models.vision.checkpoint import big_vision_key

CAPTIONS = ["A red circle above a blue square.", "Two dogs run across the green field.", "A cat sleeps on the mat.",
            "The chart shows the value of bees.", "Three apples lie next to a banana.", "A small boat on a lake."]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, pathlib.Path]:
  """A caption set with images (an mmdata directory), a vocabulary, a vit-nano .npz and a random HF tower."""
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp("suite")
  mmdata = root / "mmdata"
  mmdata.mkdir()
  rng = np.random.default_rng(0)
  rows = []
  for index in range(12):
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(mmdata / f"{index}.png")
    rows.append({"image": f"{index}.png", "caption": f"{CAPTIONS[index % len(CAPTIONS)]} Number {index}."})
  (mmdata / "captions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(CAPTIONS * 8), model_prefix=str(root / "spm"), vocab_size=360, model_type="unigram",
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False, minloglevel=2,
      num_threads=1)
  vit = ViT(get_encoder("vit-nano"), rngs=nnx.Rngs(3))
  np.savez(root / "vit_nano.npz", **{"img/" + big_vision_key(path): np.asarray(variable[...])
                                     for path, variable in nnx.to_flat_state(nnx.state(vit, nnx.Param))})
  return {"mmdata": mmdata, "vocab": root / "spm.model", "npz": root / "vit_nano.npz",
          "hf": random_hf.write_random_dinov2(root / "dinov2-nano", seed=0)}


@pytest.fixture(scope="module")
def decoder() -> Decoder:
  config = DecoderConfig(vocab_size=400, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, dtype="float32",
                         attention_impl="xla")
  return nnx.jit(lambda: Decoder(config, rngs=nnx.Rngs(0)))()


def _config(vision_models: list[str], *settings: str):
  config = experiment.apply_local(experiment.base_config(), {"eval.alignment.k": 3})
  return experiment.apply_overrides(config, [f"eval.alignment.vision_models={vision_models!r}", *settings])


def test_one_alignment_row_per_vision_model_each_named(files, decoder, tmp_path):
  config = _config(["self", f"dinov2-nano=hf:{files['hf']}", f"vit-nano=bv:{files['npz']}"])
  experiment.finalize(config, strict=True)
  stages = {"mmdata": files["mmdata"], "vision": files["npz"]}
  specs = suite.vision_model_specs(config, stages["vision"])
  assert list(specs) == ["vit-nano", "dinov2-nano", "vit-nano-2"]  # "self" keeps its encoder's name
  assert specs["dinov2-nano"] == {"kind": "hf", "path": str(files["hf"]), "encoder": "dinov2-nano", "pooling": "head"}
  assert specs["vit-nano"]["kind"] == specs["vit-nano-2"]["kind"] == "npz"
  rows = suite._alignment_rows(config, stages, decoder, files["vocab"], 16, tmp_path)  # pylint: disable=protected-access
  assert [row["benchmark"] for row in rows] == ["alignment/vit-nano", "alignment/dinov2-nano", "alignment/vit-nano-2",
                                                "alignment"]
  values = {row["benchmark"]: row["value"] for row in rows}
  assert values["alignment/vit-nano"] == values["alignment/vit-nano-2"]  # the same tower twice
  assert values["alignment"] == pytest.approx(np.mean([values[f"alignment/{n}"]
                                                       for n in ("vit-nano", "dinov2-nano", "vit-nano-2")]))
  assert all(row["metric"] == "mutual_knn" and row["count"] == 12 for row in rows)
  written = json.loads((tmp_path / "alignment.json").read_text())["config"]
  assert set(written["vision_models"]) == {"vit-nano", "dinov2-nano", "vit-nano-2"}


def test_best_layer_search_with_outlier_clamp_takes_every_layer_of_each_model(files, decoder, tmp_path):
  config = _config(["self", f"dinov2-nano=hf:{files['hf']}"], "eval.alignment.layer=best",
                   "eval.alignment.outlier_quantile=0.95")
  stages = {"mmdata": files["mmdata"], "vision": files["hf"]}  # a vision stage of kind checkpoint from hf:DIR
  config = experiment.apply_overrides(config, ["vision.encoder=dinov2-nano"])
  specs = suite.vision_model_specs(config, stages["vision"])
  assert list(specs) == ["dinov2-nano", "dinov2-nano-2"]
  assert specs["dinov2-nano"] == {"kind": "hf", "path": str(files["hf"]), "encoder": "dinov2-nano", "pooling": "cls",
                                  "all_layers": True}
  rows = suite._alignment_rows(config, stages, decoder, files["vocab"], 16, tmp_path)  # pylint: disable=protected-access
  written = json.loads((tmp_path / "alignment.json").read_text())["config"]
  assert written["outlier_quantile"] == 0.95 and written["layer"] == "best"
  assert all(len(model["best_layers"]) == 2 for model in written["vision_models"].values())
  assert [row["benchmark"] for row in rows] == ["alignment/dinov2-nano", "alignment/dinov2-nano-2", "alignment"]


def test_chance_rows_are_there_without_likelihood_scoring(tmp_path):
  """A uniform guess among the options of the MC and yes/no questions, per group and overall; open questions have
  no options and no chance; no model is needed."""
  Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
  rows = [("mc", ["red", "blue", "green", "pink"], "General"), ("mc", ["1", "2"], "General"),
          ("yes_no", None, "General"), ("open", None, "General")]
  lines = [json.dumps({"id": f"q{i}", "image": "a.png", "question": "?", "choices": choices, "task": "t",
                       "answer": (choices or ["Yes"])[0], "prompt": "?", "group": group,
                       "type": {"mc": "multiple_choice"}.get(kind, kind)})
           for i, (kind, choices, group) in enumerate(rows)]
  (tmp_path / "gen_general.jsonl").write_text("\n".join(lines) + "\n")
  choice_items = list(suite._choice_items(  # pylint: disable=protected-access
      ["gen_general"], tmp_path, {"gen_general": tmp_path / "gen_general.jsonl"}, None))
  chance = {row["benchmark"]: row for row in suite._chance_rows(choice_items)}  # pylint: disable=protected-access
  assert {row["metric"] for row in chance.values()} == {"accuracy_chance"}
  assert chance["gen_general"]["count"] == 3
  assert chance["gen_general"]["value"] == pytest.approx(100 * (1 / 4 + 1 / 2 + 1 / 2) / 3)
  assert chance["overall"]["value"] == pytest.approx(chance["gen_general"]["value"])
