"""`python -m visual_priors stage ...`: arguments become the stage config; misplaced flags fail clearly."""

from __future__ import annotations

import pytest

from visual_priors import cli
from visual_priors.train import stage_commands


def _config(argv: list[str]):
  return stage_commands._stage_config(cli.build_parser().parse_args(argv))  # pylint: disable=protected-access


def test_align_flags_fill_the_stage_config(tmp_path):
  config = _config(["stage", "align", "--work-dir", str(tmp_path / "run"), "--lm", "runs/lm", "--vision", "x.npz",
                    "--encoder", "vit-tiny", "--captions", "c.jsonl", "--visual-tokens", "64", "--batch", "16",
                    "--seq", "256", "--epochs", "2", "--mesh", "data=2,fsdp=-1",
                    "--set", "train.optimizer.peak_lr=2e-3", "--set", "train.model.remat=full",
                    "--set", "vision.overrides.dtype=float32"])
  assert config.stage == "align" and config.train.work_dir == str(tmp_path / "run")
  assert config.upstream.lm.endswith("runs/lm") and config.upstream.vision.endswith("x.npz")
  assert config.vision.encoder == "vit-tiny" and config.mllm.num_visual_tokens == 64
  assert (config.train.batch_size, config.train.seq_len, config.epochs) == (16, 256, 2.0)
  assert config.train.mesh.to_dict() == {"data": 2, "fsdp": -1}
  assert config.train.optimizer.peak_lr == 2e-3
  assert config.train.model.remat == "full" and config.vision.overrides.dtype == "float32"


def test_flags_a_stage_does_not_read_are_refused(tmp_path):
  work_dir = ["--work-dir", str(tmp_path)]
  with pytest.raises(ValueError, match="--lm is not an upstream of the sft stage; it reads --init"):
    _config(["stage", "sft", *work_dir, "--lm", "runs/lm", "--instruct", "i.json"])
  with pytest.raises(ValueError, match="--visual-tokens applies to align only"):
    _config(["stage", "sft", *work_dir, "--init", "runs/align", "--instruct", "i.json", "--visual-tokens", "9"])
  with pytest.raises(ValueError, match="--encoder applies to contrastive and align"):
    _config(["stage", "blind", *work_dir, "--init", "runs/align", "--instruct", "i.json", "--encoder", "vit-tiny"])
  with pytest.raises(ValueError, match="Unknown config key"):
    _config(["stage", "sft", *work_dir, "--init", "runs/align", "--instruct", "i.json", "--set", "train.lr=1"])


def test_the_stage_reports_a_missing_upstream_as_one_line(tmp_path, capsys):
  code = cli.main(["stage", "sft", "--work-dir", str(tmp_path / "sft"), "--init", str(tmp_path / "nothing"),
                   "--instruct", str(tmp_path / "i.json")])
  assert code == 2
  assert "init upstream" in capsys.readouterr().err


def test_a_bad_set_value_is_one_line_naming_key_type_and_example(tmp_path, capsys):
  work_dir = ["--work-dir", str(tmp_path)]
  config = _config(["stage", "sft", *work_dir, "--init", "runs/align", "--instruct", "i.json",
                    "--set", "train.num_steps=1e3", "--set", "train.optimizer.peak_lr=1"])
  assert config.train.num_steps == 1000 and config.train.optimizer.peak_lr == 1.0
  code = cli.main(["stage", "sft", *work_dir, "--init", "runs/align", "--instruct", "i.json",
                   "--set", "train.batch_size=abc"])
  err = capsys.readouterr().err
  assert code == 2 and "Traceback" not in err
  assert err == ("error: Cannot set train.batch_size to 'abc': expected an integer, e.g. --set "
                 "train.batch_size=512.\n")
