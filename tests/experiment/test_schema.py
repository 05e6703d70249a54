"""Tests of visual_priors.experiment.schema: schema, validation, metadata, canonical hashing and stage identities."""

from __future__ import annotations

import pathlib

import pytest

from visual_priors import experiment
from visual_priors.models import scales


def keys(config) -> dict[str, str]:
  return {stage: identity.key for stage, identity in experiment.stage_identities(config).items()}


def downstream(config, stage: str) -> set[str]:
  """`stage` and every stage that consumes it, transitively."""
  identities = experiment.stage_identities(config)
  found = {stage}
  for name, identity in identities.items():  # execution order: upstream stages come first
    if found & set(identity.upstream):
      found.add(name)
  return found


def local():
  config = experiment.apply_local(experiment.base_config())
  config.name = "custom/local"
  return config


def test_base_config_validates_and_finalizes_with_meta():
  config = experiment.finalize(experiment.base_config())
  assert config.meta.scale == "3b" and config.meta.tokens == 30_000_000_000
  assert config.meta.params == experiment.decoder_params(scales.get_scale("3b"))
  assert config.meta.source == "web-crawl" and config.meta.sft_variant == "full" and config.meta.blind is False
  assert config.meta.reasoning_share == pytest.approx(0.10) and config.meta.visual_share == pytest.approx(0.269)
  assert config.meta.family == "custom"
  assert list(experiment.stage_identities(config)) == ["pretrain", "mmdata", "vision", "align", "sft", "eval"]


def test_stages_are_in_execution_order_and_blind_only_when_enabled():
  config = local()
  config.adapt.blind = True
  identities = experiment.stage_identities(config)
  assert list(identities) == [s for s in experiment.STAGES if s in identities] == list(experiment.STAGES)
  seen = set()
  for name, identity in identities.items():
    assert set(identity.upstream) <= seen, name
    seen.add(name)
  assert identities["vision"].upstream == ("mmdata",)  # contrastive trains on the captions
  assert identities["sft"].upstream == ("blind",)
  assert identities["eval"].upstream == ("sft", "pretrain")
  config.eval.language = False
  assert experiment.stage_identities(config)["eval"].upstream == ("sft",)


def test_run_id_is_slug_and_eval_key():
  config = local()
  config.name = "Mix/Mix6 (test)"
  assert experiment.run_id(config) == f"mix-mix6-test-{keys(config)['eval']}"
  assert experiment.slug("") == "run"


@pytest.mark.parametrize("path, value, stage", [
    ("data.mixture", "mix0", "pretrain"),
    ("data.store", "other-store", "pretrain"),
    ("pretrain.peak_lr", 1e-3, "pretrain"),
    ("pretrain.token_budget", 409_600, "pretrain"),
    ("pretrain.overrides.optimizer.weight_decay", 0.1, "pretrain"),
    ("adapt.data.generated.seed", 1, "mmdata"),
    ("adapt.data.generated.n_instruct", 64, "mmdata"),
    ("adapt.data.generated.tasks", "colour,count", "mmdata"),
    ("adapt.data.generated.mc_answer", "text", "mmdata"),
    ("adapt.data.generated.text_only_every", 0, "mmdata"),  # its default 5 is left out of the key
    ("adapt.system_prompt", "llava-v1", "align"),  # the local recipe has none
    ("vision.contrastive.steps", 3, "vision"),
    ("adapt.align.peak_lr", 1e-2, "align"),
    ("adapt.align.num_visual_tokens", 4, "align"),
    ("adapt.align.feature_layer", 0, "align"),  # None (the tower's own) is left out of the key
    ("adapt.sft.peak_lr", 1e-4, "sft"),
    ("adapt.sft.trainable", "(img|proj|llm)/.*", "sft"),  # the recipe's default is left out of the key
    ("adapt.sft_data.remove", "perception", "sft"),
    ("eval.max_new_tokens", 4, "eval"),
    ("eval.benchmarks", ["gen_general"], "eval"),
])
def test_result_changing_edit_changes_its_stage_and_downstream_only(path, value, stage):
  config = local()
  if path == "adapt.sft_data.remove":
    config.adapt.sft_data.fraction = 0.5
    before = keys(experiment.apply_overrides(config, ["adapt.sft_data.remove=none"]))
  else:
    before = keys(config)
  edited = experiment.apply_overrides(config, [f"{path}={value!r}" if not isinstance(value, list) else
                                               f"{path}={value}"])
  after = keys(edited)
  changed = {s for s in before if before[s] != after[s]}
  assert changed == downstream(config, stage), (path, changed)


