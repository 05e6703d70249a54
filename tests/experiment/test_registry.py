"""Tests of visual_priors.experiment.registry and the named experiments of experiments/ (the paper's grid + demo)."""

from __future__ import annotations

import collections
import textwrap

import pytest

from visual_priors import experiment
from visual_priors.experiment import registry
from visual_priors.eval import benchmarks

FAMILY_COUNTS = {"scale": 40, "source": 16, "category": 40, "grid": 30, "mix": 11, "encoder": 15, "sft_data": 5,
                 "blind": 2, "scaleup": 2, "demo": 3}


@pytest.fixture(scope="module")
def configs():
  return {name: registry.get_experiment(name) for name in registry.experiment_names()}


def keys(config) -> dict[str, str]:
  return {stage: identity.key for stage, identity in experiment.stage_identities(config).items()}


def test_family_counts_and_pinned_names(configs):
  counts = collections.Counter(registry.family_of(name) for name in configs)
  assert dict(counts) == FAMILY_COUNTS
  assert len(configs) == sum(FAMILY_COUNTS.values()) == 164
  for name in ("scale/3b-30b", "scale/340m-0b", "scale/13b-100b", "source/code", "source/q-a-forum",
               "category/code-25", "category/visual-concept-75", "category/reasoning-100", "grid/r60-v15",
               "grid/r65-v30", "grid/r85-v5", "mix/mix0", "mix/mix10", "encoder/dinov2-reasoning-50",
               "encoder/mae-reasoning-0", "encoder/metaclip-reasoning-75", "sft_data/full",
               "sft_data/remove-perception-50", "sft_data/remove-reasoning-100", "blind/mix6",
               "scaleup/mix6-7b-1t", "scaleup/mix0-7b-1t", "demo/mix0", "demo/mix6", "demo/untrained"):
    assert name in configs, name


def test_every_config_is_valid_named_and_described(configs):
  run_ids = set()
  for name, config in configs.items():
    assert config.name == name and config.meta.name == name
    assert config.meta.family == registry.family_of(name)
    assert config.description
    run_ids.add(experiment.run_id(config))
  assert len(run_ids) == len(configs)


def test_paper_settings(configs):
  assert configs["scale/7b-70b"].pretrain.token_budget == 70_000_000_000
  assert configs["scale/340m-5b"].data.mixture == "web-crawl=1"
  assert configs["source/law"].meta.source == "law"
  category = configs["category/visual-relationship-25"].meta
  assert (category.category, category.proportion) == ("visual-relationship", 0.25)
  grid = configs["grid/r65-v25"].meta
  assert (grid.reasoning_share, grid.visual_share) == (0.65, 0.25)
  mix = configs["mix/mix6"]
  assert mix.pretrain.token_budget == 50_000_000_000 and mix.meta.reasoning_share == pytest.approx(0.52, abs=1e-3)
  assert configs["encoder/mae-reasoning-25"].vision.encoder == "mae-h14-224"
  assert configs["blind/mix0"].adapt.blind and configs["blind/mix0"].data.mixture == "mix0"
  scaleup = configs["scaleup/mix6-7b-1t"]
  assert (scaleup.pretrain.scale, scaleup.pretrain.token_budget) == ("7b", 1_000_000_000_000)
  assert configs["sft_data/remove-reasoning-50"].meta.sft_variant == "reasoning-50"
  for name, config in configs.items():
    if not name.startswith("demo/"):
      assert config.pretrain.peak_lr == 3e-4 and config.pretrain.warmup_steps == 1024 and config.seed == 42
      assert config.adapt.align.peak_lr == 1e-3 and config.adapt.sft.peak_lr == 4e-5
      assert config.adapt.data.kind == "llava"


def test_encoder_runs_share_the_category_sweep_stages(configs):
  for percent in (0, 25, 50, 75, 100):
    category = keys(configs[f"category/reasoning-{percent}"])
    metaclip = keys(configs[f"encoder/metaclip-reasoning-{percent}"])
    assert metaclip == category
    for encoder in ("dinov2", "mae"):
      other = keys(configs[f"encoder/{encoder}-reasoning-{percent}"])
      assert other["pretrain"] == category["pretrain"] and other["mmdata"] == category["mmdata"]
      assert other["vision"] != category["vision"] and other["eval"] != category["eval"]


def test_shared_stages_across_families(configs):
  default = keys(configs["scale/3b-30b"])
  assert keys(configs["source/web-crawl"]) == default == keys(configs["sft_data/full"])
  removal = keys(configs["sft_data/remove-perception-50"])
  assert removal["align"] == default["align"] and removal["sft"] != default["sft"]
  for mix in ("mix0", "mix6"):
    plain, blind = keys(configs[f"mix/{mix}"]), keys(configs[f"blind/{mix}"])
    assert all(plain[s] == blind[s] for s in ("pretrain", "mmdata", "vision", "align"))
    assert "blind" in blind and "blind" not in plain and blind["sft"] != plain["sft"]
  untrained = {keys(configs[f"scale/{s}-0b"])["pretrain"] for s in ("340m", "1b", "3b", "7b", "13b")}
  assert len(untrained) == 5
  pretrain_keys = [keys(c)["pretrain"] for n, c in configs.items() if n.startswith(("scale/", "source/", "grid/"))]
  assert len(set(pretrain_keys)) == len(pretrain_keys) - 1  # only scale/3b-30b == source/web-crawl


