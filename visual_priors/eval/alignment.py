"""Representation alignment of the LM with vision models: mutual k-NN over image-caption pairs (PRH protocol).

The Platonic Representation Hypothesis protocol (Huh et al. 2024), as the paper uses it: embed the captions
with the LM and the paired images with a vision model, find each item's k nearest neighbours (cosine
similarity, the item itself excluded) among all items in each space, and score the mean overlap of the
two neighbour sets, |NN_lm(i) ∩ NN_vision(i)| / k, in [0, 1]. Independent representations score about
k / (N - 1); identical ones score 1. The paper uses k = 20 and averages over three vision models.

LM features (`caption_features`): a caption is tokenised with the run's SentencePiece vocabulary and fed
as BOS (0) + its ids, as the pre-training data is (seqio's decoder-only inputs: the targets shifted right
behind 0; no EOS appended). `layer` picks the residual stream after that many blocks: 0 = the token
embeddings, n_layers (= "last" = -1) = after the last block, before the final norm; negative values count
back from n_layers + 1 like Python indices over the n_layers + 1 hidden states. `pooling` "mean" averages
the caption's tokens (BOS excluded, padding excluded), "last" takes its last token. The hidden states are
computed here by running the decoder's embedder and blocks (the decoder's own forward only returns logits).
Inside `sharding.activation_sharding(mesh, rules)` they are computed on the mesh, the decoder as its weights
are placed and the captions split over the mesh's batch axes (batch_size rounded up to a multiple of them).

Vision features: any callable mapping float images (B, H, W, 3) in [-1, 1] to (B, D) features.
`vit_features` wraps a ViT (pooled by its head, "head", or the mean of its patch tokens, "mean"; images
of another size are resized bilinearly to the tower's own); `vision_from_contrastive_run` and
`vision_from_npz` restore one from a contrastive stage run or a big_vision .npz. `pixel_features` is a
model-free baseline (the image averaged down to a grid x grid x 3 colour layout): it is a vision model
only where a caller names it in `vision_models`, so nothing adds it to the mean behind the caller's back.
`build_vision_models(specs)` builds several by name from plain specs (a config's list of vision models).

The way the Platonic Representation Hypothesis code computes it, both offered: `layer="best"` takes the
LM's features at every layer (token-averaged, `caption_layer_features`: (N, n_layers + 1, D)) and each
vision model's at every layer where it gives them (`vit_features(vit, pooling, all_layers=True)`:
(N, depth + 1, D), pooled by class token "cls" or patch mean "mean"), and `compute_score` keeps the best
mutual k-NN over all (LM layer, vision layer) pairs, index -1 meaning all layers concatenated, as PRH's
`compute_score`; `outlier_quantile=0.95` clamps features at the 95th percentile of |features| first, as
PRH's `remove_outliers` (the per-item quantile averaged over items) before the L2 normalisation.
Vision models from Hugging Face checkpoints: `vision_from_hf(directory, pooling)` (or spec kind "hf").

Result rows: one `alignment/<name>` row per vision model and `alignment` = their mean, metric
"mutual_knn", count = the number of pairs. The settings (k, resolved layer, pooling, feature sizes) are
returned on the rows' `config` attribute (`AlignmentRows`, a list) and written to `<out_dir>/alignment.json`
when `out_dir` is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from visual_priors import names
from visual_priors.data import cache, vocab as vocab_lib
from visual_priors.data.multimodal.pipeline import load_image
from visual_priors.models import sharding
from visual_priors.models.decoder import Decoder
from visual_priors.models.mllm import MLLM, feature_extractor
from visual_priors.models.vision import ViT, ViTConfig, get_encoder
from visual_priors.models.vision import hf as hf_lib
from visual_priors.models.vision.checkpoint import load_vit_npz
from visual_priors.train import partition, upstream as upstream_lib

METRIC = "mutual_knn"
BENCHMARK = "alignment"
POOLINGS = ("mean", "last")
VISION_POOLINGS = ("head", "mean", "cls")
RESULT_FILE = "alignment.json"

_CHUNK_ROWS = 1024  # queries per compiled chunk of the k-NN search

VisionModel = Callable[[np.ndarray], np.ndarray]  # float images (B, H, W, 3) in [-1, 1] -> (B, D)


# --------------------------------------------------------------------------------------------- mutual k-NN


def _unit_rows(feats: Any, name: str) -> np.ndarray:
  x = np.asarray(feats, np.float32)
  if x.ndim != 2:
    raise ValueError(f"{name} must be 2-D (items, features), got shape {x.shape}.")
  if not np.all(np.isfinite(x)):
    bad = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
    raise ValueError(f"{name} has non-finite values in {bad.size} rows (first: row {bad[0]}).")
  norms = np.linalg.norm(x.astype(np.float64), axis=1)
  zero = np.flatnonzero(norms == 0)
  if zero.size:
    raise ValueError(f"{name} has {zero.size} all-zero rows (first: row {zero[0]}); cosine neighbours of a "
                     "zero vector are undefined.")
  return (x / norms[:, None]).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def _overlap_chunk(a_nd: jax.Array, b_ne: jax.Array, start: jax.Array, *, k: int, chunk: int) -> jax.Array:
  """|NN_a ∩ NN_b| for the rows start..start+chunk-1 of unit-norm a and b; (chunk,) int32."""
  rows = start + jnp.arange(chunk)
  self_mask = rows[:, None] == jnp.arange(a_nd.shape[0])[None, :]

  def neighbours(x: jax.Array) -> jax.Array:
    queries = jax.lax.dynamic_slice_in_dim(x, start, chunk, axis=0)
    sims = jnp.matmul(queries, x.T, precision=jax.lax.Precision.HIGHEST)
    return jax.lax.top_k(jnp.where(self_mask, -jnp.inf, sims), k)[1]

  nn_a, nn_b = neighbours(a_nd), neighbours(b_ne)
  return jnp.sum(nn_a[:, :, None] == nn_b[:, None, :], axis=(1, 2))


def mutual_knn(feats_a: Any, feats_b: Any, k: int = 20) -> float:
  """Mean over items of |kNN_A(i) ∩ kNN_B(i)| / k, cosine neighbours, the item itself excluded.

  `feats_a` (N, D) and `feats_b` (N, E) describe the same N items in the same order. Rows are processed in
  chunks of 1024 queries (memory O(1024 * N) per space); ties in similarity go to the lower index.
  """
  a, b = _unit_rows(feats_a, "feats_a"), _unit_rows(feats_b, "feats_b")
  if a.shape[0] != b.shape[0]:
    raise ValueError(f"feats_a has {a.shape[0]} items and feats_b {b.shape[0]}; they must describe the same "
                     "items in the same order.")
  n = a.shape[0]
  if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}.")
  if k >= n:
    raise ValueError(f"k={k} needs at least k + 1 = {k + 1} items (each item's neighbours exclude itself); "
                     f"got {n}.")
  chunk = min(n, _CHUNK_ROWS)
  # One compiled shape serves every chunk: the last chunk starts early enough to end at row n, and only
  # its rows not counted before are kept.
  a_dev, b_dev = jnp.asarray(a), jnp.asarray(b)
  overlaps = []
  for start in range(0, n, chunk):
    begin = min(start, n - chunk)  # the last chunk overlaps the previous one instead of running past n
    counts = np.asarray(_overlap_chunk(a_dev, b_dev, jnp.int32(begin), k=int(k), chunk=chunk))
    overlaps.append(counts[start - begin:])
  return float(np.concatenate(overlaps).mean() / k)


# ------------------------------------------------------------------------------------------- LM features


def resolve_layer(n_layers: int, layer: int | str) -> int:
  """The number of blocks to run: "last" -> n_layers; i >= 0 -> i; i < 0 -> n_layers + 1 + i."""
  if layer == "last":
    return n_layers
  if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
    raise ValueError(f"layer must be an int or 'last', got {layer!r}.")
  resolved = int(layer) if layer >= 0 else n_layers + 1 + int(layer)
  if not 0 <= resolved <= n_layers:
    raise ValueError(f"layer {layer} is out of range for a decoder with {n_layers} layers: valid are "
                     f"{-(n_layers + 1)}..{n_layers} or 'last' (0 = the token embeddings).")
  return resolved


def _pooled_hidden(decoder: Decoder, tokens_bt: jax.Array, pool_mask_bt: jax.Array, *, blocks: int,
                   pooling: str) -> jax.Array:
  """(B, d_model) float32: the residual stream after `blocks` blocks, pooled over `pool_mask_bt`."""
  positions_bt = jnp.broadcast_to(jnp.arange(tokens_bt.shape[1]), tokens_bt.shape)
  # Segment 1 = BOS and caption tokens, 0 = right padding (the real tokens never see it: attention is causal).
  segment_ids_bt = (positions_bt <= jnp.sum(pool_mask_bt, axis=1, keepdims=True)).astype(jnp.int32)
  x_btd = decoder.embed(tokens_bt)
  for block in decoder.layers[:blocks]:
    x_btd = block(x_btd, positions_bt, segment_ids_bt)
  x_btd = x_btd.astype(jnp.float32)
  if pooling == "mean":
    weights = pool_mask_bt.astype(jnp.float32)
    return jnp.sum(x_btd * weights[..., None], axis=1) / jnp.sum(weights, axis=1, keepdims=True)
  last = jnp.sum(pool_mask_bt, axis=1)  # index of the last caption token (BOS sits at 0)
  return jnp.take_along_axis(x_btd, last[:, None, None], axis=1)[:, 0]


def _pooled_hidden_layers(decoder: Decoder, tokens_bt: jax.Array, pool_mask_bt: jax.Array, *,
                          pooling: str) -> jax.Array:
  """(B, n_layers + 1, d_model) float32: the residual stream after 0..n_layers blocks, each pooled."""
  positions_bt = jnp.broadcast_to(jnp.arange(tokens_bt.shape[1]), tokens_bt.shape)
  segment_ids_bt = (positions_bt <= jnp.sum(pool_mask_bt, axis=1, keepdims=True)).astype(jnp.int32)
  weights = pool_mask_bt.astype(jnp.float32)
  last = jnp.sum(pool_mask_bt, axis=1)

  def pool(x_btd: jax.Array) -> jax.Array:
    x_btd = x_btd.astype(jnp.float32)
    if pooling == "mean":
      return jnp.sum(x_btd * weights[..., None], axis=1) / jnp.sum(weights, axis=1, keepdims=True)
    return jnp.take_along_axis(x_btd, last[:, None, None], axis=1)[:, 0]

  x_btd = decoder.embed(tokens_bt)
  pooled = [pool(x_btd)]
  for block in decoder.layers:
    x_btd = block(x_btd, positions_bt, segment_ids_bt)
    pooled.append(pool(x_btd))
  return jnp.stack(pooled, axis=1)


@functools.lru_cache(maxsize=16)
def _compiled_features(graphdef: nnx.GraphDef, blocks: int | None, pooling: str, mesh: Any,
                       rules: sharding.LogicalRules):
  """A jitted `(state, tokens_bt, pool_mask_bt) -> pooled features` (`_pooled_hidden` after `blocks` blocks, or
  `_pooled_hidden_layers` for blocks None); on a mesh its activations are constrained like the training step's
  and its output comes back replicated."""

  def features(state, tokens_bt, pool_mask_bt):
    decoder = nnx.merge(graphdef, state)
    with sharding.activation_sharding(mesh, rules) if mesh is not None else contextlib.nullcontext():
      if blocks is None:
        return _pooled_hidden_layers(decoder, tokens_bt, pool_mask_bt, pooling=pooling)
      return _pooled_hidden(decoder, tokens_bt, pool_mask_bt, blocks=blocks, pooling=pooling)

  return jax.jit(features, out_shardings=None if mesh is None else sharding.replicated(mesh))


def _as_decoder(model: Decoder | MLLM) -> Decoder:
  if isinstance(model, MLLM):
    return model.llm
  if isinstance(model, Decoder):
    return model
  raise TypeError(f"Expected a Decoder or an MLLM, got {type(model).__name__}.")


def caption_features(model: Decoder | MLLM, vocab_path: str | pathlib.Path, captions: Sequence[str], *,
                     layer: int | str = "last", pooling: str = "mean", batch_size: int = 32,
                     max_tokens: int = 128) -> np.ndarray:
  """(N, d_model) float32 LM features of `captions` (see the module docstring for layer and pooling);
  layer "all": (N, n_layers + 1, d_model), every layer's (`caption_layer_features`).

  Captions longer than `max_tokens` pieces are truncated; all batches are padded to one length (the
  longest caption, rounded up to a multiple of 8) and one batch size, so the forward compiles once.
  """
  decoder = _as_decoder(model)
  if pooling not in POOLINGS:
    raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}.")
  if batch_size < 1 or max_tokens < 1:
    raise ValueError(f"batch_size ({batch_size}) and max_tokens ({max_tokens}) must be >= 1.")
  blocks = None if layer == "all" else resolve_layer(decoder.config.n_layers, layer)
  processor = vocab_lib.load_processor(pathlib.Path(vocab_path))
  pieces = []
  for index, caption in enumerate(captions):
    if not isinstance(caption, str) or not caption.strip():
      raise ValueError(f"Caption {index} is empty or not text: {caption!r}.")
    ids = processor.encode(caption)[:max_tokens]
    if not ids:
      raise ValueError(f"Caption {index} ({caption!r}) encodes to no tokens.")
    pieces.append(ids)
  if not pieces:
    raise ValueError("No captions to embed.")
  length = -(-(1 + max(len(p) for p in pieces)) // 8) * 8
  tokens = np.zeros((len(pieces), length), np.int32)
  pool_mask = np.zeros((len(pieces), length), bool)
  for row, ids in enumerate(pieces):
    tokens[row, 1:1 + len(ids)] = ids  # BOS (0) at position 0
    pool_mask[row, 1:1 + len(ids)] = True
  batch_size = sharding.batch_multiple(min(batch_size, len(pieces)))
  graphdef, state = nnx.split(decoder)
  compiled = _compiled_features(graphdef, blocks, pooling, sharding.active_mesh(), sharding.active_rules())
  features = []
  for start in range(0, len(pieces), batch_size):
    count = min(batch_size, len(pieces) - start)
    batch_tokens, batch_mask = tokens[start:start + count], pool_mask[start:start + count]
    if count < batch_size:  # pad with copies of the first row, trimmed below
      batch_tokens = np.concatenate([batch_tokens, np.repeat(batch_tokens[:1], batch_size - count, 0)])
      batch_mask = np.concatenate([batch_mask, np.repeat(batch_mask[:1], batch_size - count, 0)])
    pooled = compiled(state, sharding.put_batch(batch_tokens), sharding.put_batch(batch_mask))
    features.append(np.asarray(pooled)[:count])
  return np.concatenate(features)


def caption_layer_features(model: Decoder | MLLM, vocab_path: str | pathlib.Path, captions: Sequence[str], *,
                           pooling: str = "mean", batch_size: int = 32, max_tokens: int = 128) -> np.ndarray:
  """(N, n_layers + 1, d_model): the token-averaged (or last-token) LM features at every layer, 0 = embeddings."""
  return caption_features(model, vocab_path, captions, layer="all", pooling=pooling, batch_size=batch_size,
                          max_tokens=max_tokens)


# ------------------------------------------------------------------------------------- PRH's scoring


def remove_outliers(feats: Any, q: float = 0.95) -> np.ndarray:
  """PRH's `remove_outliers`: clamp to +-(the q-quantile of |feats| per item, averaged over items).

  `feats` (N, ...) is flattened per item for the quantile (linear interpolation, as torch.quantile); q = 1
  returns the features unchanged.
  """
  x = np.asarray(feats, np.float32)
  if not 0 < q <= 1:
    raise ValueError(f"q must be in (0, 1], got {q}.")
  if q == 1:
    return x
  threshold = float(np.quantile(np.abs(x).reshape(x.shape[0], -1), q, axis=1).mean())
  return np.clip(x, -threshold, threshold)


def _layers(feats: Any, name: str) -> np.ndarray:
  x = np.asarray(feats, np.float32)
  if x.ndim == 2:
    return x[:, None]
  if x.ndim != 3:
    raise ValueError(f"{name} must be (items, features) or (items, layers, features), got shape {x.shape}.")
  return x


def compute_score(x_feats: Any, y_feats: Any, k: int = 20) -> tuple[float, tuple[int, int]]:
  """PRH's `compute_score` for mutual k-NN: the best score over all layer pairs (i, j) of x (N, Lx, D) and
  y (N, Ly, E) (2-D inputs are one layer), index -1 being all layers concatenated; ties keep the first pair
  (in PRH's order: i then j from -1 up). Returns (score, (i, j)). Features are L2-normalised per pair."""
  x, y = _layers(x_feats, "x_feats"), _layers(y_feats, "y_feats")
  best, best_pair = -1.0, (-1, -1)
  for i in range(-1, x.shape[1]):
    a = x.reshape(x.shape[0], -1) if i == -1 else x[:, i]
    for j in range(-1, y.shape[1]):
      b = y.reshape(y.shape[0], -1) if j == -1 else y[:, j]
      score = mutual_knn(a, b, k)
      if score > best:
        best, best_pair = score, (i, j)
  return best, best_pair


# ------------------------------------------------------------------------------------------ vision models


def _vit_pooled_features(vit: ViT, images_bhwc: jax.Array, *, pooling: str, all_layers: bool = False) -> jax.Array:
  size = vit.config.image_size
  if images_bhwc.shape[1:3] != (size, size):
    images_bhwc = jax.image.resize(images_bhwc, (images_bhwc.shape[0], size, size, images_bhwc.shape[3]),
                                   method="bilinear")
  skip = 1 if vit.config.has_cls else 0
  if all_layers:  # (B, depth + 1, width): every hidden state, pooled
    states = [state.astype(jnp.float32) for state in vit.hidden_states(images_bhwc)]
    return jnp.stack([state[:, 0] if pooling == "cls" else jnp.mean(state[:, skip:], axis=1) for state in states], 1)
  if pooling == "cls":  # the class token at the feature layer; by default after the final norm
    states = vit.hidden_states(images_bhwc)
    layer = vit.config.feature_layer
    cls = vit.transformer.encoder_norm(states[-1][:, :1])[:, 0] if layer is None else states[layer][:, 0]
    return cls.astype(jnp.float32)
  pooled, tokens_bnd = vit(images_bhwc)
  if pooling == "head":
    return pooled
  return jnp.mean(tokens_bnd.astype(jnp.float32), axis=1)


_vit_pooled = nnx.jit(_vit_pooled_features, static_argnames=("pooling", "all_layers"))


@functools.lru_cache(maxsize=16)
def _compiled_vit(graphdef: nnx.GraphDef, pooling: str, all_layers: bool, mesh: Any):
  """`_vit_pooled` on a mesh, data-parallel: the tower replicated (vision towers are small, and their widths need
  not divide the mesh), the images split over the batch axes, the features replicated."""

  def features(state, images_bhwc):
    with sharding.unconstrained():
      return _vit_pooled_features(nnx.merge(graphdef, state), images_bhwc, pooling=pooling, all_layers=all_layers)

  return jax.jit(features, out_shardings=sharding.replicated(mesh))


def vit_features(vit: ViT, pooling: str = "head", *, all_layers: bool = False) -> VisionModel:
  """A vision model from a ViT: its pooled output ("head": MAP / GAP / class token, plus its head if any),
  the mean of its patch tokens at the configured feature layer ("mean"), or its class token ("cls").
  all_layers: (B, depth + 1, width) features of every hidden state (class token or patch mean), for
  `compute_score`'s layer search. Images of another size are resized to the tower's."""
  if pooling not in VISION_POOLINGS:
    raise ValueError(f"Vision pooling {pooling!r} is not one of {VISION_POOLINGS}.")
  if pooling == "head" and (vit.config.pool_type == "none" or all_layers):
    raise ValueError("This ViT has pool_type 'none' (no pooling head), or all layers were asked for; use "
                     "pooling='mean' (mean over patches) or 'cls' (the class token).")
  if pooling == "cls" and not vit.config.has_cls:
    raise ValueError("This ViT has no class token; use pooling='mean' (mean over patches).")

  on_mesh: dict[Any, tuple[nnx.GraphDef, Any]] = {}  # the tower placed on each mesh it ran on

  def features(images_bhwc: np.ndarray) -> np.ndarray:
    mesh = sharding.active_mesh()
    if mesh is None:
      return np.asarray(_vit_pooled(vit, jnp.asarray(images_bhwc, jnp.float32), pooling=pooling,
                                    all_layers=all_layers))
    if mesh not in on_mesh:
      graphdef, state = nnx.split(vit)
      on_mesh[mesh] = graphdef, jax.tree.map(lambda leaf: sharding.place(leaf, sharding.replicated(mesh)), state)
    graphdef, state = on_mesh[mesh]
    images = np.asarray(images_bhwc, np.float32)
    count = len(images)
    rows = sharding.batch_multiple(count)
    images = np.concatenate([images, np.repeat(images[:1], rows - count, 0)]) if rows > count else images
    return np.asarray(_compiled_vit(graphdef, pooling, all_layers, mesh)(state, sharding.put_batch(images)))[:count]

  return features


def _single_device_targets(abstract_state: Any) -> dict[str, jax.ShapeDtypeStruct]:
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  shapes = partition.flatten_paths(nnx.to_pure_dict(abstract_state))
  return {path: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device) for path, leaf in shapes.items()}