def test_seed_also_changes_a_contrastive_tower_and_sft_data_changes_blind():
  config = local()
  config.adapt.blind = True
  before = keys(config)
  after = keys(experiment.apply_overrides(config, ["adapt.sft_data.remove=reasoning", "adapt.sft_data.fraction=1.0"]))
  assert {s for s in before if before[s] != after[s]} == {"blind", "sft", "eval"}
  after = keys(experiment.apply_overrides(config, ["seed=1"]))
  assert {s for s in before if before[s] != after[s]} == {"pretrain", "vision", "align", "blind", "sft", "eval"}


@pytest.mark.parametrize("assignment", [
    "name='other'", "description='words'", "meta.family='mix'", "runtime.log_every_steps=7",
    "runtime.mesh.fsdp=2", "runtime.eval_batch_size=2", "runtime.eval_data_root='/data'",
    "runtime.checkpoint_every_steps=5", "runtime.compile_cache='off'", "runtime.compile_cache='/elsewhere'",
])
def test_cosmetic_edits_change_no_key(assignment):
  config = local()
  assert keys(experiment.apply_overrides(config, [assignment])) == keys(config)


def test_finalize_output_hashes_like_its_input():
  config = local()
  assert keys(experiment.finalize(config)) == keys(config)


def test_numbers_are_normalised_before_hashing():
  assert experiment.fingerprint({"lr": 3e-4}) == experiment.fingerprint({"lr": 0.0003})
  assert experiment.fingerprint({"x": 0.1 + 0.2}) == experiment.fingerprint({"x": 0.3})
  assert experiment.fingerprint({"tokens": 3e10}) == experiment.fingerprint({"tokens": 30_000_000_000})
  assert experiment.fingerprint({"a": 1, "b": 2}) == experiment.fingerprint({"b": 2, "a": 1})
  assert experiment.fingerprint({"lr": 3e-4}) != experiment.fingerprint({"lr": 3.1e-4})
  assert experiment.fingerprint({"flag": True}) != experiment.fingerprint({"flag": 1})
  with pytest.raises(ValueError, match="non-finite"):
    experiment.fingerprint({"lr": float("nan")})
  config = experiment.base_config()
  as_float = experiment.apply_overrides(config, ["pretrain.token_budget=3e10", "pretrain.peak_lr=0.0003"])
  assert as_float.pretrain.token_budget == 30_000_000_000 and isinstance(as_float.pretrain.token_budget, int)
  assert keys(as_float) == keys(config)


def test_equal_mixtures_written_differently_share_the_pretrain_key():
  def pretrain_key(mixture):
    config = experiment.base_config()
    config.data.mixture = mixture
    return keys(config)["pretrain"]
  explicit = "web-crawl=40,encyclopedia=8,academia=5,literature=2,math=10,code=35"
  assert pretrain_key("mix6") == pretrain_key(explicit)
  assert pretrain_key("code=50%,math=50%") == pretrain_key("math=0.5,code=0.5")
  assert pretrain_key("cat:reasoning=0.6,visual=0.15") == pretrain_key("cat:visual=15%,reasoning=60%")
  assert pretrain_key("mix6") != pretrain_key("mix5")


@pytest.mark.parametrize("budget", [0, 30_000_000_000])
def test_a_content_addressed_store_is_keyed_by_name_wherever_it_lies(budget):
  def pretrain_key(store):
    config = experiment.base_config()
    config.data.store, config.pretrain.token_budget = store, budget
    return keys(config)["pretrain"]
  name = "L256-0123456789ab"
  assert pretrain_key(f"/old/cache/segments/{name}") == pretrain_key(f"/mnt/copy/segments/{name}") == pretrain_key(name)
  assert pretrain_key(f"/a/{name}") != pretrain_key("/a/L256-ba9876543210")
  assert pretrain_key("/a/my_store") != pretrain_key("/b/my_store")  # a name of its own is no identity


