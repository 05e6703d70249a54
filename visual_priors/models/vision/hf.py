"""Loading Hugging Face vision checkpoints (SigLIP, CLIP / MetaCLIP, DINOv2, MAE) into the framework's ViT.

A checkpoint is a directory as `save_pretrained` writes it: `config.json` and `model.safetensors` (or
shards named by `model.safetensors.index.json`); `preprocessor_config.json`, when present, gives the
pixel mean / std. The classes and what each becomes (`vit_config_from_hf`):

  model_type (class)                          ViT variant
  siglip_vision_model / siglip                pool "map" (the MAP head; "none" without vision_use_head),
    (SiglipVisionModel / SiglipModel)         tanh-GELU, eps 1e-6, mean / std 0.5 (images in [-1, 1])
  clip_vision_model / clip (CLIPVisionModel,  class_token, pre_norm, patch embedding without bias, the
    CLIPModel; MetaCLIP uses these classes)   final norm on the class token only (pool "tok",
                                              norm_tokens False), quick-GELU, eps 1e-5, CLIP's mean / std
  dinov2 (Dinov2Model)                        class_token, layer_scale, SwiGLU MLP when use_swiglu_ffn
                                              (ViT-g), pool "tok", eps 1e-6, ImageNet mean / std
  vit_mae (ViTMAEModel)                       class_token, pool "tok", exact GELU, eps 1e-12, ImageNet
                                              mean / std; no masking (all patches, in order)

Weights map one to one (torch Linear (out, in) -> kernels (in, heads, head_dim) etc.; the fused
in-projection of SigLIP's MAP head split in three; DINOv2's gate / up projections concatenated into
fc1). The checkpoint's position embeddings are resampled bicubically (torch's `interpolate(...,
mode="bicubic", align_corners=False)`, as DINOv2 does at run time) when the tower's image size gives
another patch grid, e.g. DINOv2's 37 x 37 (518 px) to 16 x 16 at 224 px. Keys of other parts
(text tower, logit scale / bias, projections, DINOv2's mask token, MAE's decoder) are not the vision
tower's and are skipped; every vision key must be used and every parameter found, else a ValueError
names the first keys that differ.

`load_hf_vision(directory, config=None)` -> ViT; `config` defaults to `vit_config_from_hf(directory)`
(give one to pick the image size, the feature layer, the dtype); `with_hf_weights(get_encoder(name),
directory)` is that config for a registered encoder, checked against the checkpoint. Outputs match
transformers' forward (`last_hidden_state` patch tokens, `pooler_output`) within 1e-4 in float32
(tests/models/test_vision_hf.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from visual_priors.models.vision.vit import ViT, ViTConfig
from visual_priors.names import lookup

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# model_type -> family; the two-tower types keep their image tower's settings in `vision_config`.
MODEL_TYPES = {"siglip_vision_model": "siglip", "siglip": "siglip", "clip_vision_model": "clip", "clip": "clip",
               "dinov2": "dinov2", "vit_mae": "mae"}
_ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
                "gelu": "gelu", "quick_gelu": "quick_gelu"}
_PIXELS = {"siglip": ((0.5,) * 3, (0.5,) * 3), "clip": (CLIP_MEAN, CLIP_STD),
           "dinov2": (IMAGENET_MEAN, IMAGENET_STD), "mae": (IMAGENET_MEAN, IMAGENET_STD)}
# Prefixes under which a model class nests the vision tower (stripped), per family.
_TOWER_PREFIXES = {"siglip": ("vision_model.",), "clip": ("vision_model.",), "dinov2": ("dinov2.",),
                   "mae": ("vit.",)}
# Keys that belong to no part of the vision tower (after the prefix is stripped).
_NOT_VISION = re.compile(r"^(text_model\..*|logit_scale|logit_bias|visual_projection\..*|text_projection\..*|"
                         r"embeddings\.mask_token|embeddings\.position_ids|decoder\..*|classifier\..*|"
                         r"pooler\..*|.*\.num_batches_tracked)$")
_MAX_LISTED = 8


# ------------------------------------------------------------------------------------------------ configs


def _read_json(path: pathlib.Path) -> dict[str, Any]:
  with open(path, encoding="utf-8") as handle:
    return json.load(handle)


def read_hf_config(directory: str | os.PathLike) -> dict[str, Any]:
  """config.json of a checkpoint directory (FileNotFoundError naming what is missing)."""
  path = pathlib.Path(directory) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"No config.json in {os.fspath(directory)!r}: a Hugging Face checkpoint is a directory "
                            "as save_pretrained writes it (config.json + model.safetensors).")
  return _read_json(path)


def family_of(hf_config: Mapping[str, Any]) -> str:
  """"siglip", "clip", "dinov2" or "mae" for a config.json (unknown model types fail with the closest)."""
  return lookup(MODEL_TYPES, hf_config.get("model_type", ""), "Hugging Face vision model_type")


def _vision_part(hf_config: Mapping[str, Any]) -> dict[str, Any]:
  if hf_config.get("model_type") in ("siglip", "clip"):
    return dict(hf_config.get("vision_config") or {})
  return dict(hf_config)


def vit_config_from_hf(source: str | os.PathLike | Mapping[str, Any], *, image_size: int | None = None,
                       feature_layer: int | None = None, dtype: str = "float32",
                       pixel_mean: tuple[float, ...] | None = None,
                       pixel_std: tuple[float, ...] | None = None) -> ViTConfig:
  """The ViTConfig of a Hugging Face vision checkpoint (a directory or its config.json as a dict).

  `image_size` defaults to the checkpoint's (another size resamples the position embeddings on load);
  the pixel mean / std default to preprocessor_config.json's, else the family's.
  """
  hf = read_hf_config(source) if not isinstance(source, Mapping) else dict(source)
  family = family_of(hf)
  vision = _vision_part(hf)
  defaults = {"siglip": dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                             num_attention_heads=12, intermediate_size=3072, hidden_act="gelu_pytorch_tanh",
                             layer_norm_eps=1e-6),
              "clip": dict(image_size=224, patch_size=32, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072, hidden_act="quick_gelu",
                           layer_norm_eps=1e-5),
              "dinov2": dict(image_size=224, patch_size=14, hidden_size=768, num_hidden_layers=12,
                             num_attention_heads=12, mlp_ratio=4, hidden_act="gelu", layer_norm_eps=1e-6),
              "mae": dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                          num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                          layer_norm_eps=1e-12)}[family]
  vision = {**defaults, **vision}
  for field in ("image_size", "patch_size"):
    if isinstance(vision[field], (list, tuple)):
      if len(set(vision[field])) != 1:
        raise ValueError(f"Only square {field}s are supported, got {vision[field]}.")
      vision[field] = vision[field][0]
  width = int(vision["hidden_size"])
  act = lookup(_ACTIVATIONS, vision["hidden_act"], "Hugging Face hidden_act")
  if family == "dinov2":
    mlp_dim = int(width * vision["mlp_ratio"])
    if vision.get("use_swiglu_ffn"):
      act, mlp_dim = "swiglu", (int(mlp_dim * 2 / 3) + 7) // 8 * 8
  else:
    mlp_dim = int(vision["intermediate_size"])
  mean, std = _PIXELS[family]
  if isinstance(source, (str, os.PathLike)):
    preprocessor = pathlib.Path(source) / "preprocessor_config.json"
    if preprocessor.is_file():
      settings = _read_json(preprocessor)
      mean, std = settings.get("image_mean", mean), settings.get("image_std", std)
  fields: dict[str, Any] = dict(
      image_size=int(image_size or vision["image_size"]), patch_size=int(vision["patch_size"]), width=width,
      depth=int(vision["num_hidden_layers"]), mlp_dim=mlp_dim, num_heads=int(vision["num_attention_heads"]),
      norm_eps=float(vision["layer_norm_eps"]), activation=act, dtype=dtype, feature_layer=feature_layer,
      pixel_mean=tuple(pixel_mean or mean), pixel_std=tuple(pixel_std or std),
      channels=int(vision.get("num_channels", 3)))
  if family == "siglip":
    fields.update(pool_type="map" if vision.get("vision_use_head", True) else "none")
  elif family == "clip":
    fields.update(pool_type="tok", class_token=True, pre_norm=True, norm_tokens=False, patch_bias=False)
  elif family == "dinov2":
    if vision.get("num_register_tokens"):
      raise ValueError("DINOv2 with register tokens (Dinov2WithRegistersModel) is not supported; use Dinov2Model.")
    fields.update(pool_type="tok", class_token=True, layer_scale=True)
  else:
    fields.update(pool_type="tok", class_token=True)
  return ViTConfig(**fields)


# Fields the checkpoint decides that a registered encoder must agree with (the rest are how it is used).
ARCHITECTURE_FIELDS = ("width", "depth", "mlp_dim", "num_heads", "patch_size", "channels", "class_token", "pre_norm",
                       "norm_tokens", "activation", "layer_scale", "patch_bias")


def with_hf_weights(config: ViTConfig, directory: str | os.PathLike) -> ViTConfig:
  """`config` (a registered encoder, `get_encoder(name)`) as it loads the checkpoint in `directory`.

  The architecture (`ARCHITECTURE_FIELDS`) must be the checkpoint's, else a ValueError lists each difference;
  the image size, feature layer, dtypes, attention and remat settings are `config`'s; the pooling is the
  checkpoint's unless `config` has none (a feature extractor); the norm epsilon and the pixel mean / std are
  the checkpoint's (its preprocessor_config.json where present).
  """
  native = vit_config_from_hf(directory, image_size=config.image_size, feature_layer=config.feature_layer,
                              dtype=config.dtype)
  differ = [f"{name}: checkpoint {getattr(native, name)!r}, encoder {getattr(config, name)!r}"
            for name in ARCHITECTURE_FIELDS if getattr(native, name) != getattr(config, name)]
  if differ:
    raise ValueError(f"The Hugging Face checkpoint {os.fspath(directory)!r} is not this encoder's architecture: "
                     + "; ".join(differ) + ". Name the registered encoder of the checkpoint's size (or register "
                     "one: registry.register_encoder(name, hf.vit_config_from_hf(directory))).")
  return dataclasses.replace(native, pool_type="none" if config.pool_type == "none" else native.pool_type,
                             param_dtype=config.param_dtype, attention_impl=config.attention_impl,
                             remat=config.remat)


# ------------------------------------------------------------------------------------------------ weights


def read_safetensors(directory: str | os.PathLike) -> dict[str, np.ndarray]:
  """Every tensor of model.safetensors, or of the shards model.safetensors.index.json names."""
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel

  root = pathlib.Path(directory)
  single, index = root / "model.safetensors", root / "model.safetensors.index.json"
  if single.is_file():
    return load_file(single)
  if index.is_file():
    arrays: dict[str, np.ndarray] = {}
    for shard in sorted(set(_read_json(index)["weight_map"].values())):
      arrays.update(load_file(root / shard))
    return arrays
  raise FileNotFoundError(f"No model.safetensors (or model.safetensors.index.json) in {os.fspath(directory)!r}; "
                          "save the model with save_pretrained (safe_serialization, the default).")


def _bicubic_matrix(size_in: int, size_out: int) -> np.ndarray:
  """(size_out, size_in) weights of torch's bicubic resize (A = -0.75, align_corners=False, edge clamp)."""
  a = -0.75
  matrix = np.zeros((size_out, size_in), np.float64)
  scale = size_in / size_out
  for out in range(size_out):
    real = scale * (out + 0.5) - 0.5
    base = int(np.floor(real))
    t = real - base
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # |x| <= 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2
    for offset, weight in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t))):
      matrix[out, min(max(base + offset, 0), size_in - 1)] += weight
  return matrix


