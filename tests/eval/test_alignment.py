"""Tests for visual_priors.eval.alignment: mutual k-NN, LM caption features, vision feature loaders, rows."""

from __future__ import annotations

import json
import pathlib

import grain
import numpy as np
import pytest
from flax import nnx

from visual_priors.eval import alignment
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.models.vision import ViT, get_encoder
from visual_priors.models.vision.checkpoint import big_vision_key
from visual_priors.train import adaptation

CAPTIONS = [
    "A red circle above a blue square.", "Two dogs run across the green field.", "A cat sleeps on the mat.",
    "The chart shows the value of bees.", "Three apples lie next to a banana.", "A small boat on a calm lake.",
    "The word STOP is written on the sign.", "A yellow triangle left of the cat.", "Birds fly over the city.",
    "A bar chart with five bars.", "An old man reads a newspaper.", "Snow covers the mountain tops.",
]


def brute_force_mutual_knn(a: np.ndarray, b: np.ndarray, k: int) -> float:
  def neighbours(x: np.ndarray, i: int) -> set[int]:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = [(float(unit[i] @ unit[j]), j) for j in range(len(x)) if j != i]
    return {j for _, j in sorted(sims, key=lambda s: (-s[0], s[1]))[:k]}

  return float(np.mean([len(neighbours(a, i) & neighbours(b, i)) / k for i in range(len(a))]))


def test_mutual_knn_matches_a_brute_force_reference_on_correlated_data():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(60, 16))
  b = np.concatenate([a[:, :8] + 0.5 * rng.normal(size=(60, 8)), rng.normal(size=(60, 5))], axis=1)
  for k in (1, 5, 20):
    expected = brute_force_mutual_knn(a, b, k)
    assert 0.05 < expected < 0.95  # partly aligned: a meaningful comparison
    assert alignment.mutual_knn(a, b, k) == pytest.approx(expected, abs=1e-9)


def test_mutual_knn_chunks_agree_with_one_pass(monkeypatch):
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
  b[:, :4] += a[:, :4]
  whole = alignment.mutual_knn(a, b, 7)
  monkeypatch.setattr(alignment, "_CHUNK_ROWS", 16)  # 50 rows: chunks 0, 16, 32 and a last one from 34
  assert alignment.mutual_knn(a, b, 7) == pytest.approx(whole) == pytest.approx(brute_force_mutual_knn(a, b, 7))


def test_identical_and_rotated_features_score_one_and_independent_ones_chance():
  rng = np.random.default_rng(2)
  a = rng.normal(size=(300, 32)).astype(np.float32)
  assert alignment.mutual_knn(a, a, 20) == 1.0
  rotation, _ = np.linalg.qr(rng.normal(size=(32, 32)))
  assert alignment.mutual_knn(a, 3.0 * a @ rotation, 20) > 0.99  # cosine neighbours survive scale and rotation
  independent = alignment.mutual_knn(a, rng.normal(size=(300, 48)), 20)
  assert independent == pytest.approx(20 / 299, abs=0.015)


def test_mutual_knn_refuses_bad_input_clearly():
  a = np.random.default_rng(3).normal(size=(10, 4))
  with pytest.raises(ValueError, match=r"k=10 needs at least k \+ 1 = 11 items"):
    alignment.mutual_knn(a, a, 10)
  with pytest.raises(ValueError, match="k must be a positive integer"):
    alignment.mutual_knn(a, a, 0)
  with pytest.raises(ValueError, match="10 items and feats_b 9"):
    alignment.mutual_knn(a, a[:9], 3)
  with pytest.raises(ValueError, match="must be 2-D"):
    alignment.mutual_knn(a[0], a[0], 3)
  zero = a.copy()
  zero[4] = 0
  with pytest.raises(ValueError, match="all-zero rows.*row 4"):
    alignment.mutual_knn(a, zero, 3)
  nan = a.copy()
  nan[2, 1] = np.nan
  with pytest.raises(ValueError, match="non-finite.*row 2"):
    alignment.mutual_knn(nan, a, 3)


def test_resolve_layer_counts_hidden_states_like_python_indices():
  assert alignment.resolve_layer(4, "last") == 4
  assert alignment.resolve_layer(4, -1) == 4
  assert alignment.resolve_layer(4, -5) == 0
  assert alignment.resolve_layer(4, 0) == 0 and alignment.resolve_layer(4, 2) == 2
  for bad in (5, -6):
    with pytest.raises(ValueError, match=r"valid are -5\.\.4 or 'last'"):
      alignment.resolve_layer(4, bad)
  with pytest.raises(ValueError, match="int or 'last'"):
    alignment.resolve_layer(4, "first")


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory) -> pathlib.Path:
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  prefix = tmp_path_factory.mktemp("vocab") / "spm"
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(CAPTIONS * 4), model_prefix=str(prefix), vocab_size=360, model_type="unigram",
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False, minloglevel=2,
      num_threads=1)
  return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def decoder() -> Decoder:
  config = DecoderConfig(vocab_size=400, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                         dtype="float32", attention_impl="xla")
  return nnx.jit(lambda: Decoder(config, rngs=nnx.Rngs(0)))()  # one compiled init: eager init is slow on CPU