def test_untrained_lm_does_not_depend_on_mixture_or_optimizer():
  config = experiment.base_config()
  config.pretrain.token_budget = 0
  other = experiment.apply_overrides(config, ["data.mixture=code=1", "pretrain.peak_lr=1e-3"])
  assert keys(other)["pretrain"] == keys(config)["pretrain"]
  assert keys(experiment.apply_overrides(config, ["pretrain.scale=7b"]))["pretrain"] != keys(config)["pretrain"]


def test_sft_data_none_is_one_variant_and_checkpoint_vision_ignores_contrastive_settings():
  config = experiment.base_config()
  assert keys(experiment.apply_overrides(config, ["adapt.sft_data.fraction=0.5"])) == keys(config)
  assert keys(experiment.apply_overrides(config, ["vision.contrastive.steps=9"])) == keys(config)


def test_stage_fields_are_recorded():
  identities = experiment.stage_identities(experiment.base_config())
  assert identities["pretrain"].fields["mixture"] == {"sources": {"web-crawl": 1}}
  assert identities["pretrain"].fields["peak_lr"] == 0.0003
  assert identities["sft"].fields["sft_data"] == "full"
  assert "runtime" not in identities["eval"].fields and "name" not in identities["pretrain"].fields


@pytest.mark.parametrize("assignment, message", [
    ("pretrain.scale=3bb", r"pretrain.scale.*'3b'"),
    ("vision.encoder=dinov2-g14", r"vision.encoder.*dinov2-g14-224"),
    ("eval.benchmarks=gqa,mmbenc", r"eval.benchmarks.*mmbench"),
    ("data.mixture=code=0.5,web-crawl", r"data.mixture .* does not parse"),
    ("data.mixture=cod=1", r"data.mixture.*'code'"),
    ("data.mixture=cat:reasonin=0.5", r"data.mixture.*'reasoning'"),
    ("pretrain.token_budget=-5", r"pretrain.token_budget must be >= 0"),
    ("pretrain.batch_size=0", r"pretrain.batch_size must be > 0"),
    ("adapt.sft_data.remove=perceptio", r"adapt.sft_data.remove.*'perception'"),
    ("adapt.sft_data.remove=perception;adapt.sft_data.fraction=0.3", r"variant 'perception-30'"),
    ("adapt.align.num_visual_tokens=500", r"num_visual_tokens"),
    ("adapt.align.warmup_fraction=1.0", r"warmup_fraction must be in \[0, 1\)"),
    ("vision.kind=checkpoints", r"vision.kind .*'checkpoint'"),
    ("eval.probe.judge=llm", r"eval.probe.url"),
    ("eval.alignment.layer=top", r"eval.alignment.layer"),
    ("eval.alignment.vision_models=['dinov2']", r"'self' or '<encoder>=<path.npz>'"),
    ("meta.family=mixes", r"meta.family.*'mix'"),
    ("adapt.data.generated.tasks=colour,colr", r"generated task 'colr'.*'colour'"),
    ("adapt.system_prompt=llava", r"adapt.system_prompt.*'llava-v1'"),
    ("adapt.sft.trainable=(proj|llm/.*", r"adapt.sft.trainable must be a regex"),
    ("adapt.align.feature_layer=40", r"adapt.align.feature_layer"),
    ("adapt.data.generated.mc_answer=option", r"adapt.data.generated.mc_answer.*'text'"),
    ("runtime.mesh.data=0", r"runtime.mesh.data"),
    ("pretrain.overrides.optimizer.peak_lr=0.1", r"set by pretrain.peak_lr"),
    ("pretrain.overrides.optimizer.weight_decy=0.1", r"weight_decay"),
    ("pretrain.overrides.model.d_modl=8", r"d_model"),
])
def test_validation_names_the_field_and_closest_values(assignment, message):
  config = experiment.apply_overrides(experiment.base_config(), assignment.split(";"))
  with pytest.raises(ValueError, match=message):
    experiment.validate(config)


