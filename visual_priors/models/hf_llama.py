"""The decoder as Hugging Face `LlamaForCausalLM` sees it: config.json fields and the tensor name/layout map.

  framework path                         Hugging Face tensor                          layout change
  embedder/embedding (V, D)              model.embed_tokens.weight (V, D)             none
  layers/i/attn_norm/scale (D,)          model.layers.i.input_layernorm.weight        none
  layers/i/attn/q_proj/kernel (D, N, H)  model.layers.i.self_attn.q_proj.weight       (N*H, D) = reshape, transpose
  layers/i/attn/{k,v}_proj/kernel        model.layers.i.self_attn.{k,v}_proj.weight   (K*H, D) likewise
  layers/i/attn/o_proj/kernel (N, H, D)  model.layers.i.self_attn.o_proj.weight       (D, N*H)
  layers/i/mlp_norm/scale (D,)           model.layers.i.post_attention_layernorm.weight
  layers/i/mlp/{gate,up}/kernel (D, F)   model.layers.i.mlp.{gate,up}_proj.weight     (F, D) = transpose
  layers/i/mlp/down/kernel (F, D)        model.layers.i.mlp.down_proj.weight          (D, F) = transpose
  final_norm/scale (D,)                  model.norm.weight                            none
  lm_head/kernel (D, V)                  lm_head.weight (V, D), absent when tied      transpose

No permutation of q/k rows is needed: the decoder's RoPE rotates (first half, second half) pairs of a
head, exactly HF's `rotate_half`, with the same inverse frequencies theta^(-2i/H).

Both directions are views where numpy allows (a transpose, a split of one axis), so a memory-mapped HF
tensor is sliced per device shard without being read whole. Pure numpy: no framework or torch imports.

Token conventions written to config.json: eos 1, pad 0 and BOS 0, because pre-training starts every
packed example with id 0 (the pad id, seqio's decoder-input convention) and the scorers read documents
after it; the exported tokenizer therefore prepends id 0 (see visual_priors/interop/hf_tokenizer.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from visual_priors.models.decoder import DecoderConfig

PAD_ID, EOS_ID, BOS_ID = 0, 1, 0
ARCHITECTURE = "LlamaForCausalLM"
# Fields of DecoderConfig that a HF config decides and the shape fields of a scale (checked on import).
SHAPE_FIELDS = {"vocab_size": "vocab_size", "d_model": "hidden_size", "n_layers": "num_hidden_layers",
                "n_heads": "num_attention_heads", "n_kv_heads": "num_key_value_heads", "d_ff": "intermediate_size"}


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One parameter: its framework path, HF name, framework shape and HF shape."""

  path: str
  hf_name: str
  shape: tuple[int, ...]
  hf_shape: tuple[int, ...]
  kind: str  # "same", "transpose", "in_heads" (q/k/v: (D, N, H)), "out_heads" (o: (N, H, D))


def tensors(config: DecoderConfig) -> list[Tensor]:
  """Every parameter of `Decoder(config)` in HF's order (embeddings, layers, norm, lm_head)."""
  d, f, v, h = config.d_model, config.d_ff, config.vocab_size, config.head_dim
  n, k = config.n_heads, config.n_kv_heads
  out = [Tensor("embedder/embedding", "model.embed_tokens.weight", (v, d), (v, d), "same")]
  for i in range(config.n_layers):
    hf, fw = f"model.layers.{i}", f"layers/{i}"
    out += [
        Tensor(f"{fw}/attn_norm/scale", f"{hf}.input_layernorm.weight", (d,), (d,), "same"),
        Tensor(f"{fw}/attn/q_proj/kernel", f"{hf}.self_attn.q_proj.weight", (d, n, h), (n * h, d), "in_heads"),
        Tensor(f"{fw}/attn/k_proj/kernel", f"{hf}.self_attn.k_proj.weight", (d, k, h), (k * h, d), "in_heads"),
        Tensor(f"{fw}/attn/v_proj/kernel", f"{hf}.self_attn.v_proj.weight", (d, k, h), (k * h, d), "in_heads"),
        Tensor(f"{fw}/attn/o_proj/kernel", f"{hf}.self_attn.o_proj.weight", (n, h, d), (d, n * h), "out_heads"),
        Tensor(f"{fw}/mlp_norm/scale", f"{hf}.post_attention_layernorm.weight", (d,), (d,), "same"),
        Tensor(f"{fw}/mlp/gate/kernel", f"{hf}.mlp.gate_proj.weight", (d, f), (f, d), "transpose"),
        Tensor(f"{fw}/mlp/up/kernel", f"{hf}.mlp.up_proj.weight", (d, f), (f, d), "transpose"),
        Tensor(f"{fw}/mlp/down/kernel", f"{hf}.mlp.down_proj.weight", (f, d), (d, f), "transpose"),
    ]
  out.append(Tensor("final_norm/scale", "model.norm.weight", (d,), (d,), "same"))
  if not config.tie_embeddings:
    out.append(Tensor("lm_head/kernel", "lm_head.weight", (d, v), (v, d), "transpose"))
  return out