def resample_positions(table: np.ndarray, grid_out: int, class_rows: int) -> np.ndarray:
  """(1, class_rows + g*g, D) -> (1, class_rows + grid_out^2, D): the patch grid resampled bicubically."""
  head, grid = table[:, :class_rows], table[:, class_rows:]
  grid_in = int(round(np.sqrt(grid.shape[1])))
  if grid_in * grid_in != grid.shape[1]:
    raise ValueError(f"Position embeddings of {grid.shape[1]} patches are not a square grid.")
  if grid_in == grid_out:
    return table
  m = _bicubic_matrix(grid_in, grid_out)
  square = grid.reshape(grid_in, grid_in, -1).astype(np.float64)
  resized = np.einsum("yi,ijd,xj->yxd", m, square, m).reshape(1, grid_out * grid_out, -1)
  return np.concatenate([head, resized.astype(table.dtype)], axis=1)


def _linear(prefix: str, hf: Mapping[str, np.ndarray], used: set[str]) -> tuple[np.ndarray, np.ndarray]:
  used.update((prefix + ".weight", prefix + ".bias"))
  return hf[prefix + ".weight"], hf[prefix + ".bias"]


def _attention(out: dict[str, np.ndarray], path: str, q, k, v, o, heads: int) -> None:
  """torch (out, in) weights of q, k, v, out projections -> the MultiHeadAttention's kernels and biases."""
  for name, (weight, bias) in (("query", q), ("key", k), ("value", v)):
    d = weight.shape[1]
    out[f"{path}/{name}/kernel"] = weight.T.reshape(d, heads, -1)
    out[f"{path}/{name}/bias"] = bias.reshape(heads, -1)
  weight, bias = o
  out[f"{path}/out/kernel"] = weight.T.reshape(heads, -1, weight.shape[0])
  out[f"{path}/out/bias"] = bias