def test_unknown_keys_are_errors_with_suggestions():
  with pytest.raises(ValueError, match=r"Unknown config key 'pretrain.peak_lrr'. Did you mean 'pretrain.peak_lr'"):
    experiment.apply_overrides(experiment.base_config(), ["pretrain.peak_lrr=1e-4"])
  config = experiment.base_config()
  config.pretrain.peak_lrr = 1e-4
  with pytest.raises(ValueError, match=r"'pretrain.peak_lrr' \(did you mean 'pretrain.peak_lr'"):
    experiment.validate(config)
  del config.pretrain["peak_lrr"]
  del config.adapt["blind"]
  with pytest.raises(ValueError, match=r"lacks key.*adapt.blind"):
    experiment.validate(config)
  with pytest.raises(ValueError, match="KEY=VALUE"):
    experiment.apply_overrides(experiment.base_config(), ["pretrain.peak_lr"])


def test_strict_finalize_needs_the_files_a_run_reads(tmp_path):
  config = experiment.base_config()
  experiment.finalize(config)  # the paper's config is valid as a description
  with pytest.raises(ValueError, match=r"vision.checkpoint is empty.*adapt.data.llava.captions is empty"):
    experiment.finalize(config, strict=True)
  npz = tmp_path / "metaclip.npz"
  npz.write_bytes(b"x")
  files = [f"adapt.data.llava.{name}={str(tmp_path / name)!r}" for name in ("captions", "instruct", "images")]
  config = experiment.apply_overrides(config, [f"vision.checkpoint={str(npz)!r}", *files])
  with pytest.raises(ValueError, match=r"adapt.data.llava.captions .* does not exist"):
    experiment.finalize(config, strict=True)
  for name in ("captions", "instruct"):
    (tmp_path / name).write_text("[]")
  (tmp_path / "images").mkdir()
  assert experiment.finalize(config, strict=True).meta.encoder == "metaclip-b16-224"
  experiment.finalize(local(), strict=True)  # the local recipe needs no file


def test_overrides_coerce_types():
  config = experiment.apply_overrides(experiment.base_config(), [
      "pretrain.token_budget=5e9", "adapt.align.epochs=2", "eval.benchmarks=gen_general,gen_knowledge",
      "eval.alignment.layer=-4", "adapt.blind=True", "pretrain.overrides.optimizer.weight_decay=0.1",
      "data.mixture=code=0.5,math=0.5"])
  assert config.pretrain.token_budget == 5_000_000_000 and config.adapt.align.epochs == 2.0
  assert config.eval.benchmarks == ["gen_general", "gen_knowledge"] and config.eval.alignment.layer == "-4"
  assert config.adapt.blind is True and config.pretrain.overrides.optimizer.weight_decay == 0.1
  assert config.data.mixture == "code=0.5,math=0.5"
  experiment.validate(config)
  with pytest.raises(ValueError, match="Cannot set pretrain.scale"):
    experiment.apply_overrides(experiment.base_config(), ["pretrain.scale=[1]"])


@pytest.mark.parametrize("assignment, message", [
    ("pretrain.token_budget=abc", "Cannot set pretrain.token_budget to 'abc': expected an integer, e.g. --set "
     "pretrain.token_budget=30000000000."),
    ("pretrain.token_budget=2.5e9.0", "Cannot set pretrain.token_budget to '2.5e9.0': expected an integer"),
    ("pretrain.warmup_steps=10.5", "Cannot set pretrain.warmup_steps to 10.5: expected an integer"),
    ("seed=True", "Cannot set seed to True: expected an integer, e.g. --set seed=42."),
    ("pretrain.peak_lr=abc", "Cannot set pretrain.peak_lr to 'abc': expected a number, e.g. --set "
     "pretrain.peak_lr=0.0003."),
    ("adapt.blind=yes", "Cannot set adapt.blind to 'yes': expected True or False, e.g. --set adapt.blind=True."),
    ("vision.checkpoint=True", "Cannot set vision.checkpoint to True: expected a string, e.g. --set "
     "vision.checkpoint=text."),
    ("eval.benchmarks=5", "Cannot set eval.benchmarks to 5: expected a comma-separated list (a,b) or a list literal "
     "(['a', 'b']), e.g. --set eval.benchmarks=gqa,mme."),
    ("runtime.mesh=4", "Cannot set runtime.mesh to 4: expected a mapping (set its keys one by one), e.g. --set "
     "runtime.mesh.data=1."),
])
def test_override_of_the_wrong_type_names_key_value_type_and_example(assignment, message):
  with pytest.raises(ValueError) as error:
    experiment.apply_overrides(experiment.base_config(), [assignment])
  assert str(error.value).startswith(message)


