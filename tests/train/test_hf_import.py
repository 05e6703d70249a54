"""Hugging Face Llama directories as starting points: same logits, bit-identical round trip, loud mismatches, keys."""

import json
import shutil

import jax
import numpy as np
import optax
import pytest
import torch
import transformers
from flax import nnx

from hf_helpers import tiny_config, train_spm, variables_of, vocab_size, write_random_run
from visual_priors import experiment
from visual_priors.interop import hf_export
from visual_priors.models import scales, sharding
from visual_priors.models.decoder import Decoder, DecoderConfig
from visual_priors.train import hf_import, pretrain, state, upstream

MAX_LOGIT_DIFF = 1e-4  # float32



def _load_decoder(directory):
  """A Decoder holding a HF Llama directory's weights on the first device (float32)."""
  checkpoint = hf_import.open_checkpoint(directory)
  config = DecoderConfig(**{**checkpoint.fields, "dtype": "float32"})
  return upstream.restore_into(lambda: Decoder(config, rngs=nnx.Rngs(0)),
                               lambda targets: hf_import.sharded_variables(checkpoint, config, targets))

@pytest.fixture(scope="module")
def vocab_model(tmp_path_factory):
  return train_spm(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def exported(vocab_model, tmp_path_factory):
  """(a random framework run, its float32 export)."""
  root = tmp_path_factory.mktemp("exported")
  run = write_random_run(root / "run", tiny_config(vocab_size(vocab_model), tie=False), vocab_model, seed=3)
  hf_export.export_hf(run, root / "hf", log=lambda _: None)
  return run, root / "hf"


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_a_transformers_checkpoint_imports_with_equal_logits(tie, tmp_path):
  torch.manual_seed(0)
  hf_config = transformers.LlamaConfig(
      vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
      num_key_value_heads=2, rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=tie,
      max_position_embeddings=128, bos_token_id=0, eos_token_id=1, pad_token_id=0)
  model = transformers.LlamaForCausalLM(hf_config).eval()
  with torch.no_grad():  # random norm scales too, so swapped norms would show
    for name, parameter in model.named_parameters():
      parameter.add_(torch.randn_like(parameter) * (0.2 if name.endswith("norm.weight") else 0.05))
  model.save_pretrained(tmp_path)
  decoder = _load_decoder(tmp_path)
  assert decoder.config.rope_theta == 500000.0 and decoder.config.tie_embeddings == tie
  assert (decoder.config.n_heads, decoder.config.n_kv_heads) == (4, 2)
  tokens = np.random.default_rng(0).integers(0, 300, (2, 48)).astype(np.int32)
  tokens[:, 0] = 0
  ours = np.asarray(nnx.jit(lambda module, x: module(x))(decoder, tokens))
  with torch.no_grad():
    theirs = model(torch.tensor(tokens.astype(np.int64))).logits.numpy()
  assert np.abs(ours - theirs).max() <= MAX_LOGIT_DIFF


def test_export_then_import_is_bit_identical_and_lands_in_the_state_shardings(exported):
  run, out = exported
  original = variables_of(upstream.load_trained(run)[0])
  config = tiny_config(original["embedder/embedding"].shape[0], tie=False)
  mesh = sharding.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})  # the 8 emulated devices
  spec = state.build_state_spec(lambda rngs: Decoder(config, rngs=rngs), optax.sgd(0.1), mesh,
                                sharding.DEFAULT_LOGICAL_AXIS_RULES)
  targets = upstream.targets_under(spec.abstract, [""])
  values = hf_import.sharded_variables(hf_import.open_checkpoint(out), config, targets)
  for path, value in values.items():
    assert value.sharding == targets[path].sharding, path
  assert any(len(value.sharding.device_set) == 8 and not value.sharding.is_fully_replicated
             for value in values.values())
  created = state.variables(spec.create(values))
  assert set(created) == set(original)
  for path, value in original.items():
    np.testing.assert_array_equal(np.asarray(created[path]).view(np.uint32), value.view(np.uint32), err_msg=path)