def load_contrastive_vit(run_dir: str | pathlib.Path) -> ViT:
  """The trained image tower (`img/...`) of a finished contrastive stage run, as built by that run."""
  run = upstream_lib.read_run(run_dir, "vision", ("contrastive",))
  config = ViTConfig(**run.manifest["model"]["vision"])
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: ViT(config, rngs=nnx.Rngs(0))))
  values = upstream_lib.restore_parameters(run, _single_device_targets(abstract), {"": "img/"})
  restored = jax.tree_util.tree_map_with_path(lambda key_path, _: values[partition.path_string(key_path)],
                                              nnx.to_pure_dict(abstract))
  nnx.replace_by_pure_dict(abstract, restored)
  return nnx.merge(graphdef, abstract)


def vision_from_contrastive_run(run_dir: str | pathlib.Path, pooling: str = "head") -> VisionModel:
  """A vision model from a contrastive stage run directory (its image tower; see `vit_features`)."""
  return vit_features(load_contrastive_vit(run_dir), pooling)


def vision_from_npz(path: str | pathlib.Path, encoder: str, pooling: str = "head", *, all_layers: bool = False,
                    **overrides: Any) -> VisionModel:
  """A vision model from a big_vision .npz with the registry shape `encoder` (its image tower only).

  With pooling "mean" the file's MAP head and image head are not needed (the tower is built without them).
  """
  config = get_encoder(encoder, **overrides)
  if pooling != "head" and config.pool_type != "none":
    config = feature_extractor(config)
  return vit_features(load_vit_npz(path, config), pooling, all_layers=all_layers)


