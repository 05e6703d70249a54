"""Random-init Hugging Face DINOv2 towers written without torch: config.json + model.safetensors from a seed.

`write_random_dinov2(out_dir, seed=0, **shape)` writes what `Dinov2Model(config).save_pretrained(out_dir)`
would write for a random model (the same config.json fields and tensor names; transformers loads it, and
`hf.load_hf_vision` reads it), with weights drawn by numpy from `seed`: matrices, the class and mask tokens
and the position embeddings N(0, 0.02^2) (DINOv2's initializer_range), biases 0, LayerNorm scales 1, layer
scales `layerscale_value`. The files are byte-identical for one seed and shape (sorted config, one tensor
order), so their content hash, and the stage keys that hash it, is the same on every machine.

It stands in for a downloaded tower where no weights can be fetched (the demo's second alignment vision
model, `DEMO_TOWER`): a random tower's features still depend on the image, so mutual k-NN against it is a
measurement, of how much image-layout structure the LM's caption features share, not of a learned prior.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

from visual_priors.models.safetensors_io import ShardedWriter

# The demo's tower: DINOv2's layout at vit-nano's size (16 px images in 4 x 4 patches, width 32, 2 blocks);
# registered as encoder "dinov2-nano" (registry.py).
DEMO_TOWER: dict[str, Any] = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, mlp_ratio=2)
INIT_STD = 0.02


def dinov2_config(*, image_size: int, patch_size: int, hidden_size: int, num_hidden_layers: int,
                  num_attention_heads: int, mlp_ratio: int = 4, layerscale_value: float = 1.0) -> dict[str, Any]:
  """config.json of a Dinov2Model (the fields transformers' Dinov2Config writes that the shape needs)."""
  return {
      "architectures": ["Dinov2Model"], "model_type": "dinov2", "image_size": image_size, "patch_size": patch_size,
      "num_channels": 3, "hidden_size": hidden_size, "num_hidden_layers": num_hidden_layers,
      "num_attention_heads": num_attention_heads, "mlp_ratio": mlp_ratio, "hidden_act": "gelu",
      "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": INIT_STD,
      "layer_norm_eps": 1e-6, "qkv_bias": True, "layerscale_value": layerscale_value, "drop_path_rate": 0.0,
      "use_swiglu_ffn": False, "use_mask_token": True, "torch_dtype": "float32",
  }


def dinov2_tensors(config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
  """Tensor name -> (shape, init) of a Dinov2Model's state dict, in save order; init is "normal", "zeros",
  "ones" or "layer_scale"."""
  d, p = config["hidden_size"], config["patch_size"]
  grid = config["image_size"] // p
  mlp = int(d * config["mlp_ratio"])
  tensors: dict[str, tuple[tuple[int, ...], str]] = {
      "embeddings.cls_token": ((1, 1, d), "normal"), "embeddings.mask_token": ((1, d), "zeros"),
      "embeddings.position_embeddings": ((1, 1 + grid * grid, d), "normal"),
      "embeddings.patch_embeddings.projection.weight": ((d, config["num_channels"], p, p), "normal"),
      "embeddings.patch_embeddings.projection.bias": ((d,), "zeros"),
  }
  for i in range(config["num_hidden_layers"]):
    root = f"encoder.layer.{i}."
    tensors[root + "norm1.weight"], tensors[root + "norm1.bias"] = ((d,), "ones"), ((d,), "zeros")
    for name in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
                 "attention.output.dense"):
      tensors[root + name + ".weight"], tensors[root + name + ".bias"] = ((d, d), "normal"), ((d,), "zeros")
    tensors[root + "layer_scale1.lambda1"] = ((d,), "layer_scale")
    tensors[root + "norm2.weight"], tensors[root + "norm2.bias"] = ((d,), "ones"), ((d,), "zeros")
    tensors[root + "mlp.fc1.weight"], tensors[root + "mlp.fc1.bias"] = ((mlp, d), "normal"), ((mlp,), "zeros")
    tensors[root + "mlp.fc2.weight"], tensors[root + "mlp.fc2.bias"] = ((d, mlp), "normal"), ((d,), "zeros")
    tensors[root + "layer_scale2.lambda1"] = ((d,), "layer_scale")
  tensors["layernorm.weight"], tensors["layernorm.bias"] = ((d,), "ones"), ((d,), "zeros")
  return tensors


def write_random_dinov2(out_dir: str | os.PathLike[str], *, seed: int = 0, **shape: Any) -> pathlib.Path:
  """Writes config.json and model.safetensors of a random Dinov2Model of `shape` (`dinov2_config`'s
  arguments; default `DEMO_TOWER`) into `out_dir` (created); returns it. Deterministic in (seed, shape)."""
  config = dinov2_config(**(shape or DEMO_TOWER))
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  tensors = dinov2_tensors(config)
  writer = ShardedWriter(out_dir, {name: (shape_, np.float32) for name, (shape_, _) in tensors.items()})
  rng = np.random.default_rng(seed)
  for name, (shape_, init) in tensors.items():
    if init == "normal":
      value = rng.standard_normal(shape_) * INIT_STD
    elif init == "layer_scale":
      value = np.full(shape_, config["layerscale_value"])
    else:
      value = np.full(shape_, 1.0 if init == "ones" else 0.0)
    writer.write(name, value.astype(np.float32))
  writer.close()
  (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
  return out_dir