def test_train_config_overrides_are_type_checked_on_validation():
  config = experiment.apply_overrides(experiment.base_config(), ["pretrain.overrides.optimizer.weight_decay=abc"])
  with pytest.raises(ValueError, match=r"^Cannot set pretrain.overrides.optimizer.weight_decay to 'abc': expected a "
                                       r"number, e.g. --set pretrain.overrides.optimizer.weight_decay=0.1.$"):
    experiment.validate(config)
  experiment.validate(experiment.apply_overrides(experiment.base_config(), [
      "pretrain.overrides.optimizer.weight_decay=0", "pretrain.overrides.eval_every_steps=1e3",
      "pretrain.overrides.compute_dtype='bfloat16'", "pretrain.overrides.model.remat='full'"]))


def test_parse_arg():
  defaults = {"mix": "mix6", "local": False, "percent": 50}
  assert experiment.parse_arg(None, defaults) == defaults
  assert experiment.parse_arg("mix=mix3,local,percent=25", defaults) == {"mix": "mix3", "local": True, "percent": 25}
  with pytest.raises(ValueError, match="Did you mean 'local'"):
    experiment.parse_arg("locl", defaults)
  with pytest.raises(ValueError, match="switch"):
    experiment.parse_arg("local=3", defaults)


def test_mixture_meta():
  meta = experiment.mixture_meta("mix6")
  assert meta["reasoning_share"] == pytest.approx(0.52, abs=0.001)
  assert meta["visual_share"] == pytest.approx(0.148, abs=0.001)
  assert meta["source"] is None and meta["category"] is None
  assert experiment.mixture_meta("cat:code=0.25") == {"source": None, "category": "code", "proportion": 0.25,
                                                      "reasoning_share": None, "visual_share": None}
  grid = experiment.mixture_meta("cat:reasoning=0.6,visual=0.15")
  assert (grid["reasoning_share"], grid["visual_share"], grid["category"]) == (0.6, 0.15, None)
  assert experiment.mixture_meta("arts=1")["reasoning_share"] is None  # no published rates for arts


@pytest.mark.parametrize("scale, overrides", [("nano", {}), ("tiny", {}), ("nano", {"tie_embeddings": True})])
def test_decoder_params_formula_matches_the_built_model(scale, overrides):
  llm = scales.get_scale(scale, **overrides)
  assert experiment.decoder_params(llm) == scales.count_params(llm)


def test_local_recipe_keeps_what_the_experiment_is_about():
  config = experiment.base_config()
  config.data.mixture = "mix0"
  config.adapt.blind = True
  config.adapt.sft_data.remove, config.adapt.sft_data.fraction = "reasoning", 0.5
  shrunk = experiment.apply_local(config, {"adapt.sft.steps": 7})
  assert (shrunk.data.mixture, shrunk.adapt.blind, experiment.sft_variant(shrunk)) == ("mix0", True, "reasoning-50")
  assert shrunk.pretrain.scale == "nano" and shrunk.vision.kind == "contrastive" and shrunk.adapt.sft.steps == 7
  assert config.pretrain.scale == "3b"  # the input is not modified


def test_benchmark_names_follow_the_vqa_registry():
  from visual_priors.eval import benchmarks  # pylint: disable=import-outside-toplevel
  assert experiment.base_config().eval.benchmarks == list(benchmarks.PAPER_BENCHMARKS)
  assert set(experiment.benchmark_names()) == set(benchmarks.BENCHMARKS) | set(experiment.MLE_BENCHMARKS)


