"""big_vision .npz loading: the exact layout (unscanned, scanned) against a numpy forward pass; errors."""

from __future__ import annotations

import math
import zipfile

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from visual_priors.models.vision import (TextConfig, TwoTower, ViT, ViTConfig, load_big_vision_npz,
                                         sigmoid_loss)

IMG = ViTConfig(image_size=16, patch_size=4, width=16, depth=2, mlp_dim=24, num_heads=2,
                pool_type="map", dtype="float32")
TXT = TextConfig(vocab_size=40, width=16, depth=2, mlp_dim=20, num_heads=4, max_len=6, dtype="float32")
EMBED = 8
# The released SigLIP files are scanned and have no image head (big_vision out_dim (None, width));
# the unscanned layout here has heads on both towers, so both shapes of file are covered.
SIGLIP_LIKE = {False: EMBED, True: (None, IMG.width)}


# ---- The layout, written out by hand from big_vision's vit.py / text_transformer.py / two_towers.py.

def _block_shapes(d: int, heads: int, mlp: int) -> dict[str, tuple[int, ...]]:
  dh = d // heads
  shapes = {"LayerNorm_0/scale": (d,), "LayerNorm_0/bias": (d,),
            "LayerNorm_1/scale": (d,), "LayerNorm_1/bias": (d,),
            "MlpBlock_0/Dense_0/kernel": (d, mlp), "MlpBlock_0/Dense_0/bias": (mlp,),
            "MlpBlock_0/Dense_1/kernel": (mlp, d), "MlpBlock_0/Dense_1/bias": (d,),
            "MultiHeadDotProductAttention_0/out/kernel": (heads, dh, d),
            "MultiHeadDotProductAttention_0/out/bias": (d,)}
  for name in ("query", "key", "value"):
    shapes[f"MultiHeadDotProductAttention_0/{name}/kernel"] = (d, heads, dh)
    shapes[f"MultiHeadDotProductAttention_0/{name}/bias"] = (heads, dh)
  return shapes