def _norm(out: dict[str, np.ndarray], path: str, prefix: str, hf: Mapping[str, np.ndarray], used: set[str]) -> None:
  weight, bias = _linear(prefix, hf, used)
  out[f"{path}/scale"], out[f"{path}/bias"] = weight, bias


def _mlp(out: dict[str, np.ndarray], path: str, fc1, fc2) -> None:
  out[f"{path}/fc1/kernel"], out[f"{path}/fc1/bias"] = fc1[0].T, fc1[1]
  out[f"{path}/fc2/kernel"], out[f"{path}/fc2/bias"] = fc2[0].T, fc2[1]


def _block_names(family: str) -> dict[str, str]:
  if family in ("siglip", "clip"):
    return dict(root="encoder.layers.{i}.", attn_norm="layer_norm1", mlp_norm="layer_norm2", q="self_attn.q_proj",
                k="self_attn.k_proj", v="self_attn.v_proj", o="self_attn.out_proj", fc1="mlp.fc1", fc2="mlp.fc2")
  if family == "dinov2":
    return dict(root="encoder.layer.{i}.", attn_norm="norm1", mlp_norm="norm2", q="attention.attention.query",
                k="attention.attention.key", v="attention.attention.value", o="attention.output.dense",
                fc1="mlp.fc1", fc2="mlp.fc2")
  return dict(root="encoder.layer.{i}.", attn_norm="layernorm_before", mlp_norm="layernorm_after",
              q="attention.attention.query", k="attention.attention.key", v="attention.attention.value",
              o="attention.output.dense", fc1="intermediate.dense", fc2="output.dense")


