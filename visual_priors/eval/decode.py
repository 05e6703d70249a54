"""Batched greedy decoding with a KV cache for the decoder LM and the MLLM, and chat replies from an MLLM.

How a batch decodes (all inside one jit, no host work per token):
  * Prompts are LEFT-padded to a bucket length P (the next power of two >= the batch's longest
    prompt, at least MIN_BUCKET), so every row's last prompt token sits in column P-1 and every
    generated token of step i goes to the same cache column P+i-1. Padding is segment 0 and
    position 0; a row's real tokens have positions 0..n-1 (as when the prompt runs alone), and its
    i-th generated token position n+i-1, so RoPE continues per row.
  * Prefill: one forward of the padded prompt batch through the training blocks and attention
    kernel (`Decoder.prefill`), with the MLLM's visual tokens spliced into the embeddings at the image
    slots; it fills the KV cache (P + max_new_tokens - 1 columns, kept at the KV-head count) and gives
    the first token.
  * Decode: a `lax.while_loop` of single-token steps (`Decoder.step`), each embedding only the new
    token and attending to the row's valid cache columns. A row that emits `eos_id` is done (later
    outputs are `eos_id`); the loop ends when every row is done or after max_new_tokens tokens.
  * The LM's weight matrices are cast to its compute dtype once per batch, before the loop (every use
    casts them anyway, so results are unchanged), so a step reads bfloat16 rather than float32 weights.
Compiled programs are keyed by (model structure, batch size, P, max_new_tokens, eos_id, image shape,
mesh, rules): an evaluation compiles once per prompt-length bucket, whatever the prompts.

Sharding: call inside `sharding.activation_sharding(mesh, rules)` to decode on a mesh; the trace then
constrains activations and the cache (logical axes batch, length, kv_heads, head_dim) like the
training step does, with batch rows over (data, fsdp) and KV heads over tensor. batch_size must then
be a multiple of the data-parallel size; prompts go in split over the batch axes and the generated tokens
come back replicated, so every process of a multi-host job can read them. Outside that context everything
runs unsharded.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from visual_priors.data import vocab
from visual_priors.data.multimodal import chat
from visual_priors.data.multimodal.pipeline import load_image
from visual_priors.models import sharding
from visual_priors.models.decoder import Decoder
from visual_priors.models.mllm import MLLM, splice_visual_tokens

MIN_BUCKET = 16


def prompt_bucket(length: int) -> int:
  """The padded prompt length for a batch whose longest prompt has `length` tokens."""
  return max(MIN_BUCKET, 1 << (max(length, 1) - 1).bit_length())


def greedy_decode(model: Decoder | MLLM, prompts: Sequence[np.ndarray], *, max_new_tokens: int, eos_id: int = 1,
                  images: np.ndarray | None = None, image_masks: Sequence[np.ndarray] | None = None,
                  batch_size: int = 8) -> list[np.ndarray]:
  """The greedily generated tokens of each prompt (without the prompt, stopped before EOS), in order.

  prompts: int32 token arrays (for chat prompts `chat.prompt_inputs(encoded)[0]`, BOS 0 first).
  images: float32 (len(prompts), H, W, 3) in [-1, 1], one per prompt (zeros for text-only rows), with
  image_masks: per prompt an int array of the prompt's length marking its image slots (all zero for a
  text-only row). Only an MLLM takes images. The last batch is padded with copies of its first prompt.
  """
  prompts = [np.asarray(prompt) for prompt in prompts]
  _check_inputs(model, prompts, images, image_masks, max_new_tokens, batch_size)
  if not prompts:
    return []
  mesh, rules = sharding.active_mesh(), sharding.active_rules()
  if mesh is not None:
    shards = sharding.batch_shards(mesh, rules)
    if batch_size % shards:
      raise ValueError(f"batch_size={batch_size} is not a multiple of the {shards} devices the batch is split "
                       f"over on this mesh ({dict(mesh.shape)}).")
  graphdef, state = nnx.split(model)
  generate = _compiled_generate(graphdef, max_new_tokens, eos_id, mesh, rules)
  results: list[np.ndarray] = []
  for start in range(0, len(prompts), batch_size):
    rows = list(range(start, min(start + batch_size, len(prompts))))
    rows += [rows[0]] * (batch_size - len(rows))
    length = prompt_bucket(max(prompts[row].size for row in rows))
    tokens_bp = np.zeros((batch_size, length), np.int32)
    mask_bp = np.zeros((batch_size, length), np.int32)
    pad_b = np.zeros(batch_size, np.int32)
    for slot, row in enumerate(rows):
      n = prompts[row].size
      pad_b[slot] = length - n
      tokens_bp[slot, length - n:] = prompts[row]
      if image_masks is not None:
        mask_bp[slot, length - n:] = image_masks[row]
    batch_images = None if images is None else sharding.put_batch(np.asarray(images[rows], np.float32))
    out_bm = np.asarray(generate(state, sharding.put_batch(tokens_bp), sharding.put_batch(pad_b), batch_images,
                                 sharding.put_batch(mask_bp)))
    for slot in range(min(batch_size, len(prompts) - start)):
      generated = out_bm[slot]
      stops = np.flatnonzero(generated == eos_id)
      results.append(generated[:stops[0]] if stops.size else generated)
  return results


def generate_replies(model: MLLM, template: chat.ChatTemplate, requests: Sequence[Mapping], *, image_size: int,
                     max_new_tokens: int = 64, batch_size: int = 8, blind: bool = False) -> list[str]:
  """The MLLM's greedy assistant replies (text), in request order.

  requests: {"prompt": str, "image": path | bytes | uint8 array | None}; the prompt is the user turn's
  text without "<image>". `blind=True` withholds every image: text-only prompts without image slots.
  Prompts are built as `template.encode_prompt([{"from": "human", "value": "<image>\\n" + prompt}])` (the
  marker dropped for rows without an image); images are loaded one batch at a time, so memory stays flat.
  """
  if not isinstance(model, MLLM):
    raise TypeError(f"generate_replies needs an MLLM, got {type(model).__name__}.")
  if template.config.num_visual_tokens != model.config.num_visual_tokens:
    raise ValueError(f"The chat template makes {template.config.num_visual_tokens} image slots but the MLLM "
                     f"produces {model.config.num_visual_tokens} visual tokens; build the template with "
                     f"ChatConfig(num_visual_tokens={model.config.num_visual_tokens}).")
  if image_size != model.config.vision.image_size:
    raise ValueError(f"image_size={image_size} but the MLLM's vision tower takes {model.config.vision.image_size}"
                     "-pixel images.")
  for index, request in enumerate(requests):
    if not isinstance(request, Mapping) or not isinstance(request.get("prompt"), str):
      raise ValueError(f"Request {index} is {request!r}; expected {{'prompt': str, 'image': ... | None}}.")
    if chat.IMAGE_TOKEN in request["prompt"]:
      raise ValueError(f"Request {index}'s prompt contains {chat.IMAGE_TOKEN}; pass the text only, the image "
                       "slot is added from the request's image.")
  prompts, masks, with_images = [], [], []
  for index, request in enumerate(requests):  # every prompt encoded (and checked) before any compute
    with_image = request.get("image") is not None and not blind
    user = {"from": "human", "value": f"{chat.IMAGE_TOKEN}\n{request['prompt']}"}
    tokens, mask = chat.prompt_inputs(template.encode_prompt([user], with_image=with_image, sample_id=str(index)))
    prompts.append(tokens)
    masks.append(mask)
    with_images.append(with_image)
  replies = []
  for start in range(0, len(requests), batch_size):  # images loaded one batch at a time
    chunk = range(start, min(start + batch_size, len(requests)))
    images = None
    if any(with_images[i] for i in chunk):
      blank = np.zeros((image_size, image_size, 3), np.float32)
      images = np.stack([load_image(requests[i]["image"], image_size) if with_images[i] else blank for i in chunk])
    generated = greedy_decode(model, [prompts[i] for i in chunk], max_new_tokens=max_new_tokens, images=images,
                              image_masks=None if images is None else [masks[i] for i in chunk],
                              batch_size=batch_size, eos_id=vocab.EOS_ID)
    replies += [template.processor.decode(tokens.tolist()) for tokens in generated]
  return replies


def _check_inputs(model: Any, prompts: list[np.ndarray], images: np.ndarray | None,
                  image_masks: Sequence[np.ndarray] | None, max_new_tokens: int, batch_size: int) -> None:
  if not isinstance(model, (Decoder, MLLM)):
    raise TypeError(f"greedy_decode needs a Decoder or an MLLM, got {type(model).__name__}.")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1.")
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  vocab_size = (model.config.llm if isinstance(model, MLLM) else model.config).vocab_size
  for index, prompt in enumerate(prompts):
    if prompt.ndim != 1 or prompt.size == 0 or not np.issubdtype(prompt.dtype, np.integer):
      raise ValueError(f"Prompt {index} must be a non-empty 1-D integer token array; got {prompt.dtype} "
                       f"{prompt.shape}.")
    if prompt.min() < 0 or prompt.max() >= vocab_size:
      raise ValueError(f"Prompt {index} has token ids outside [0, {vocab_size}).")
  if (images is None) != (image_masks is None):
    raise ValueError("Pass images and image_masks together (one image and one slot mask per prompt), or neither.")
  if images is None:
    return
  if not isinstance(model, MLLM):
    raise ValueError(f"Only an MLLM takes images; got a {type(model).__name__}.")
  size = model.config.vision.image_size
  if images.shape != (len(prompts), size, size, 3):
    raise ValueError(f"images must be ({len(prompts)}, {size}, {size}, 3), one per prompt; got {images.shape}.")
  if len(image_masks) != len(prompts):
    raise ValueError(f"{len(image_masks)} image masks for {len(prompts)} prompts.")
  for index, (prompt, mask) in enumerate(zip(prompts, image_masks)):
    mask = np.asarray(mask)
    if mask.shape != prompt.shape:
      raise ValueError(f"Image mask {index} has shape {mask.shape} but its prompt {prompt.shape}.")
    slots = int(np.count_nonzero(mask))
    if slots not in (0, model.config.num_visual_tokens):
      raise ValueError(f"Prompt {index} has {slots} image slots; an MLLM prompt needs 0 or "
                       f"{model.config.num_visual_tokens} (the chat template's expansion of <image>).")


@functools.lru_cache(maxsize=64)
def _compiled_generate(graphdef: nnx.GraphDef, max_new_tokens: int, eos_id: int, mesh: Any,
                       rules: sharding.LogicalRules):
  """A jitted `(state, tokens_bp, pad_b, images_or_None, image_mask_bp) -> generated (B, max_new_tokens)`."""

  def generate(state, tokens_bp, pad_b, images_bhwc, image_mask_bp):
    model = nnx.merge(graphdef, state)
    if mesh is None:
      return _generate(model, tokens_bp, pad_b, images_bhwc, image_mask_bp, max_new_tokens, eos_id)
    with sharding.activation_sharding(mesh, rules):
      return _generate(model, tokens_bp, pad_b, images_bhwc, image_mask_bp, max_new_tokens, eos_id)

  return jax.jit(generate, out_shardings=None if mesh is None else sharding.replicated(mesh))


def _generate(model: Decoder | MLLM, tokens_bp: jax.Array, pad_b: jax.Array, images_bhwc: jax.Array | None,
              image_mask_bp: jax.Array, max_new_tokens: int, eos_id: int) -> jax.Array:
  llm = model.llm if isinstance(model, MLLM) else model
  _cast_matrices(llm, jnp.dtype(llm.config.dtype))
  batch, length = tokens_bp.shape
  cache_length = length + max_new_tokens - 1
  columns_p = jnp.arange(length)
  real_bp = columns_p[None, :] >= pad_b[:, None]
  positions_bp = jnp.where(real_bp, columns_p[None, :] - pad_b[:, None], 0)
  x_bpd = llm.embed(tokens_bp)
  if images_bhwc is not None:
    x_bpd = splice_visual_tokens(x_bpd, model.visual_tokens(images_bhwc), image_mask_bp)
  logits_bv, cache = llm.prefill(x_bpd, positions_bp, real_bp.astype(jnp.int32), cache_length)
  first_b = jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
  out_bm = jnp.full((batch, max_new_tokens), eos_id, jnp.int32).at[:, 0].set(first_b)
  prompt_lengths_b = length - pad_b
  columns_s = jnp.arange(cache_length)

  def unfinished(carry):
    step, _, _, done_b, _ = carry
    return (step < max_new_tokens) & ~jnp.all(done_b)

  def decode_one(carry):
    step, token_b, out_bm, done_b, cache = carry
    index = length + step - 1  # the cache column of the token fed now (generated at step - 1)
    key_mask_bs = (columns_s[None, :] >= pad_b[:, None]) & (columns_s[None, :] <= index)
    positions_b1 = (prompt_lengths_b + step - 1)[:, None]
    logits_b1v, cache = llm.step(llm.embed(token_b[:, None]), positions_b1, cache, index, key_mask_bs)
    next_b = jnp.where(done_b, eos_id, jnp.argmax(logits_b1v[:, 0], axis=-1).astype(jnp.int32))
    out_bm = jax.lax.dynamic_update_slice_in_dim(out_bm, next_b[:, None], step, axis=1)
    return step + 1, next_b, out_bm, done_b | (next_b == eos_id), cache

  carry = (jnp.int32(1), first_b, out_bm, first_b == eos_id, cache)
  return jax.lax.while_loop(unfinished, decode_one, carry)[2]


def _cast_matrices(llm: Decoder, dtype: jnp.dtype) -> None:
  """Casts the LM's kernels and embedding table to the compute dtype once, before the decode loop.

  Every use casts them to that dtype anyway (`Projection`, `Embedder`), so the results are unchanged; the
  loop then reads bfloat16 weights instead of float32 master weights each step. Norm scales (1-D) stay.
  """
  params = nnx.state(llm, nnx.Param)
  nnx.update(llm, jax.tree.map(lambda x: x.astype(dtype) if x.ndim >= 2 else x, params))