def vision_from_hf(directory: str | pathlib.Path, pooling: str = "cls", encoder: str | None = None, *,
                   all_layers: bool = False) -> VisionModel:
  """A vision model from a Hugging Face checkpoint directory (SigLIP, CLIP / MetaCLIP, DINOv2, MAE; see
  `models.vision.hf`): its architecture from config.json, used as registered encoder `encoder` (image
  size, feature layer) when one is named. float32, as the alignment compares features."""
  if encoder:
    config = hf_lib.with_hf_weights(dataclasses.replace(get_encoder(encoder), dtype="float32"), directory)
  else:
    config = hf_lib.vit_config_from_hf(directory)
  return vit_features(hf_lib.load_hf_vision(directory, config), pooling, all_layers=all_layers)


def pixel_features(grid: int = 8) -> VisionModel:
  """Model-free baseline: each image area-averaged to grid x grid x 3 colours (flattened, mean-centred)."""
  if grid < 1:
    raise ValueError(f"grid must be >= 1, got {grid}.")

  def features(images_bhwc: np.ndarray) -> np.ndarray:
    images = np.asarray(images_bhwc, np.float32)
    b, h, w, c = images.shape
    if h % grid or w % grid:
      raise ValueError(f"pixel_features(grid={grid}) needs image sides divisible by {grid}, got {h}x{w}.")
    pooled = images.reshape(b, grid, h // grid, grid, w // grid, c).mean(axis=(2, 4)).reshape(b, -1)
    # Centre each image so cosine compares colour layout, not overall brightness (and no row is all zero
    # unless the image is flat; a flat image gets its raw colours).
    centred = pooled - pooled.mean(axis=1, keepdims=True)
    flat = np.linalg.norm(centred, axis=1) == 0
    centred[flat] = pooled[flat]
    return centred

  return features


VISION_KINDS = ("contrastive", "npz", "hf", "pixels")


def build_vision_models(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, VisionModel]:
  """Vision models by name from specs: {"kind": "contrastive", "run": dir, "pooling"?} | {"kind": "npz",
  "path", "encoder", "pooling"?} | {"kind": "hf", "path": dir, "encoder"?, "pooling"?} | {"kind": "pixels",
  "grid"?}; `all_layers` (not for pixels) gives every layer's features, for layer="best". Unknown kinds
  and keys fail loudly."""
  allowed = {"contrastive": {"run", "pooling", "all_layers"}, "npz": {"path", "encoder", "pooling", "all_layers"},
             "hf": {"path", "encoder", "pooling", "all_layers"}, "pixels": {"grid"}}
  required = {"contrastive": {"run"}, "npz": {"path", "encoder"}, "hf": {"path"}, "pixels": set()}
  models = {}
  for name, spec in specs.items():
    kind = names.lookup({k: k for k in VISION_KINDS}, spec.get("kind", ""), "vision model kind")
    fields = {key: value for key, value in spec.items() if key != "kind"}
    unknown, missing = set(fields) - allowed[kind], required[kind] - set(fields)
    if unknown or missing:
      raise ValueError(f"Vision model {name!r} ({kind}): unknown keys {sorted(unknown)}, missing keys "
                       f"{sorted(missing)}; a {kind} spec takes {sorted(allowed[kind])}.")
    layers = bool(fields.get("all_layers", False))
    if kind == "contrastive":
      models[name] = vit_features(load_contrastive_vit(fields["run"]), fields.get("pooling", "head"), all_layers=layers)
    elif kind == "npz":
      models[name] = vision_from_npz(fields["path"], fields["encoder"], fields.get("pooling", "head"),
                                     all_layers=layers)
    elif kind == "hf":
      models[name] = vision_from_hf(fields["path"], fields.get("pooling", "cls"), fields.get("encoder"),
                                    all_layers=layers)
    else:
      models[name] = pixel_features(fields.get("grid", 8))
  return models


# --------------------------------------------------------------------------------------------- evaluation


class AlignmentRows(list):
  """Result rows (a plain list of row dicts) with the settings they were measured under as `config`."""

  config: dict[str, Any]


def evaluate_alignment(decoder: Decoder | MLLM, vocab_path: str | pathlib.Path, pairs: Sequence[Mapping[str, Any]],
                       vision_models: Mapping[str, VisionModel], *, k: int = 20, layer: int | str = "last",
                       pooling: str = "mean", image_size: int = 224, batch_size: int = 32,
                       max_caption_tokens: int = 128, outlier_quantile: float | None = None,
                       out_dir: str | pathlib.Path | None = None) -> AlignmentRows:
  """Mutual k-NN between the LM's caption features and each vision model's image features.

  layer "best": every LM layer against every layer the vision model gives ((B, L, D) features), the best
  pair kept (PRH's `compute_score`); its (LM, vision) layers are in the config's `best_layers`.
  outlier_quantile (PRH: 0.95): `remove_outliers` on both sides first; None leaves features as they are.

  `pairs`: {"image" (path, encoded bytes or uint8 array), "caption"}; images are loaded at `image_size`
  in [-1, 1] (each ViT resizes to its own size). Returns rows `alignment/<name>` per vision model and
  `alignment` (their mean), metric "mutual_knn", count = len(pairs); see the module docstring.
  """
  if not vision_models:
    raise ValueError("No vision models given; pass {name: callable images -> features}.")
  bad_names = [name for name in vision_models if not name or "/" in name]
  if bad_names:
    raise ValueError(f"Vision model names {bad_names} must be non-empty and contain no '/'.")
  for index, pair in enumerate(pairs):
    missing = {"image", "caption"} - set(pair)
    if missing:
      raise ValueError(f"Pair {index} lacks {sorted(missing)}; pairs are {{'image', 'caption'}}.")
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < len(pairs):
    raise ValueError(f"k={k!r} needs 1 <= k < the number of pairs ({len(pairs)}).")
  decoder = _as_decoder(decoder)
  search = layer == "best"
  blocks = None if search else resolve_layer(decoder.config.n_layers, layer)
  started = time.perf_counter()
  text = caption_features(decoder, vocab_path, [pair["caption"] for pair in pairs], layer="all" if search else blocks,
                          pooling=pooling, batch_size=batch_size, max_tokens=max_caption_tokens)
  if outlier_quantile is not None:
    text = remove_outliers(text, outlier_quantile)
  image_feats: dict[str, list[np.ndarray]] = {name: [] for name in vision_models}
  for start in range(0, len(pairs), batch_size):
    images = np.stack([load_image(pair["image"], image_size) for pair in pairs[start:start + batch_size]])
    for name, vision in vision_models.items():
      feats = np.asarray(vision(images))
      if feats.ndim not in ((2, 3) if search else (2,)) or feats.shape[0] != len(images):
        raise ValueError(f"Vision model {name!r} returned shape {feats.shape} for {len(images)} images; "
                         "expected (images, features)" + (" or (images, layers, features)." if search else "."))
      image_feats[name].append(feats)
  scores, best_layers = {}, {}
  for name, parts in image_feats.items():
    feats = np.concatenate(parts)
    if outlier_quantile is not None:
      feats = remove_outliers(feats, outlier_quantile)
    if search:
      scores[name], best_layers[name] = compute_score(text, feats, k)
    else:
      scores[name] = mutual_knn(text, feats, k)
  count = len(pairs)
  rows = AlignmentRows(
      [{"benchmark": f"{BENCHMARK}/{name}", "group": None, "metric": METRIC, "value": score, "count": count}
       for name, score in scores.items()]
      + [{"benchmark": BENCHMARK, "group": None, "metric": METRIC, "value": float(np.mean(list(scores.values()))),
          "count": count}])
  rows.config = {
      "k": int(k), "layer": layer, "blocks": blocks, "n_layers": decoder.config.n_layers, "pooling": pooling,
      "image_size": image_size, "max_caption_tokens": max_caption_tokens, "pairs": count,
      "lm_dim": int(text.shape[-1]),
      "vision_models": {name: {"dim": int(image_feats[name][0].shape[-1]), "mutual_knn": scores[name],
                               **({"best_layers": list(best_layers[name])} if search else {})}
                        for name in vision_models},
      "outlier_quantile": outlier_quantile,
      "chance": k / (count - 1), "seconds": time.perf_counter() - started,
  }
  if out_dir is not None:
    cache.write_json_atomic(pathlib.Path(out_dir) / RESULT_FILE, {"config": rows.config, "rows": list(rows)})
  return rows