def to_hf(tensor: Tensor, value: np.ndarray) -> np.ndarray:
  """A framework array in HF's layout (a view where possible)."""
  if tuple(value.shape) != tensor.shape:
    raise ValueError(f"{tensor.path}: shape {tuple(value.shape)}, expected {tensor.shape}.")
  if tensor.kind == "same":
    return value
  if tensor.kind == "transpose":
    return value.T
  if tensor.kind == "in_heads":
    return value.reshape(tensor.shape[0], -1).T
  return value.reshape(-1, tensor.shape[-1]).T  # out_heads


def from_hf(tensor: Tensor, value: np.ndarray) -> np.ndarray:
  """A HF array in the framework's layout (a view: a transpose and a split of one axis)."""
  if tuple(value.shape) != tensor.hf_shape:
    raise ValueError(f"{tensor.hf_name}: shape {tuple(value.shape)}, expected {tensor.hf_shape}.")
  if tensor.kind == "same":
    return value
  if tensor.kind == "transpose":
    return value.T
  return value.T.reshape(tensor.shape)  # in_heads and out_heads: split the N*H axis


def hf_config(config: DecoderConfig, *, max_position_embeddings: int, torch_dtype: str) -> dict[str, Any]:
  """config.json of `LlamaForCausalLM` for a decoder (rope_theta both top level, as transformers 4 reads it,
  and in rope_parameters, as transformers 5 writes it)."""
  return {
      "architectures": [ARCHITECTURE],
      "model_type": "llama",
      "vocab_size": config.vocab_size,
      "hidden_size": config.d_model,
      "intermediate_size": config.d_ff,
      "num_hidden_layers": config.n_layers,
      "num_attention_heads": config.n_heads,
      "num_key_value_heads": config.n_kv_heads,
      "head_dim": config.head_dim,
      "hidden_act": "silu",
      "max_position_embeddings": int(max_position_embeddings),
      "rms_norm_eps": config.norm_eps,
      "rope_theta": config.rope_theta,
      "rope_scaling": None,
      "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
      "attention_bias": False,
      "attention_dropout": 0.0,
      "mlp_bias": False,
      "pretraining_tp": 1,
      "initializer_range": 0.02,
      "tie_word_embeddings": config.tie_embeddings,
      "bos_token_id": BOS_ID,
      "eos_token_id": EOS_ID,
      "pad_token_id": PAD_ID,
      "use_cache": True,
      "torch_dtype": torch_dtype,
      "dtype": torch_dtype,
  }


def _rope_theta(hf: Mapping[str, Any]) -> float:
  parameters = hf.get("rope_parameters") or {}
  scaling = hf.get("rope_scaling") or {}
  kind = parameters.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
  if kind != "default":
    raise ValueError(f"The checkpoint uses RoPE scaling {kind!r}; the decoder implements plain RoPE only "
                     "(rope_type 'default').")
  theta = parameters.get("rope_theta", hf.get("rope_theta", 10000.0))
  return float(theta)


def decoder_fields(hf: Mapping[str, Any]) -> dict[str, Any]:
  """DecoderConfig fields from a HF Llama config.json; raises for what the decoder cannot represent."""
  model_type = hf.get("model_type")
  if model_type not in ("llama", "mistral", None):
    raise ValueError(f"config.json has model_type {model_type!r}; only Llama-architecture checkpoints "
                     "(model_type 'llama') import.")
  for flag in ("attention_bias", "mlp_bias"):
    if hf.get(flag):
      raise ValueError(f"config.json sets {flag}; the decoder has no biases.")
  if hf.get("hidden_act", "silu") != "silu":
    raise ValueError(f"config.json has hidden_act {hf.get('hidden_act')!r}; the decoder's MLP is SwiGLU (silu).")
  if hf.get("sliding_window"):
    raise ValueError("config.json sets a sliding attention window; the decoder attends over the whole context.")
  try:
    fields = {name: int(hf[key]) for name, key in SHAPE_FIELDS.items() if name != "n_kv_heads"}
  except KeyError as error:
    raise ValueError(f"config.json lacks {error.args[0]!r}.") from None
  fields["n_kv_heads"] = int(hf.get("num_key_value_heads") or fields["n_heads"])
  head_dim = hf.get("head_dim")
  if head_dim is not None and int(head_dim) * fields["n_heads"] != fields["d_model"]:
    raise ValueError(f"config.json has head_dim {head_dim} with {fields['n_heads']} heads and hidden_size "
                     f"{fields['d_model']}; the decoder needs head_dim = hidden_size / heads.")
  fields["rope_theta"] = _rope_theta(hf)
  fields["norm_eps"] = float(hf.get("rms_norm_eps", 1e-6))
  fields["tie_embeddings"] = bool(hf.get("tie_word_embeddings", False))
  return fields