def test_layer_zero_mean_is_the_mean_caption_embedding(decoder, vocab_path):
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  processor = spm.SentencePieceProcessor(model_file=str(vocab_path))
  feats = alignment.caption_features(decoder, vocab_path, CAPTIONS[:5], layer=0, pooling="mean", batch_size=2)
  table = np.asarray(decoder.embedder.embedding[...])
  expected = np.stack([table[processor.encode(c)].mean(axis=0) for c in CAPTIONS[:5]])  # BOS excluded
  np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_features_do_not_depend_on_padding_or_batch_neighbours(decoder, vocab_path, pooling):
  together = alignment.caption_features(decoder, vocab_path, CAPTIONS, layer="last", pooling=pooling, batch_size=5)
  alone = alignment.caption_features(decoder, vocab_path, [CAPTIONS[6]], layer=-1, pooling=pooling)
  np.testing.assert_allclose(together[[6]], alone, rtol=2e-5, atol=2e-6)
  assert together.shape == (len(CAPTIONS), 32)
  middle = alignment.caption_features(decoder, vocab_path, CAPTIONS[:3], layer=1, pooling=pooling)
  assert not np.allclose(middle, together[:3])  # the layer matters
  with pytest.raises(ValueError, match="pooling 'max' is not one of"):
    alignment.caption_features(decoder, vocab_path, CAPTIONS, pooling="max")
  with pytest.raises(ValueError, match="Caption 1 is empty"):
    alignment.caption_features(decoder, vocab_path, ["A cat.", "  "])


def _pairs(count: int) -> list[dict]:
  rng = np.random.default_rng(5)
  return [{"image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "caption": CAPTIONS[i % len(CAPTIONS)]
           + f" Number {i}."} for i in range(count)]


def test_evaluate_alignment_rows_config_and_file(decoder, vocab_path, tmp_path):
  pairs = _pairs(24)
  text = alignment.caption_features(decoder, vocab_path, [p["caption"] for p in pairs], layer=1, pooling="last")
  by_image = {p["image"].tobytes(): row for p, row in zip(pairs, text)}
  from visual_priors.data.multimodal.pipeline import load_image  # pylint: disable=import-outside-toplevel
  lookup = {load_image(p["image"], 16).tobytes(): by_image[p["image"].tobytes()] for p in pairs}

  def oracle(images):  # the LM's own caption features: perfectly aligned
    return np.stack([lookup[np.asarray(image, np.float32).tobytes()] for image in images])

  rng = np.random.default_rng(6)
  noise_table = {key: rng.normal(size=40) for key in lookup}

  def noise(images):
    return np.stack([noise_table[np.asarray(image, np.float32).tobytes()] for image in images])

  rows = alignment.evaluate_alignment(decoder, vocab_path, pairs, {"oracle": oracle, "noise": noise,
                                                                   "pixels": alignment.pixel_features(4)},
                                      k=3, layer=1, pooling="last", image_size=16, batch_size=5, out_dir=tmp_path)
  values = {row["benchmark"]: row["value"] for row in rows}
  assert [row["benchmark"] for row in rows] == ["alignment/oracle", "alignment/noise", "alignment/pixels",
                                                "alignment"]
  assert all(row["metric"] == "mutual_knn" and row["count"] == 24 and row["group"] is None for row in rows)
  assert values["alignment/oracle"] == 1.0
  assert values["alignment/noise"] < 0.5
  assert values["alignment"] == pytest.approx(np.mean([values[f"alignment/{n}"] for n in ("oracle", "noise",
                                                                                            "pixels")]))
  assert rows.config["blocks"] == 1 and rows.config["pooling"] == "last" and rows.config["k"] == 3
  assert rows.config["vision_models"]["noise"]["dim"] == 40 and rows.config["lm_dim"] == 32
  written = json.loads((tmp_path / "alignment.json").read_text())
  assert written["rows"] == list(rows) and written["config"]["layer"] == 1
  with pytest.raises(ValueError, match=r"k=24 needs 1 <= k < the number of pairs \(24\)"):
    alignment.evaluate_alignment(decoder, vocab_path, pairs, {"noise": noise}, k=24, image_size=16)
  with pytest.raises(ValueError, match=r"Pair 0 lacks \['caption'\]"):
    alignment.evaluate_alignment(decoder, vocab_path, [{"image": pairs[0]["image"]}] * 3, {"noise": noise}, k=1)
  with pytest.raises(ValueError, match="No vision models"):
    alignment.evaluate_alignment(decoder, vocab_path, pairs, {}, k=3)