def _layout(scanned: bool) -> dict[str, tuple[int, ...]]:
  d, n = IMG.width, (IMG.image_size // IMG.patch_size) ** 2
  shapes = {"img/embedding/kernel": (IMG.patch_size, IMG.patch_size, 3, d), "img/embedding/bias": (d,),
            "img/pos_embedding": (1, n, d), "img/Transformer/encoder_norm/scale": (d,),
            "img/Transformer/encoder_norm/bias": (d,), "img/MAPHead_0/probe": (1, 1, d),
            "txt/Embed_0/embedding": (TXT.vocab_size, TXT.width),
            "txt/pos_embedding": (1, TXT.max_len, TXT.width),
            "txt/Encoder_0/encoder_norm/scale": (TXT.width,), "txt/Encoder_0/encoder_norm/bias": (TXT.width,),
            "t": (1,), "b": (1,)}
  embed = IMG.width if scanned else EMBED
  if not scanned:
    shapes.update({"img/head/kernel": (d, EMBED), "img/head/bias": (EMBED,)})
  shapes.update({"txt/head/kernel": (TXT.width, embed), "txt/head/bias": (embed,)})
  for key, shape in _block_shapes(d, IMG.num_heads, IMG.mlp_dim).items():
    if not key.startswith("LayerNorm_1"):  # The MAP head has one LayerNorm.
      shapes[f"img/MAPHead_0/{key}"] = shape
  for tower, root, cfg in (("img", "Transformer", IMG), ("txt", "Encoder_0", TXT)):
    for key, shape in _block_shapes(cfg.width, cfg.num_heads, cfg.mlp_dim).items():
      if scanned:
        shapes[f"{tower}/{root}/encoderblock/{key}"] = (cfg.depth,) + shape
      else:
        for layer in range(cfg.depth):
          shapes[f"{tower}/{root}/encoderblock_{layer}/{key}"] = shape
  return shapes


def _random_arrays(scanned: bool, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  arrays = {key: rng.normal(0, 0.3, shape).astype(np.float32) for key, shape in _layout(scanned).items()}
  for key in arrays:
    if key.endswith("/scale"):
      arrays[key] = (1 + arrays[key]).astype(np.float32)
  arrays["t"] = np.array([math.log(7.0)], np.float32)
  arrays["b"] = np.array([-3.0], np.float32)
  return arrays


# ---- An independent numpy forward pass over the big_vision arrays.

def _layer_norm(x, p, name):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-6) * p[f"{name}/scale"] + p[f"{name}/bias"]


def _gelu(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _attention(queries, inputs, p, name):
  q = np.einsum("bld,dnh->bnlh", queries, p[f"{name}/query/kernel"]) + p[f"{name}/query/bias"][:, None]
  k = np.einsum("bld,dnh->bnlh", inputs, p[f"{name}/key/kernel"]) + p[f"{name}/key/bias"][:, None]
  v = np.einsum("bld,dnh->bnlh", inputs, p[f"{name}/value/kernel"]) + p[f"{name}/value/bias"][:, None]
  scores = np.einsum("bnqh,bnkh->bnqk", q, k) / np.sqrt(q.shape[-1])
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = np.einsum("bnqk,bnkh->bnqh", weights, v)
  return np.einsum("bnqh,nhd->bqd", out, p[f"{name}/out/kernel"]) + p[f"{name}/out/bias"]


def _mlp(x, p, name):
  hidden = _gelu(x @ p[f"{name}/Dense_0/kernel"] + p[f"{name}/Dense_0/bias"])
  return hidden @ p[f"{name}/Dense_1/kernel"] + p[f"{name}/Dense_1/bias"]


def _encoder(x, p, root, depth):
  for layer in range(depth):
    block = f"{root}/encoderblock_{layer}"
    y = _layer_norm(x, p, f"{block}/LayerNorm_0")
    x = x + _attention(y, y, p, f"{block}/MultiHeadDotProductAttention_0")
    x = x + _mlp(_layer_norm(x, p, f"{block}/LayerNorm_1"), p, f"{block}/MlpBlock_0")
  return _layer_norm(x, p, f"{root}/encoder_norm")


def _numpy_image_tower(images, p):
  b, size, _, c = images.shape
  patch, grid = IMG.patch_size, size // IMG.patch_size
  # Patches in raster order, each flattened (row, column, channel) to match an HWIO kernel.
  patches = images.reshape(b, grid, patch, grid, patch, c).transpose(0, 1, 3, 2, 4, 5)
  patches = patches.reshape(b, grid * grid, patch * patch * c)
  kernel = p["img/embedding/kernel"].reshape(patch * patch * c, -1)
  x = patches @ kernel + p["img/embedding/bias"] + p["img/pos_embedding"]
  tokens = _encoder(x, p, "img/Transformer", IMG.depth)
  probe = np.broadcast_to(p["img/MAPHead_0/probe"], (b, 1, IMG.width))
  pooled = _attention(probe, tokens, p, "img/MAPHead_0/MultiHeadDotProductAttention_0")
  pooled = pooled + _mlp(_layer_norm(pooled, p, "img/MAPHead_0/LayerNorm_0"), p, "img/MAPHead_0/MlpBlock_0")
  pooled = pooled[:, 0]
  if "img/head/kernel" in p:
    pooled = pooled @ p["img/head/kernel"] + p["img/head/bias"]
  return pooled, tokens


def _numpy_text_tower(tokens, p):
  x = p["txt/Embed_0/embedding"][tokens] + p["txt/pos_embedding"][:, :tokens.shape[1]]
  x = _encoder(x, p, "txt/Encoder_0", TXT.depth)
  return x[:, -1] @ p["txt/head/kernel"] + p["txt/head/bias"]


def _unrolled(arrays):
  result = {}
  for key, value in arrays.items():
    if "/encoderblock/" in key:
      head, tail = key.split("/encoderblock/")
      for layer in range(value.shape[0]):
        result[f"{head}/encoderblock_{layer}/{tail}"] = value[layer]
    else:
      result[key] = value
  return result


def _inputs():
  images = np.random.default_rng(1).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
  tokens = np.random.default_rng(2).integers(0, TXT.vocab_size, (3, TXT.max_len)).astype(np.int32)
  return images, tokens


def _model(scanned: bool = False) -> TwoTower:
  return TwoTower(IMG, TXT, SIGLIP_LIKE[scanned], rngs=nnx.Rngs(0))


@nnx.jit
def _two_tower_outputs(model, images, tokens):
  zimg, ztxt = model(images, tokens)
  return zimg, ztxt, model.img(images)[1], sigmoid_loss(zimg, ztxt, model.t[...], model.b[...])


@pytest.mark.parametrize("scanned", [False, True])
def test_two_tower_matches_numpy_forward_of_the_npz(tmp_path, scanned):
  arrays = _random_arrays(scanned)
  path = tmp_path / "siglip.npz"
  np.savez(path, **arrays)
  model = load_big_vision_npz(path, _model(scanned))
  images, tokens = _inputs()
  zimg, ztxt, patch_tokens, loss = _two_tower_outputs(model, jnp.asarray(images), jnp.asarray(tokens))

  p = _unrolled({key: value.astype(np.float64) for key, value in arrays.items()})
  ref_img, ref_tokens = _numpy_image_tower(images.astype(np.float64), p)
  ref_txt = _numpy_text_tower(tokens, p)
  ref_zimg = ref_img / (np.linalg.norm(ref_img, axis=-1, keepdims=True) + 1e-8)
  ref_ztxt = ref_txt / (np.linalg.norm(ref_txt, axis=-1, keepdims=True) + 1e-8)
  logits = 7.0 * ref_zimg @ ref_ztxt.T - 3.0
  signs = 2 * np.eye(3) - 1
  ref_loss = np.mean(np.sum(np.log1p(np.exp(-signs * logits)), axis=-1))

  np.testing.assert_allclose(np.asarray(patch_tokens), ref_tokens, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(zimg), ref_zimg, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(ztxt), ref_ztxt, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)


def test_lone_vit_loads_the_image_tower_of_a_two_tower_file_and_an_unprefixed_file(tmp_path):
  arrays = _random_arrays(scanned=False)
  two_tower_file = tmp_path / "siglip.npz"
  np.savez(two_tower_file, **arrays)
  vit_file = tmp_path / "vit.npz"
  np.savez(vit_file, **{key[len("img/"):]: value for key, value in arrays.items() if key.startswith("img/")})
  images, _ = _inputs()
  p = _unrolled({key: value.astype(np.float64) for key, value in arrays.items()})
  ref_pooled, _ = _numpy_image_tower(images.astype(np.float64), p)
  config = ViTConfig(**{**IMG.__dict__, "num_classes": EMBED})
  for path in (two_tower_file, vit_file):
    vit = load_big_vision_npz(path, ViT(config, rngs=nnx.Rngs(3)))
    pooled, _ = nnx.jit(lambda m, x: m(x))(vit, jnp.asarray(images))
    np.testing.assert_allclose(np.asarray(pooled), ref_pooled, rtol=1e-4, atol=1e-4)


def test_pool_none_vit_loads_siglip_tokens_when_told_to_skip_the_head(tmp_path):
  arrays = _random_arrays(scanned=True)
  path = tmp_path / "siglip.npz"
  np.savez(path, **arrays)
  vit = ViT(ViTConfig(**{**IMG.__dict__, "pool_type": "none"}), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="(?s)unexpected img/MAPHead_0/.*MAP pooling head"):
    load_big_vision_npz(path, vit)
  load_big_vision_npz(path, vit, ignore=(r"img/MAPHead_0/.*", r"img/head/.*"))
  images, _ = _inputs()
  _, ref_tokens = _numpy_image_tower(images.astype(np.float64),
                                     _unrolled({k: v.astype(np.float64) for k, v in arrays.items()}))
  pooled, tokens = vit(jnp.asarray(images))
  assert pooled is None
  np.testing.assert_allclose(np.asarray(tokens), ref_tokens, rtol=1e-4, atol=1e-4)


def test_missing_extra_and_mismatched_keys_are_all_named(tmp_path):
  arrays = _random_arrays(scanned=False)
  del arrays["img/MAPHead_0/probe"]
  arrays["img/head/kernel"] = np.zeros((IMG.width, EMBED + 1), np.float32)
  arrays["txt/unused/kernel"] = np.zeros((2, 2), np.float32)
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  model = _model()
  before = np.asarray(model.img.head.kernel[...]).copy()
  with pytest.raises(ValueError) as error:
    load_big_vision_npz(path, model)
  message = str(error.value)
  assert "missing img/MAPHead_0/probe: expected shape (1, 1, 16)" in message
  assert "mismatched img/head/kernel: expected shape (16, 8), found (16, 9)" in message
  assert "unexpected txt/unused/kernel: shape (2, 2)" in message
  np.testing.assert_array_equal(np.asarray(model.img.head.kernel[...]), before)  # Nothing half-loaded.


def test_scanned_stack_with_the_wrong_depth_is_named(tmp_path):
  arrays = _random_arrays(scanned=True)
  key = "img/Transformer/encoderblock/LayerNorm_0/scale"
  arrays[key] = np.ones((IMG.depth + 1, IMG.width), np.float32)
  path = tmp_path / "deeper.npz"
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=r"unexpected img/Transformer/encoderblock_2/LayerNorm_0/scale"):
    load_big_vision_npz(path, _model(scanned=True))


def test_corrupt_truncated_and_absent_files_fail_clearly(tmp_path):
  path = tmp_path / "siglip.npz"
  np.savez(path, **_random_arrays(scanned=False))
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  with pytest.raises(ValueError, match="not a readable .npz archive"):
    load_big_vision_npz(truncated, _model())
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(b"not a zip file at all")
  with pytest.raises(ValueError, match="not a readable .npz archive"):
    load_big_vision_npz(garbage, _model())
  single = tmp_path / "single.npy"
  np.save(single, np.zeros(3))
  with pytest.raises(ValueError, match="single array"):
    load_big_vision_npz(single, _model())
  with pytest.raises(FileNotFoundError, match="No checkpoint file"):
    load_big_vision_npz(tmp_path / "absent.npz", _model())


def test_corrupt_member_crc_fails_clearly(tmp_path):
  path = tmp_path / "siglip.npz"
  np.savez(path, **_random_arrays(scanned=False))
  data = bytearray(path.read_bytes())
  with zipfile.ZipFile(path) as archive:
    info = archive.getinfo("t.npy")
  # Flip a byte inside the stored (uncompressed) member's data: the CRC check must catch it.
  start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size - 1
  data[start] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.raises(ValueError, match="not a readable .npz archive"):
    load_big_vision_npz(path, _model())


def test_bfloat16_file_loads_into_float32_parameters(tmp_path):
  arrays = {key: value.astype(ml_dtypes.bfloat16) for key, value in _random_arrays(False).items()}
  path = tmp_path / "bf16.npz"
  np.savez(path, **arrays)
  model = load_big_vision_npz(path, _model())
  assert model.img.pos_embedding[...].dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(model.img.pos_embedding[...]),
                                arrays["img/pos_embedding"].astype(np.float32))
  assert jax.tree.leaves(nnx.state(model, nnx.Param))[0].dtype == jnp.float32


def test_non_float_arrays_are_refused(tmp_path):
  arrays = _random_arrays(scanned=False)
  arrays["t"] = np.array([3], np.int32)
  path = tmp_path / "ints.npz"
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match="array 't' has dtype int32, not a float"):
    load_big_vision_npz(path, _model())