# Stage keys of registered experiments as they were before vision.init_from, eval.alignment.outlier_quantile,
# the "bv:" / "hf:" vision models, adapt.system_prompt and adapt.data.generated.tasks existed: fields added later
# enter a key only when set.
PINNED_KEYS = {
    # The demo's recipe (experiments/demo.py DEMO_SETTINGS: half the pre-training tokens, no text-only items, the
    # tower's patch embeddings, 64 visual tokens) moved every key.
    "demo/mix6": {"pretrain": "178196dcb030", "mmdata": "bdbf7efd743f", "vision": "f4edfc0b598d",
                  "align": "09733cc337e7", "sft": "8d27a416ea4e", "eval": "b58b52fa62dc"},
    "mix/mix6": {"pretrain": "ba59aa04936c", "mmdata": "d84ffea25bdd", "vision": "12f49b1b3b5a",
                 "align": "eaff13c0d03d", "sft": "fa680b6f3946", "eval": "19ade85ac299"},
    "encoder/dinov2-reasoning-50": {"pretrain": "76a58ddc53a5", "mmdata": "d84ffea25bdd", "vision": "b32981c57a81",
                                    "align": "146439e5a3a9", "sft": "8400f40b2ae4", "eval": "b40c2de6dfc2"},
}


@pytest.mark.parametrize("name", sorted(PINNED_KEYS))
def test_registered_experiments_keep_their_stage_keys(name):
  from visual_priors.experiment import registry  # pylint: disable=import-outside-toplevel
  assert keys(registry.get_experiment(name)) == PINNED_KEYS[name]


BIG_VISION = pathlib.Path(__file__).parents[1] / "fixtures" / "big_vision"


@pytest.fixture(scope="module")
def hf_tower(tmp_path_factory):
  from visual_priors.models.vision import random_hf  # pylint: disable=import-outside-toplevel
  return random_hf.write_random_dinov2(tmp_path_factory.mktemp("hf") / "dinov2-nano", seed=0)


def _copy(directory, to):
  import shutil  # pylint: disable=import-outside-toplevel
  return shutil.copytree(directory, to)


def test_vision_init_from_enters_the_vision_key_by_content_only_when_set(hf_tower, tmp_path):
  config = experiment.apply_overrides(local(), ["vision.encoder=dinov2-nano"])
  plain = keys(config)
  started = experiment.apply_overrides(config, [f"vision.init_from=hf:{hf_tower}"])
  moved = experiment.apply_overrides(config, [f"vision.init_from=hf:{_copy(hf_tower, tmp_path / 'elsewhere')}"])
  assert keys(started) == keys(moved)  # the content, not the location
  assert {stage for stage in plain if keys(started)[stage] != plain[stage]} == downstream(config, "vision")
  fields = experiment.stage_identities(started)["vision"].fields
  assert set(fields["init_from"]) == {"hf"} and len(fields["init_from"]["hf"]) == 64
  changed = _copy(hf_tower, tmp_path / "changed")
  (changed / "config.json").write_text((changed / "config.json").read_text().replace('"layer_norm_eps": 1e-06',
                                                                                      '"layer_norm_eps": 1e-05'))
  assert keys(experiment.apply_overrides(config, [f"vision.init_from=hf:{changed}"]))["vision"] != keys(started)["vision"]
  experiment.finalize(started, strict=True)
  npz = BIG_VISION / "vit_tok.npz"
  from_npz = experiment.apply_overrides(config, [f"vision.init_from=bv:{npz}"])
  assert set(experiment.stage_identities(from_npz)["vision"].fields["init_from"]) == {"bv"}


def test_vision_init_from_is_validated_and_its_files_checked_before_a_run(hf_tower):
  for value, message in (("dinov2.npz", r"vision.init_from 'dinov2.npz' must be 'hf:DIR'"),
                         ("bv:weights.pt", r"a big_vision checkpoint is a .npz file")):
    with pytest.raises(ValueError, match=message):
      experiment.validate(experiment.apply_overrides(local(), [f"vision.init_from={value}"]))
  both = experiment.apply_overrides(experiment.base_config(), ["vision.checkpoint=a.npz", "vision.init_from=bv:b.npz"])
  with pytest.raises(ValueError, match="both set"):
    experiment.validate(both)
  checkpoint = experiment.apply_overrides(local(), ["vision.kind=checkpoint", "vision.encoder=dinov2-nano"])
  assert experiment.missing_files(checkpoint)[0].startswith("vision.checkpoint is empty")
  assert experiment.missing_files(experiment.apply_overrides(checkpoint, [f"vision.init_from=hf:{hf_tower}"])) == []
  absent = experiment.apply_overrides(checkpoint, ["vision.init_from=hf:/nowhere/dinov2"])
  with pytest.raises(ValueError, match=r"vision.init_from 'hf:/nowhere/dinov2': /nowhere/dinov2 holds no config.json"):
    experiment.finalize(absent, strict=True)
  other = experiment.apply_overrides(checkpoint, ["vision.encoder=vit-nano", f"vision.init_from=hf:{hf_tower}"])
  assert "not this encoder's architecture: depth: checkpoint 2, encoder 1" in experiment.missing_files(other)[0]