def test_demo_configs_are_runnable_and_share_vision_and_data(configs):
  demos = {n: c for n, c in configs.items() if n.startswith("demo/")}
  for config in demos.values():
    experiment.finalize(config, strict=True)  # no file is needed
    assert config.pretrain.scale == "nano" and config.vision.encoder == "vit-tiny"
    assert config.vision.kind == "contrastive" and config.adapt.data.kind == "generated"
    assert config.adapt.data.generated.image_size == 32
    assert set(config.eval.benchmarks) == set(benchmarks.GENERATED_BENCHMARKS)
  stage_keys = [keys(c) for c in demos.values()]
  assert len({k["vision"] for k in stage_keys}) == 1 and len({k["mmdata"] for k in stage_keys}) == 1
  assert len({k["pretrain"] for k in stage_keys}) == 3  # two mixtures and the untrained control
  assert configs["demo/mix6"].meta.reasoning_share > configs["demo/mix0"].meta.reasoning_share


def test_file_arg_variants_and_local_switch():
  config = registry.get_experiment("mixes:mix=mix3,local")
  assert config.name == "mix/mix3-local" and config.pretrain.scale == "nano" and config.data.mixture == "mix3"
  assert config.meta.family == "mix"
  reduced = registry.get_experiment("demo:mixture=mix0,reduced")
  assert reduced.name == "demo/mix0-reduced" and reduced.adapt.sft.steps < registry.get_experiment("demo/mix0").adapt.sft.steps
  overridden = registry.get_experiment("mix/mix6", ["pretrain.peak_lr=1e-4"])
  assert overridden.pretrain.peak_lr == 1e-4
  with pytest.raises(KeyError, match="Did you mean 'mix/mix6'"):
    registry.get_experiment("mix/mix66")
  with pytest.raises(KeyError, match="'mixes'"):
    registry.get_experiment("mixe:mix=mix3")
  with pytest.raises(ValueError, match="Did you mean 'mix'"):
    registry.get_experiment("mixes:mx=mix3")


def test_filter():
  assert registry.experiment_names("^mix/") == [f"mix/mix{i}" for i in range(11)]
  assert registry.experiment_names(r"^grid/r60-") == [f"grid/r60-v{v}" for v in (5, 10, 15, 20, 25, 30)]
  with pytest.raises(ValueError, match="regular expression"):
    registry.experiment_names("(")


def _write(folder, name, text):
  (folder / name).write_text(textwrap.dedent(text))


_GOOD = """
    from visual_priors import experiment

    def get_config(arg=None):
      args = experiment.parse_arg(arg, {"lr": 0.001})
      config = experiment.base_config()
      config.pretrain.peak_lr = args["lr"]
      return config

    EXPERIMENTS = {"mine/lr-0.001": "", "mine/lr-0.01": "lr=0.01"}
"""


def test_own_folder_by_argument_and_environment(tmp_path, monkeypatch):
  _write(tmp_path, "mine.py", _GOOD)
  _write(tmp_path, "launch_script.py", "raise RuntimeError('a script, never imported')\n")
  _write(tmp_path, "_helpers.py", "def get_config(arg=None):\n  raise RuntimeError\n")
  assert registry.experiment_names(directory=tmp_path) == ["mine/lr-0.001", "mine/lr-0.01"]
  assert registry.get_experiment("mine/lr-0.01", directory=tmp_path).pretrain.peak_lr == 0.01
  monkeypatch.setenv(registry.ENV_VAR, str(tmp_path))
  assert registry.experiment_names() == ["mine/lr-0.001", "mine/lr-0.01"]
  assert registry.get_experiment("mine:lr=0.01").name == "mine/lr-0.01"  # the entry with those arguments
  assert registry.get_experiment("mine:lr=0.1").name == "mine/lr-0.1"  # no such entry: named after its arguments
  local = registry.get_experiment("mine:lr=0.1,local")  # the registry's switch: no file declares it
  assert local.name == "mine/lr-0.1-local" and local.pretrain.scale == "nano" and local.pretrain.peak_lr == 3e-3


def test_missing_folder_says_how_to_point_at_one(tmp_path, monkeypatch):
  monkeypatch.setenv(registry.ENV_VAR, str(tmp_path / "absent"))
  with pytest.raises(FileNotFoundError, match=rf"absent.*\${registry.ENV_VAR}.*pip install -e"):
    registry.experiment_names()


def test_bad_experiment_files_fail_clearly(tmp_path):
  _write(tmp_path, "a.py", _GOOD)
  _write(tmp_path, "b.py", _GOOD)
  with pytest.raises(ValueError, match="'mine/lr-0.001' is named by both a.py and b.py"):
    registry.experiment_names(directory=tmp_path)
  (tmp_path / "b.py").unlink()
  _write(tmp_path, "c.py", "def get_config(arg=None):\n  return None\n")
  with pytest.raises(ValueError, match="lists no experiments"):
    registry.experiment_names(directory=tmp_path)
  _write(tmp_path, "c.py", _GOOD.replace('"mine/lr-0.001": ""', '"mine/other": ""').replace('"mine/lr-0.01": "lr=0.01"', ""))
  assert registry.get_experiment("mine/other", directory=tmp_path).name == "mine/other"  # named by its entry
  with pytest.raises(ValueError, match="Experiment argument 'local' is a switch"):
    registry.get_experiment("c:local=3", directory=tmp_path)
  _write(tmp_path, "c.py", _GOOD.replace('"mine/lr-0.001": ""', '"Mine/Bad Name": ""').replace('"mine/lr-0.01": "lr=0.01"', ""))
  with pytest.raises(ValueError, match="not '<family>/<short>'"):
    registry.experiment_names(directory=tmp_path)