def test_import_then_export_gives_the_same_files(exported, tmp_path):
  """HF -> framework pretrain run (token budget 0) -> HF again: the safetensors bytes are unchanged."""
  _, out = exported
  hf = json.loads((out / "config.json").read_text())
  config = pretrain_config(tmp_path / "run", hf)
  pretrain.save_untrained(config, data_identity={"vocab": str(out / "tokenizer.model")}, init_from=out)
  hf_export.export_hf(tmp_path / "run", tmp_path / "again", log=lambda _: None)
  assert (tmp_path / "again" / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def pretrain_config(work_dir, hf):
  """A train config of the checkpoint's shape (a custom scale registered for the test)."""
  from visual_priors.train import config as config_lib  # pylint: disable=import-outside-toplevel

  config = config_lib.default_config()
  config.scale = "nano"
  config.model.update(d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
                      n_kv_heads=hf["num_key_value_heads"], d_ff=hf["intermediate_size"],
                      vocab_size=hf["vocab_size"])
  config.compute_dtype = "float32"
  config.batch_size, config.seq_len, config.num_steps, config.token_budget = 8, 16, 1, 0
  config.optimizer.warmup_steps = 0
  config.work_dir = str(work_dir)
  return config


def test_pretraining_starts_from_the_checkpoint_weights(exported, tmp_path, synthetic):
  run, out = exported
  hf = json.loads((out / "config.json").read_text())
  config = pretrain_config(tmp_path / "run", hf)
  config.optimizer.peak_lr = 1e-9  # one step that barely moves: the weights after it are the imported ones
  config.log_every_steps = config.eval_every_steps = config.checkpoint.every_steps = 1
  pretrain.pretrain(config, train_data=synthetic.train_data(8, 16, hf["vocab_size"]), init_from=out)
  manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
  assert manifest["init_from"]["content_sha256"] == hf_import.content_sha256(out)
  assert manifest["model"]["rope_theta"] == 500000.0 and manifest["model"]["norm_eps"] == 1e-5
  trained, original = (variables_of(upstream.load_trained(path)[0]) for path in (tmp_path / "run", run))
  for path, value in original.items():
    np.testing.assert_allclose(trained[path], value, atol=1e-6, err_msg=path)


def test_shapes_that_do_not_fit_the_scale_fail_naming_the_parameter(exported, tmp_path):
  _, out = exported
  checkpoint = hf_import.open_checkpoint(out)
  with pytest.raises(ValueError, match=r"intermediate_size is 160 in the checkpoint, 192 in scale 'nano' \(d_ff\)"):
    hf_import.matched_config(checkpoint, scales.get_scale("nano"), "nano")
  broken = tmp_path / "broken"
  shutil.copytree(out, broken)
  hf = json.loads((broken / "config.json").read_text())
  (broken / "config.json").write_text(json.dumps({**hf, "intermediate_size": 192}))  # weights still 160 wide
  nano = scales.get_scale("nano", vocab_size=hf["vocab_size"])
  with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.gate_proj\.weight: shape \(160, 64\) in the "
                                       r"checkpoint, \(192, 64\) for layers/0/mlp/gate/kernel"):
    hf_import.matched_config(hf_import.open_checkpoint(broken), nano, "nano")


def test_init_from_enters_the_pretrain_key_as_the_content_hash(exported, tmp_path):
  _, out = exported
  base = experiment.base_config()
  plain = experiment.stage_identities(base)["pretrain"].key
  base.pretrain.init_from = ""
  assert experiment.stage_identities(base)["pretrain"].key == plain  # the default keeps every key
  copy = tmp_path / "copy"
  shutil.copytree(out, copy)
  base.pretrain.init_from = f"hf:{copy}"
  first = experiment.stage_identities(base)["pretrain"]
  assert first.key != plain and first.fields["init_from"] == {"hf": hf_import.content_sha256(out)}
  moved = tmp_path / "moved"
  shutil.copytree(out, moved)
  base.pretrain.init_from = f"hf:{moved}"
  assert experiment.stage_identities(base)["pretrain"].key == first.key  # content, not location
  weights = bytearray((moved / "model.safetensors").read_bytes())
  weights[-1] ^= 1
  (moved / "model.safetensors").write_bytes(bytes(weights))
  assert experiment.stage_identities(base)["pretrain"].key != first.key
  base.pretrain.init_from = "/no/prefix"
  with pytest.raises(ValueError, match="hf:DIR"):
    experiment.validate(base)
  base.pretrain.init_from = f"hf:{tmp_path / 'absent'}"
  assert any("pretrain.init_from" in line for line in experiment.missing_files(base))


def test_one_device_placement_of_an_import(exported):
  _, out = exported
  decoder = _load_decoder(out)
  leaf = decoder.layers[0].attn.q_proj.kernel[...]
  assert leaf.sharding.device_set == {jax.devices()[0]}
