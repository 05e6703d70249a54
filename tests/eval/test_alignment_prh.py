"""PRH-style alignment features: every LM / vision layer, remove_outliers, compute_score's layer-pair search."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from flax import nnx

from visual_priors.eval import alignment
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.models.vision import ViT, ViTConfig

CAPTIONS = ["A red circle above a blue square.", "Two dogs run across the green field.", "A cat sleeps on the mat.",
            "Three apples lie next to a banana.", "A small boat on a calm lake.", "Birds fly over the city."]


def test_remove_outliers_is_prh_s():
  """The per-item q-quantile of |x| (linear interpolation, as torch.quantile), averaged, then a clamp."""
  rng = np.random.default_rng(0)
  feats = rng.standard_t(2, size=(7, 3, 20)).astype(np.float32)  # heavy tails
  flat = np.abs(feats).reshape(7, -1)
  threshold = np.mean([np.quantile(row, 0.95) for row in flat])
  clamped = alignment.remove_outliers(feats, 0.95)
  np.testing.assert_allclose(clamped, np.clip(feats, -threshold, threshold), rtol=1e-6)
  assert np.abs(clamped).max() == pytest.approx(threshold, rel=1e-6) and np.abs(feats).max() > threshold
  np.testing.assert_array_equal(alignment.remove_outliers(feats, 1.0), feats)
  torch = pytest.importorskip("torch")
  reference = torch.tensor(feats)
  q_val = torch.quantile(reference.abs().flatten(start_dim=1), 0.95, dim=1).mean()
  np.testing.assert_allclose(clamped, reference.clamp(-q_val, q_val).numpy(), rtol=1e-6)


def test_compute_score_finds_the_aligned_layer_pair():
  rng = np.random.default_rng(1)
  n, signal = 64, rng.normal(size=(64, 16))
  x = rng.normal(size=(n, 4, 16))  # LM: layer 2 carries the signal
  x[:, 2] = signal + 0.05 * rng.normal(size=(n, 16))
  y = rng.normal(size=(n, 3, 24))  # vision: layer 1 does (rotated and padded)
  rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
  y[:, 1, :16], y[:, 1, 16:] = signal @ rotation, 0.01 * rng.normal(size=(n, 8))
  score, pair = alignment.compute_score(x, y, k=5)
  assert pair == (2, 1) and score > 0.8
  assert score == pytest.approx(alignment.mutual_knn(x[:, 2], y[:, 1], 5))
  for i in range(-1, 4):  # the maximum over every pair, -1 being all layers concatenated
    for j in range(-1, 3):
      a = x.reshape(n, -1) if i == -1 else x[:, i]
      b = y.reshape(n, -1) if j == -1 else y[:, j]
      assert alignment.mutual_knn(a, b, 5) <= score
  score_2d, pair_2d = alignment.compute_score(x[:, 2], y[:, 1], k=5)  # 2-D inputs: one layer each
  assert pair_2d == (-1, -1) and score_2d == pytest.approx(score)


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory) -> pathlib.Path:
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  prefix = tmp_path_factory.mktemp("vocab") / "spm"
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(CAPTIONS * 8), model_prefix=str(prefix), vocab_size=300, model_type="unigram",
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=True, hard_vocab_limit=False, minloglevel=2,
      num_threads=1)
  return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def decoder() -> Decoder:
  config = DecoderConfig(vocab_size=340, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                         dtype="float32", attention_impl="xla")
  return nnx.jit(lambda: Decoder(config, rngs=nnx.Rngs(0)))()


def test_lm_features_at_every_layer_are_the_token_average_per_layer(decoder, vocab_path):
  every = alignment.caption_layer_features(decoder, vocab_path, CAPTIONS, batch_size=4)
  assert every.shape == (len(CAPTIONS), 3, 32)
  for layer in range(3):
    one = alignment.caption_features(decoder, vocab_path, CAPTIONS, layer=layer, batch_size=4)
    np.testing.assert_allclose(every[:, layer], one, rtol=2e-5, atol=2e-6)


def test_vision_features_per_layer_and_pooling():
  config = ViTConfig(image_size=16, patch_size=4, width=16, depth=2, mlp_dim=32, num_heads=2, pool_type="tok",
                     class_token=True, dtype="float32")
  vit = ViT(config, rngs=nnx.Rngs(0))
  images = np.random.default_rng(2).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
  states = [np.asarray(s) for s in vit.hidden_states(images)]
  cls_layers = alignment.vit_features(vit, "cls", all_layers=True)(images)
  mean_layers = alignment.vit_features(vit, "mean", all_layers=True)(images)
  assert cls_layers.shape == mean_layers.shape == (3, 3, 16)
  for layer, state in enumerate(states):
    np.testing.assert_allclose(cls_layers[:, layer], state[:, 0], atol=1e-6)
    np.testing.assert_allclose(mean_layers[:, layer], state[:, 1:].mean(axis=1), atol=1e-6)
  pooled, tokens = vit(images)
  np.testing.assert_allclose(alignment.vit_features(vit, "cls")(images), pooled, atol=1e-6)  # the normed CLS
  np.testing.assert_allclose(alignment.vit_features(vit, "mean")(images), np.asarray(tokens).mean(axis=1), atol=1e-6)
  with pytest.raises(ValueError, match="no class token"):
    alignment.vit_features(ViT(ViTConfig(image_size=16, patch_size=4, width=16, depth=1, mlp_dim=32, num_heads=2,
                                         pool_type="gap", dtype="float32"), rngs=nnx.Rngs(0)), "cls")


def test_evaluate_alignment_layer_search_and_outliers(decoder, vocab_path):
  rng = np.random.default_rng(5)
  pairs = [{"image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "caption": CAPTIONS[i % 6] + f" {i}."}
           for i in range(20)]
  text = alignment.caption_layer_features(decoder, vocab_path, [p["caption"] for p in pairs])
  from visual_priors.data.multimodal.pipeline import load_image  # pylint: disable=import-outside-toplevel
  lookup = {load_image(p["image"], 16).tobytes(): row for p, row in zip(pairs, text)}

  def layered(images):  # vision layer 0 is noise, layer 1 the LM's layer 1
    lm = np.stack([lookup[np.asarray(image, np.float32).tobytes()] for image in images])
    return np.stack([np.random.default_rng(len(images)).normal(size=(len(images), 32)), lm[:, 1]], axis=1)

  rows = alignment.evaluate_alignment(decoder, vocab_path, pairs, {"layered": layered}, k=3, layer="best",
                                      image_size=16, batch_size=20)
  assert rows[0]["benchmark"] == "alignment/layered" and rows[0]["value"] == 1.0
  assert rows.config["vision_models"]["layered"]["best_layers"] == [1, 1] and rows.config["blocks"] is None
  # Clamped on each side at its own threshold (PRH): the copy is no longer exact, the best pair stays.
  rows = alignment.evaluate_alignment(decoder, vocab_path, pairs, {"layered": layered}, k=3, layer="best",
                                      image_size=16, batch_size=20, outlier_quantile=0.95)
  assert rows.config["vision_models"]["layered"]["best_layers"] == [1, 1] and rows[0]["value"] > 0.8
  assert rows.config["outlier_quantile"] == 0.95
