"""Exported runs load in transformers (no custom code) and compute what the framework computes."""

import json

import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers
from flax import nnx

from hf_helpers import SAMPLE_TEXTS, tiny_config, vocab_size, write_random_run
from visual_priors import cli
from visual_priors.interop import hf_export
from visual_priors.models import safetensors_io
from visual_priors.train import upstream

MAX_LOGIT_DIFF = 1e-4  # float32
LENGTH = 128  # padded row length of the framework's forward passes (the samples encode to < 100 tokens)
NEW_TOKENS = 8


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def exported(request, spm_vocab, tmp_path_factory):
  """(framework run, HF directory): untied exported in 64 kB shards with an index, tied in one file."""
  tie = request.param
  root = tmp_path_factory.mktemp("tied" if tie else "untied")
  run = write_random_run(root / "run", tiny_config(vocab_size(spm_vocab), tie=tie), spm_vocab, seed=int(tie))
  shard = 64 * 1024 if not tie else safetensors_io.DEFAULT_MAX_SHARD_BYTES
  hf_export.export_hf(run, root / "hf", max_shard_bytes=shard, log=lambda _: None)
  return run, root / "hf"


def test_transformers_loads_the_export_with_equal_logits_and_greedy_continuation(exported):
  run, out = exported
  model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
  tokenizer = transformers.AutoTokenizer.from_pretrained(out)
  assert type(model).__name__ == "LlamaForCausalLM"
  assert model.config.num_key_value_heads == 2
  decoder, manifest = upstream.load_trained(run)
  assert model.config.tie_word_embeddings == manifest["model"]["tie_embeddings"]
  assert model.config.rope_parameters["rope_theta"] == 500000.0
  forward = nnx.jit(lambda module, tokens: module(tokens))  # one compile: rows right-padded to a fixed length
  encoded = [tokenizer(text).input_ids for text in SAMPLE_TEXTS]  # BOS 0 first, as the framework reads documents
  assert all(ids[0] == 0 for ids in encoded)
  batch = np.zeros((len(encoded), LENGTH), np.int32)
  for row, ids in enumerate(encoded):
    batch[row, :len(ids)] = ids
  ours = np.asarray(forward(decoder, batch))
  worst = 0.0
  for row, ids in enumerate(encoded):
    with torch.no_grad():
      theirs = model(torch.tensor([ids])).logits.numpy()[0]
    worst = max(worst, float(np.abs(ours[row, :len(ids)] - theirs).max()))
  assert worst <= MAX_LOGIT_DIFF, worst

  for ids in encoded[:3]:  # greedy: the framework's argmax, token by token, against transformers' generate
    row = np.zeros((1, LENGTH), np.int32)
    row[0, :len(ids)] = ids
    for position in range(len(ids), len(ids) + NEW_TOKENS):
      row[0, position] = int(np.argmax(np.asarray(forward(decoder, row))[0, position - 1]))
    with torch.no_grad():  # as a user calls it: no attention mask, the export's generation config
      generated = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)[0].numpy()
    stop = list(generated[len(ids):]).index(1) if 1 in generated[len(ids):] else NEW_TOKENS
    np.testing.assert_array_equal(row[0, len(ids):len(ids) + stop], generated[len(ids):len(ids) + stop])


def test_export_writes_llama_config_generation_config_and_sharded_index(exported):
  run, out = exported
  config = json.loads((out / "config.json").read_text())
  assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
  assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (0, 1, 0)
  assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
          config["num_key_value_heads"], config["intermediate_size"]) == (64, 2, 4, 2, 160)
  assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 1
  tied = config["tie_word_embeddings"]
  assert (out / "model.safetensors.index.json").is_file() != tied
  weights = safetensors_io.SafetensorsDir(out)
  assert ("lm_head.weight" in weights) != tied
  # The files are plain safetensors: the reference reader gives the same arrays as the memory-mapped one.
  for path in weights.files:
    for name, array in safetensors.numpy.load_file(str(out / path)).items():
      np.testing.assert_array_equal(array, weights.get(name))
  record = json.loads((out / hf_export.EXPORT_FILE).read_text())
  assert record["stage"] == "pretrain" and record["dtype"] == "float32"


def test_bfloat16_export_rounds_every_tensor(exported, tmp_path):
  run, out = exported
  hf_export.export_hf(run, tmp_path / "bf16", dtype="bfloat16", log=lambda _: None)
  full, half = safetensors_io.SafetensorsDir(out), safetensors_io.SafetensorsDir(tmp_path / "bf16")
  assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"
  for name in full.names():
    assert half.dtype(name) == np.dtype("bfloat16")
    np.testing.assert_array_equal(half.get(name), full.get(name).astype("bfloat16"))


def test_cli_export_writes_shards_and_prints_the_record(exported, tmp_path, capsys):
  run, out = exported
  assert cli.main(["export", "hf", str(run), "--out", str(tmp_path / "cli"), "--max-shard-size", "40KB"]) == 0
  printed = capsys.readouterr().out
  record = json.loads(printed[printed.index("{\n"):])
  assert record["stage"] == "pretrain" and record["dtype"] == "float32" and record["step"] == 1
  files = sorted(p.name for p in (tmp_path / "cli").iterdir())
  assert "model.safetensors.index.json" in files and "model-00001-of-" in " ".join(files)
  ours, reference = safetensors_io.SafetensorsDir(tmp_path / "cli"), safetensors_io.SafetensorsDir(out)
  assert sorted(ours.names()) == sorted(reference.names())
  for name in ours.names():
    np.testing.assert_array_equal(ours.get(name), reference.get(name))
  assert cli.main(["export", "hf", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
