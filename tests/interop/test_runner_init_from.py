"""The runner's pretrain stage started from a Hugging Face directory (`pretrain.init_from=hf:DIR`), end to end."""

from __future__ import annotations

import json

import pytest

from visual_priors import cli


def _stage_dirs(root, stage):
  return sorted(p for p in (root / "stages" / stage).iterdir() if p.is_dir())


@pytest.mark.slow
def test_a_run_starts_from_an_exported_checkpoint_and_exports_it_back_bit_identically(small_store, tmp_path, capsys):
  common = ["--until", "pretrain", "--set", "pretrain.token_budget=0", "--set", f"data.store={small_store.root}"]
  assert cli.main(["run", "demo:mixture=mix6,reduced", "--root", str(tmp_path / "a"), *common]) == 0
  [source] = _stage_dirs(tmp_path / "a", "pretrain")
  assert cli.main(["export", "hf", str(source), "--out", str(tmp_path / "hf")]) == 0

  assert cli.main(["run", "demo:mixture=mix6,reduced", "--root", str(tmp_path / "b"), *common,
                   "--set", f"pretrain.init_from=hf:{tmp_path / 'hf'}"]) == 0
  assert "starting from the Hugging Face checkpoint" in capsys.readouterr().out
  [imported] = _stage_dirs(tmp_path / "b", "pretrain")
  assert imported.name != source.name  # the key covers the checkpoint's content
  assert cli.main(["export", "hf", str(imported), "--out", str(tmp_path / "hf_again")]) == 0
  assert (tmp_path / "hf_again" / "model.safetensors").read_bytes() == (tmp_path / "hf" / "model.safetensors").read_bytes()
  config = json.loads((tmp_path / "hf_again" / "config.json").read_text())
  assert config["architectures"] == ["LlamaForCausalLM"]