def hf_vision_params(hf: Mapping[str, np.ndarray], config: ViTConfig, family: str) -> tuple[dict[str, np.ndarray],
                                                                                               set[str]]:
  """({ViT parameter path: array}, the checkpoint keys used) for a family's tower (prefix already stripped).

  Raises KeyError for a checkpoint key the family's layout needs and the file lacks (the caller words it).
  """
  used: set[str] = set()
  out: dict[str, np.ndarray] = {}
  heads = config.num_heads
  emb = "embeddings.patch_embedding" if family in ("siglip", "clip") else "embeddings.patch_embeddings.projection"
  used.add(emb + ".weight")
  out["embedding/kernel"] = hf[emb + ".weight"].transpose(2, 3, 1, 0)
  if config.patch_bias:
    used.add(emb + ".bias")
    out["embedding/bias"] = hf[emb + ".bias"]
  if family in ("siglip", "clip"):
    used.add("embeddings.position_embedding.weight")
    positions = hf["embeddings.position_embedding.weight"][None]
  else:
    used.add("embeddings.position_embeddings")
    positions = hf["embeddings.position_embeddings"]
  out["pos_embedding"] = resample_positions(positions, config.grid_size, int(config.class_token))
  if family == "clip":
    used.add("embeddings.class_embedding")
    out["cls"] = hf["embeddings.class_embedding"].reshape(1, 1, -1)
    _norm(out, "pre_norm", "pre_layrnorm", hf, used)
    _norm(out, "transformer/encoder_norm", "post_layernorm", hf, used)
  elif family == "siglip":
    _norm(out, "transformer/encoder_norm", "post_layernorm", hf, used)
  else:
    used.add("embeddings.cls_token")
    out["cls"] = hf["embeddings.cls_token"].reshape(1, 1, -1)
    _norm(out, "transformer/encoder_norm", "layernorm", hf, used)
  names = _block_names(family)
  for i in range(config.depth):
    root, path = names["root"].format(i=i), f"transformer/blocks/{i}"
    _norm(out, f"{path}/attn_norm", root + names["attn_norm"], hf, used)
    _norm(out, f"{path}/mlp_norm", root + names["mlp_norm"], hf, used)
    _attention(out, f"{path}/attn", *(_linear(root + names[n], hf, used) for n in ("q", "k", "v", "o")), heads)
    if config.activation == "swiglu":
      if root + "mlp.weights_in.weight" in hf:  # transformers 4's fused (2F, D): silu(first half) * second half
        fc1 = _linear(root + "mlp.weights_in", hf, used)
        fc2 = _linear(root + "mlp.weights_out", hf, used)
      else:
        gate, up = _linear(root + "mlp.gate_proj", hf, used), _linear(root + "mlp.up_proj", hf, used)
        fc1 = (np.concatenate([gate[0], up[0]], axis=0), np.concatenate([gate[1], up[1]]))
        fc2 = _linear(root + "mlp.down_proj", hf, used)
    else:
      fc1, fc2 = _linear(root + names["fc1"], hf, used), _linear(root + names["fc2"], hf, used)
    _mlp(out, f"{path}/mlp", fc1, fc2)
    if config.layer_scale:
      used.update((root + "layer_scale1.lambda1", root + "layer_scale2.lambda1"))
      out[f"{path}/ls1"], out[f"{path}/ls2"] = hf[root + "layer_scale1.lambda1"], hf[root + "layer_scale2.lambda1"]
  if config.pool_type == "map":
    used.add("head.probe")
    out["map_head/probe"] = hf["head.probe"]
    used.update(("head.attention.in_proj_weight", "head.attention.in_proj_bias"))
    q, k, v = np.split(hf["head.attention.in_proj_weight"], 3, axis=0)
    qb, kb, vb = np.split(hf["head.attention.in_proj_bias"], 3)
    _attention(out, "map_head/attn", (q, qb), (k, kb), (v, vb), _linear("head.attention.out_proj", hf, used), heads)
    _norm(out, "map_head/norm", "head.layernorm", hf, used)
    _mlp(out, "map_head/mlp", _linear("head.mlp.fc1", hf, used), _linear("head.mlp.fc2", hf, used))
  return out, used