def test_alignment_vision_models_take_sources_and_new_settings_stay_out_of_the_key(hf_tower, tmp_path):
  config = local()
  plain = keys(config)
  assert "outlier_quantile" not in experiment.stage_identities(config)["eval"].fields["alignment"]
  assert keys(experiment.apply_overrides(config, ["eval.alignment.outlier_quantile=1"])) == plain
  quantile = experiment.apply_overrides(config, ["eval.alignment.outlier_quantile=0.95", "eval.alignment.layer=best"])
  assert keys(quantile)["eval"] != plain["eval"] and keys(quantile)["sft"] == plain["sft"]
  entries = ["self", f"dinov2-nano=hf:{hf_tower}", f"vit-nano=bv:{BIG_VISION / 'siglip_map_scan.npz'}",
             f"vit-nano={BIG_VISION / 'siglip_map_prefixed.npz'}"]
  several = experiment.apply_overrides(config, [f"eval.alignment.vision_models={entries!r}"])
  experiment.finalize(several, strict=True)
  models = experiment.stage_identities(several)["eval"].fields["alignment"]["vision_models"]
  assert models[0] == "self" and models[3] == entries[3]  # a plain .npz path is hashed as the string it was
  assert set(models[1]) == {"encoder", "hf"} and set(models[2]) == {"encoder", "bv"}
  moved = experiment.apply_overrides(config, [f"eval.alignment.vision_models={[entries[0], entries[1]]!r}"])
  moved_again = experiment.apply_overrides(
      config, [f"eval.alignment.vision_models={['self', 'dinov2-nano=hf:' + str(_copy(hf_tower, tmp_path / 'b'))]!r}"])
  assert keys(moved)["eval"] == keys(moved_again)["eval"] != plain["eval"]
  for entry, message in (("dinov2-nano=hf:/nowhere", r"/nowhere holds no config.json"),
                         (f"vit-nano=hf:{hf_tower}", r"not this encoder's architecture")):
    with pytest.raises(ValueError, match=message):
      experiment.finalize(experiment.apply_overrides(config, [f"eval.alignment.vision_models={['self', entry]!r}"]),
                          strict=True)
  with pytest.raises(ValueError, match=r"'/a/b.pt' must be 'hf:DIR'"):
    experiment.validate(experiment.apply_overrides(config, ["eval.alignment.vision_models=['vit-nano=/a/b.pt']"]))
  with pytest.raises(ValueError, match=r"eval.alignment.outlier_quantile must be > 0"):
    experiment.validate(experiment.apply_overrides(config, ["eval.alignment.outlier_quantile=0"]))


RECORDED_KEYS = pathlib.Path(__file__).parents[1] / "fixtures" / "stage_keys.json"


def test_every_registered_experiment_keeps_its_recorded_stage_keys():
  """tests/fixtures/stage_keys.json holds every registered experiment's stage keys; a change that moves a key
  (and so orphans finished stages) must be deliberate: re-record the file and say why in the commit."""
  import json  # pylint: disable=import-outside-toplevel
  from visual_priors.experiment import registry  # pylint: disable=import-outside-toplevel
  recorded = json.loads(RECORDED_KEYS.read_text())
  current = {name: keys(registry.get_experiment(name)) for name in registry.experiment_names()}
  assert sorted(current) == sorted(recorded)
  moved = {name: {s: (recorded[name].get(s), k) for s, k in stage_keys.items() if recorded[name].get(s) != k}
           for name, stage_keys in current.items() if stage_keys != recorded[name]}
  assert not moved, moved
