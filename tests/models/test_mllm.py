"""The MLLM: parameter tree, visual-token splicing against a hand-built forward, sharding, and step FLOPs."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visual_priors.models import flops, scales, sharding
from visual_priors.models.decoder import Decoder
from visual_priors.models.mllm import MLLM, MLLMConfig, splice_visual_tokens
from visual_priors.models.projector import ProjectorConfig
from visual_priors.models.vision import TextConfig, get_encoder
from visual_priors.models.vision.flops import forward_flops_per_image

VOCAB = 50
CONFIG = MLLMConfig(vision=get_encoder("vit-nano", pool_type="none", num_classes=0),
                    llm=scales.get_scale("nano", vocab_size=VOCAB, attention_impl="xla"),
                    projector="mlp2x_gelu", num_visual_tokens=9)
SLOTS = slice(2, 11)  # where the 9 image slots sit in each test row


@pytest.fixture(scope="module")
def model() -> MLLM:
  return MLLM(CONFIG, rngs=nnx.Rngs(0))


@nnx.jit
def _forward(model: MLLM, images, tokens, mask):
  return model(images, tokens, image_mask_bt=mask)


def _inputs(seed: int, batch: int = 2, length: int = 16):
  keys = jax.random.split(jax.random.key(seed), 2)
  images = jax.random.uniform(keys[0], (batch, 16, 16, 3), minval=-1, maxval=1)
  tokens = jax.random.randint(keys[1], (batch, length), 1, VOCAB, jnp.int32)
  mask = jnp.zeros((batch, length), jnp.int32).at[:, SLOTS].set(1)
  return images, tokens, mask


def _paths(module: nnx.Module) -> list[str]:
  return ["/".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(module, nnx.Param))]


def test_parameter_paths_split_into_img_proj_llm_by_regex(model):
  paths = _paths(model)
  for path in paths:
    assert sum(bool(re.fullmatch(regex, path)) for regex in ("img/.*", "proj/.*", "llm/.*")) == 1, path
  assert {path.split("/")[0] for path in paths} == {"img", "proj", "llm"}
  assert "proj/fc2/kernel" in paths and "llm/embedder/embedding" in paths and "img/pos_embedding" in paths
  # The parts keep their own modules' paths, so upstream checkpoints map on by prefix.
  llm_alone = _paths(Decoder(CONFIG.llm, rngs=nnx.Rngs(0)))
  assert sorted(p.removeprefix("llm/") for p in paths if p.startswith("llm/")) == sorted(llm_alone)


def test_visual_tokens_fill_the_image_slots_in_order(model):
  images, tokens, mask = _inputs(1)
  logits = _forward(model, images, tokens, mask)
  assert logits.shape == (2, 16, VOCAB) and logits.dtype == jnp.float32
  # Hand-built: embed, overwrite slot k of every row with visual token k, decode.
  visual = np.asarray(model.visual_tokens(images))
  assert visual.shape == (2, 9, CONFIG.llm.d_model)
  embedded = np.array(model.llm.embed(tokens))
  embedded[:, SLOTS] = visual
  expected = model.llm.decode(jnp.asarray(embedded))
  np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_slot_token_ids_are_ignored_and_the_image_only_affects_later_positions(model):
  images, tokens, mask = _inputs(2)
  logits = np.asarray(_forward(model, images, tokens, mask))
  other_ids = tokens.at[:, SLOTS].set(7)
  np.testing.assert_array_equal(np.asarray(_forward(model, images, other_ids, mask)), logits)
  other_image = np.asarray(_forward(model, -images, tokens, mask))
  np.testing.assert_allclose(other_image[:, :SLOTS.start], logits[:, :SLOTS.start], rtol=1e-6, atol=1e-6)
  assert np.abs(other_image[:, SLOTS.start:] - logits[:, SLOTS.start:]).max() > 1e-3


def test_rows_without_slots_and_batches_without_images_are_plain_lm_rows(model):
  images, tokens, mask = _inputs(3)
  mask = mask.at[1].set(0)  # row 1: a text-only example next to an image row
  logits = np.asarray(_forward(model, images, tokens, mask))
  lm_logits = np.asarray(model.llm(tokens))
  np.testing.assert_allclose(logits[1], lm_logits[1], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(model(None, tokens)), lm_logits, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="image_mask"):
    model(images, tokens)


def test_splice_uses_each_rows_own_slot_positions():
  x = jnp.zeros((2, 6, 1))
  visual = jnp.asarray([[[1.0], [2.0]], [[3.0], [4.0]]])
  mask = jnp.asarray([[0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1]])
  out = np.asarray(splice_visual_tokens(x, visual, mask))[..., 0]
  np.testing.assert_array_equal(out, [[0, 1, 2, 0, 0, 0], [0, 0, 0, 0, 3, 4]])


def test_decoder_decode_of_embed_is_the_decoder():
  decoder = Decoder(CONFIG.llm, rngs=nnx.Rngs(1))
  tokens = jax.random.randint(jax.random.key(0), (2, 8), 1, VOCAB)
  np.testing.assert_array_equal(np.asarray(decoder.decode(decoder.embed(tokens))), np.asarray(decoder(tokens)))


def test_sharded_forward_on_a_data_fsdp_tensor_mesh_matches_one_device(model):
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  graphdef, state = nnx.split(model)
  shardings = sharding.state_shardings(state, mesh)
  sharded_state = jax.device_put(state, shardings)
  images, tokens, mask = _inputs(4, batch=4)
  batch_sharding = sharding.batch_sharding(mesh)

  @jax.jit
  def forward(state, images, tokens, mask):
    with sharding.activation_sharding(mesh):
      return nnx.merge(graphdef, state)(images, tokens, image_mask_bt=mask)

  inputs = [jax.device_put(x, batch_sharding) for x in (images, tokens, mask)]
  np.testing.assert_allclose(np.asarray(forward(sharded_state, *inputs)),
                             np.asarray(_forward(model, images, tokens, mask)), rtol=1e-4, atol=1e-4)


def test_config_round_trips_through_a_manifest_dict_and_rejects_bad_counts():
  assert MLLMConfig.from_dict(CONFIG.to_dict()) == CONFIG
  with pytest.raises(ValueError, match="perfect square"):
    dataclasses.replace(CONFIG, num_visual_tokens=10)
  with pytest.raises(ValueError, match="projector"):
    dataclasses.replace(CONFIG, projector="mlp3x")
  with pytest.raises(ValueError, match="resample"):
    dataclasses.replace(CONFIG, resample="cubic")


def test_text_tower_and_projector_flops_match_a_hand_count():
  text = TextConfig(vocab_size=10, width=8, depth=2, mlp_dim=16, num_heads=2, num_classes=6)
  # Per block and token (5 tokens): 4*8*8 (q, k, v, out) + 2*8*16 (mlp) + 2*5*8 (attention) MACs; head 8*6.
  assert flops.text_tower_forward_flops(text, 5) == 2 * 2 * 5 * (256 + 256 + 80) + 2 * 8 * 6
  assert flops.projector_forward_flops(ProjectorConfig("linear", 8, 12)) == 2 * 8 * 12
  assert flops.projector_forward_flops(ProjectorConfig("mlp2x_gelu", 8, 12)) == 2 * (8 * 12 + 12 * 12)


def test_mllm_step_flops_count_each_part_by_what_trains():
  vit_f = forward_flops_per_image(CONFIG.vision)
  proj_f = 9 * flops.projector_forward_flops(CONFIG.projector_config())
  llm_f = 32 * flops.forward_flops_per_token(CONFIG.llm, 32)
  sft = flops.mllm_train_flops_per_step(CONFIG, batch_size=1, seq_len=32, trained={"proj", "llm"})
  align = flops.mllm_train_flops_per_step(CONFIG, batch_size=1, seq_len=32, trained={"proj"})
  everything = flops.mllm_train_flops_per_step(CONFIG, batch_size=2, seq_len=32, trained={"img", "proj", "llm"})
  assert sft == pytest.approx(vit_f + 3 * proj_f + 3 * llm_f)
  assert align == pytest.approx(vit_f + 3 * proj_f + 2 * llm_f)
  assert everything == pytest.approx(2 * 3 * (vit_f + proj_f + llm_f))
  with pytest.raises(ValueError, match="parts"):
    flops.mllm_train_flops_per_step(CONFIG, batch_size=1, seq_len=32, trained={"vision"})