def test_vision_from_npz_matches_the_tower_it_was_saved_from(tmp_path):
  tower = ViT(get_encoder("vit-nano"), rngs=nnx.Rngs(3))  # eager, as the loader builds its tower: ops compile once
  npz = tmp_path / "siglip.npz"  # laid out as a SigLIP file: img/... (MAP head, no image head), txt/..., t, b
  arrays = {"img/" + big_vision_key(path): np.asarray(variable[...])
            for path, variable in nnx.to_flat_state(nnx.state(tower, nnx.Param))}
  np.savez(npz, **arrays, **{"txt/Embed_0/embedding": np.zeros((50, 32), np.float32), "t": np.zeros(1),
                             "b": np.zeros(1)})
  images = np.random.default_rng(7).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
  pooled, tokens = nnx.jit(lambda model, x: model(x))(tower, images)
  head = alignment.vision_from_npz(npz, "vit-nano", pooling="head")
  mean = alignment.vision_from_npz(npz, "vit-nano", pooling="mean")
  np.testing.assert_allclose(head(images), np.asarray(pooled), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(mean(images), np.asarray(tokens).mean(axis=1), rtol=1e-5, atol=1e-6)
  larger = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)  # 32 px: resized to the tower's 16
  assert head(larger).shape == (3, 32)
  with pytest.raises(ValueError, match="pool_type 'none'"):
    alignment.vit_features(ViT(get_encoder("vit-nano", pool_type="none"), rngs=nnx.Rngs(0)), "head")


@pytest.mark.slow
def test_vision_from_a_contrastive_run_uses_its_trained_image_tower(tmp_path):
  rng = np.random.default_rng(8)
  rows = [{"images": rng.uniform(-1, 1, (16, 16, 3)).astype(np.float32),
           "text_tokens": rng.integers(3, 50, 8).astype(np.int32)} for _ in range(8)]
  dataset = grain.MapDataset.source(rows).repeat(None).batch(8, drop_remainder=True)
  config = adaptation.stage_config("contrastive")
  config.train.work_dir = str(tmp_path / "contrastive")
  config.train.mesh = {"data": 1, "fsdp": -1, "tensor": 1}
  config.train.batch_size, config.train.seq_len, config.train.num_steps = 8, 8, 1
  config.train.checkpoint.every_steps = 1
  config.train.checkpoint.async_save = False
  config.vision.encoder = "vit-nano"
  config.vocab_size = 50
  import jax  # pylint: disable=import-outside-toplevel
  adaptation.run_stage(config, train_data=lambda: iter(dataset.to_iter_dataset()), num_examples=8,
                   devices=jax.devices()[:1])
  vit = alignment.load_contrastive_vit(tmp_path / "contrastive")
  fresh = ViT(vit.config, rngs=nnx.Rngs(0))
  trained = nnx.to_flat_state(nnx.state(vit, nnx.Param))
  initial = dict(nnx.to_flat_state(nnx.state(fresh, nnx.Param)))
  assert any(not np.allclose(variable[...], initial[path][...]) for path, variable in trained)
  features = alignment.vision_from_contrastive_run(tmp_path / "contrastive", pooling="mean")
  images = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  np.testing.assert_allclose(features(images), np.asarray(vit(images)[1]).mean(axis=1), rtol=1e-5, atol=1e-6)
  with pytest.raises(FileNotFoundError, match="no manifest.json"):
    alignment.load_contrastive_vit(tmp_path)


def test_build_vision_models_from_specs(tmp_path):
  models = alignment.build_vision_models({"pixels": {"kind": "pixels", "grid": 4}})
  images = np.random.default_rng(9).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  assert models["pixels"](images).shape == (2, 48)
  with pytest.raises(KeyError, match="contrastive"):
    alignment.build_vision_models({"x": {"kind": "contrastiv", "run": "r"}})
  with pytest.raises(ValueError, match=r"unknown keys \['grids'\], missing keys \[\]"):
    alignment.build_vision_models({"x": {"kind": "pixels", "grids": 4}})
  with pytest.raises(ValueError, match=r"missing keys \['encoder'\]"):
    alignment.build_vision_models({"x": {"kind": "npz", "path": str(tmp_path / "a.npz")}})
  with pytest.raises(FileNotFoundError, match="no manifest.json"):
    alignment.build_vision_models({"x": {"kind": "contrastive", "run": str(tmp_path)}})