def _tower_arrays(arrays: Mapping[str, np.ndarray], family: str) -> dict[str, np.ndarray]:
  for prefix in _TOWER_PREFIXES[family]:
    if any(key.startswith(prefix) for key in arrays):
      return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
  return dict(arrays)


def load_hf_vision(directory: str | os.PathLike, config: ViTConfig | None = None, *,
                   rngs: nnx.Rngs | None = None) -> ViT:
  """A ViT holding a Hugging Face vision checkpoint (see the module docstring); `config` defaults to the
  checkpoint's own (`vit_config_from_hf`). Raises ValueError naming the keys that do not fit."""
  hf_config = read_hf_config(directory)
  family = family_of(hf_config)
  native = vit_config_from_hf(directory)
  config = config or native
  fixed = ("width", "depth", "mlp_dim", "num_heads", "patch_size", "class_token", "pre_norm", "norm_tokens",
           "activation", "layer_scale", "patch_bias", "channels")
  differ = [f"{name}: checkpoint {getattr(native, name)!r}, config {getattr(config, name)!r}" for name in fixed
            if getattr(native, name) != getattr(config, name)]
  if config.pool_type not in (native.pool_type, "none") or (config.pool_type == "none" and config.num_classes):
    differ.append(f"pool_type: checkpoint {native.pool_type!r}, config {config.pool_type!r} (only the checkpoint's "
                  "or 'none' without a head)")
  if config.pool_type != "none" and config.num_classes:
    differ.append(f"num_classes: the checkpoint's vision tower has no head, config {config.num_classes}")
  if differ:
    raise ValueError(f"Checkpoint {os.fspath(directory)!r} ({family}) does not fit the config: " + "; ".join(differ)
                     + ". Build the config with vit_config_from_hf(directory, image_size=..., feature_layer=...).")
  arrays = _tower_arrays(read_safetensors(directory), family)
  try:
    values, used = hf_vision_params(arrays, config, family)
  except KeyError as error:
    raise ValueError(f"Checkpoint {os.fspath(directory)!r} lacks {error.args[0]!r}, which a {family} vision tower "
                     f"of depth {config.depth} needs; is config.json ({hf_config.get('model_type')}) the one saved "
                     "with these weights?") from None
  unused = sorted(key for key in set(arrays) - used if not _NOT_VISION.fullmatch(key))
  if config.pool_type == "none" and native.pool_type == "map":
    unused = [key for key in unused if not key.startswith("head.")]  # SigLIP's MAP head, not built
  # Built abstract (no random init: a ViT-L's would take longer than reading the file), then filled.
  graphdef, state = nnx.split(nnx.eval_shape(lambda: ViT(config, rngs=rngs or nnx.Rngs(0))))
  expected = {"/".join(map(str, path)): variable for path, variable in nnx.to_flat_state(state)}
  problems = [f"unused checkpoint key {key} {tuple(arrays[key].shape)}" for key in unused]
  problems += [f"missing {path}: expected shape {tuple(v.shape)}" for path, v in expected.items() if path not in values]
  problems += [f"mismatched {path}: expected shape {tuple(v.shape)}, converted {tuple(values[path].shape)}"
               for path, v in expected.items() if path in values and tuple(values[path].shape) != tuple(v.shape)]
  if problems:
    listed = "\n  ".join(problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise ValueError(f"Checkpoint {os.fspath(directory)!r} ({family}) does not fit the ViT:\n  {listed}{more}")
  for path, variable in expected.items():
    variable.set_value(jax.numpy.asarray(np.asarray(values[path]).astype(variable.get_value().dtype)))
  return nnx.merge(graphdef, state)
