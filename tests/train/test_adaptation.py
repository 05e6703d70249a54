"""The stages on tiny models: defaults, upstream loading and records, frozen parts, blind, npz vision, and
the acceptance run (contrastive -> align -> sft on generated data answers held-out questions).

Most tests marked slow share one chain of six tiny runs on random data (about a minute on a 2-core CPU).
"""

from __future__ import annotations

import json
import pathlib
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from visual_priors.data import cache, vocab as vocab_lib
from visual_priors.data.multimodal import chat, generate, loaders
from visual_priors.data.multimodal.gen_questions import MC_INSTRUCTION, SHORT_INSTRUCTION
from visual_priors.eval import multiple_choice
from visual_priors.experiment.vision import caption_vocab  # the same settings: a 1000-piece unigram model
from visual_priors.models.vision import TextConfig, TwoTower, get_encoder
from visual_priors.models.vision.checkpoint import big_vision_key
from visual_priors.train import adaptation, checkpoint, partition, pretrain, stage_data, upstream

VOCAB = 64
IMAGE = 16  # vit-nano: 16 x 16 images, 4 x 4 patches
VISUAL = 4  # the patch grid resampled to 2 x 2 visual tokens
SEQ = 16
SLOTS = slice(1, 1 + VISUAL)
BATCH = 8
# Most runs use one device (they compile 2-3x faster); the pretrain and align runs shard over all 8, so
# upstream weights are restored across different meshes.
ONE_DEVICE = jax.devices()[:1]


def _instruct_rows(count: int, seed: int, with_images: bool = True) -> list[dict[str, np.ndarray]]:
  """Rows in the pipeline's layout: image slots after a BOS, then a short prompt, the answer supervised."""
  rng = np.random.default_rng(seed)
  rows = []
  for _ in range(count):
    tokens = rng.integers(3, VOCAB, SEQ + 1).astype(np.int32)
    mask = np.zeros(SEQ, np.int32)
    if with_images:
      tokens[SLOTS.start + 1:SLOTS.stop + 1] = 0
      mask[SLOTS] = 1
    weights = np.zeros(SEQ, np.int32)
    weights[SEQ // 2:] = 1
    rows.append({
        "images": rng.uniform(-1, 1, (IMAGE, IMAGE, 3)).astype(np.float32) * with_images,
        "has_image": np.int32(with_images),
        "decoder_input_tokens": tokens[:-1], "decoder_target_tokens": tokens[1:],
        "decoder_segment_ids": np.ones(SEQ, np.int32), "decoder_positions": np.arange(SEQ, dtype=np.int32),
        "decoder_loss_weights": weights, "decoder_image_mask": mask,
    })
  return rows


def _caption_rows(count: int, seed: int) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  return [{"images": rng.uniform(-1, 1, (IMAGE, IMAGE, 3)).astype(np.float32),
           "text_tokens": rng.integers(3, VOCAB, 8).astype(np.int32)} for _ in range(count)]


def _data(rows: list[dict[str, np.ndarray]]):
  """A factory of repeating grain iterators (get_state/set_state) over batches of `rows`."""
  dataset = grain.MapDataset.source(rows).repeat(None).batch(BATCH, drop_remainder=True)
  return lambda: iter(dataset.to_iter_dataset())


def _train_settings(config, work_dir: pathlib.Path, steps: int = 2) -> None:
  config.train.work_dir = str(work_dir)
  config.train.mesh = {"data": 1, "fsdp": -1, "tensor": 1}
  config.train.batch_size = BATCH
  config.train.num_steps = steps
  config.train.log_every_steps = 1
  config.train.checkpoint.every_steps = steps
  config.train.checkpoint.async_save = False


def _pretrain(work_dir: pathlib.Path) -> pathlib.Path:
  from visual_priors.train import config as config_lib  # pylint: disable=import-outside-toplevel
  config = config_lib.default_config()
  config.scale = "nano"
  config.model.vocab_size = VOCAB
  config.model.attention_impl = "xla"
  config.batch_size, config.seq_len = BATCH, SEQ
  config.num_steps, config.token_budget = 2, 0
  config.optimizer.warmup_steps = 1
  config.checkpoint.every_steps = 2
  config.checkpoint.async_save = False
  config.work_dir = str(work_dir)
  pretrain.pretrain(config, train_data=_data(_instruct_rows(16, 9, with_images=False)))
  return work_dir


def _stored(run_dir: pathlib.Path) -> dict[str, np.ndarray]:
  """Every model variable of a finished run's final checkpoint, by path (params and frozen merged)."""
  manifest = cache.read_json(run_dir / "manifest.json")
  step_dir = pathlib.Path(manifest["checkpoint_dir"]) / str(manifest["step"])
  state_dir = step_dir / checkpoint.STATE_ITEM
  metadata = ocp.PyTreeCheckpointer().metadata(state_dir).item_metadata.tree
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)
  tree = ocp.PyTreeCheckpointer().restore(state_dir, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  return {**partition.flatten_paths(tree["params"]), **partition.flatten_paths(tree["frozen"])}


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, pathlib.Path]:
  """pretrain -> contrastive -> align -> sft, and align -> blind -> sft, on tiny models and random data."""
  root = tmp_path_factory.mktemp("chain")
  runs = {"lm": _pretrain(root / "lm")}

  contrastive = adaptation.stage_config("contrastive")
  _train_settings(contrastive, root / "contrastive")
  contrastive.train.seq_len = 8
  contrastive.vision.encoder = "vit-nano"
  contrastive.vocab_size = VOCAB
  adaptation.run_stage(contrastive, train_data=_data(_caption_rows(16, 0)), num_examples=16, devices=ONE_DEVICE)
  runs["contrastive"] = root / "contrastive"

  align = adaptation.stage_config("align")
  _train_settings(align, root / "align")
  align.train.seq_len = SEQ
  align.mllm.num_visual_tokens = VISUAL
  align.upstream.lm, align.upstream.vision = str(runs["lm"]), str(runs["contrastive"])
  adaptation.run_stage(align, train_data=_data(_instruct_rows(16, 1)), num_examples=16,
                   data_identity={"instruct": "synthetic"})
  runs["align"] = root / "align"

  for name, init, with_images in (("sft", "align", True), ("blind", "align", False), ("blind_sft", "blind", True)):
    config = adaptation.stage_config("blind" if name == "blind" else "sft")
    _train_settings(config, root / name)
    config.train.seq_len = SEQ
    config.upstream.init = str(runs[init])
    adaptation.run_stage(config, train_data=_data(_instruct_rows(16, 2, with_images)), num_examples=16,
                     devices=ONE_DEVICE)
    runs[name] = root / name
  return runs


def test_stage_defaults_are_the_papers():
  align, sft = adaptation.stage_config("align"), adaptation.stage_config("sft")
  assert (align.train.optimizer.peak_lr, align.warmup_fraction, align.epochs) == (1e-3, 0.06, 1.0)
  assert (sft.train.optimizer.peak_lr, sft.warmup_fraction, sft.epochs) == (4e-5, 0.03, 1.0)
  assert align.train.batch_size == sft.train.batch_size == 512
  assert align.train.trainable == "proj/.*" and sft.train.trainable == "(proj|llm)/.*"
  assert adaptation.stage_config("blind").train.trainable == "llm/.*"
  assert align.mllm.num_visual_tokens == 576
  # One epoch of 51,200 examples at batch 512 is 100 steps, 6 (align) and 3 (sft) of them warm-up.
  align.train.work_dir = sft.train.work_dir = "/tmp/unused"
  assert (adaptation.trainer_config(align, 51_200).num_steps, adaptation.trainer_config(align, 51_200).optimizer.warmup_steps) \
      == (100, 6)
  assert adaptation.trainer_config(sft, 51_200).optimizer.warmup_steps == 3
  assert adaptation.trainer_config(sft, 51_201).num_steps == 101  # a partial last batch still counts


def test_stage_configs_are_validated_loudly():
  with pytest.raises(KeyError, match="Did you mean 'align'"):
    adaptation.stage_config("allign")
  config = adaptation.stage_config("align")
  with pytest.raises(ValueError, match="upstream.lm"):
    adaptation.validate(config)
  config.upstream.lm = config.upstream.vision = "/somewhere"
  config.mllm.num_visual_token = 9
  with pytest.raises(ValueError, match="mllm.num_visual_token"):
    adaptation.validate(config)
  missing = adaptation.stage_config("sft")
  missing.upstream.init = "/no/such/run"
  missing.train.work_dir = "/tmp/unused"
  with pytest.raises(FileNotFoundError, match="init upstream /no/such/run has no manifest.json"):
    adaptation.run_stage(missing, train_data=_data(_instruct_rows(8, 0)), num_examples=8)


@pytest.mark.slow
def test_align_trains_only_the_projector_and_frozen_leaves_stay_bit_identical(chain):
  lm, vision, align = _stored(chain["lm"]), _stored(chain["contrastive"]), _stored(chain["align"])
  assert {path.split("/")[0] for path in align} == {"img", "proj", "llm"}
  for path, value in align.items():
    if path.startswith("llm/"):
      np.testing.assert_array_equal(value, lm[path.removeprefix("llm/")], err_msg=path)
    elif path.startswith("img/"):
      np.testing.assert_array_equal(value, vision[path], err_msg=path)
  # The MLLM's tower reads patch tokens only: the contrastive run's pooling and class heads are not copied.
  assert not any(path.startswith(("img/map_head", "img/head")) for path in align)
  manifest = cache.read_json(chain["align"] / "manifest.json")
  proj_size = sum(value.size for path, value in align.items() if path.startswith("proj/"))
  assert manifest["trainable_parameters"] == proj_size
  assert manifest["final_metrics"]["grad_norm"] > 0


def test_align_feeds_the_projector_from_the_chosen_tower_layer(chain, tmp_path):
  config = adaptation.stage_config("align")
  _train_settings(config, tmp_path / "align", steps=1)
  config.train.seq_len = SEQ
  config.mllm.num_visual_tokens = VISUAL
  config.vision.feature_layer = 0  # the patch embeddings, before any block
  config.upstream.lm, config.upstream.vision = str(chain["lm"]), str(chain["contrastive"])
  adaptation.run_stage(config, train_data=_data(_instruct_rows(8, 1)), num_examples=8, devices=ONE_DEVICE)
  assert cache.read_json(tmp_path / "align" / "manifest.json")["model"]["mllm"]["vision"]["feature_layer"] == 0
  layer0, _ = upstream.load_trained(tmp_path / "align")
  default, _ = upstream.load_trained(chain["align"])
  images = _instruct_rows(1, 5)[0]["images"][None]
  embeddings = layer0.img.embed(images)  # no class token: the patch tokens as they enter the first block
  _, tokens = layer0.img(images)
  np.testing.assert_allclose(np.asarray(tokens), np.asarray(embeddings), rtol=1e-6)
  assert not np.allclose(np.asarray(default.img(images)[1]), np.asarray(embeddings))
  config.vision.feature_layer = 9
  config.train.work_dir = str(tmp_path / "bad")
  with pytest.raises(ValueError, match="feature_layer 9 is out of range"):
    adaptation.run_stage(config, train_data=_data(_instruct_rows(8, 1)), num_examples=8, devices=ONE_DEVICE)


@pytest.mark.slow
def test_manifests_record_each_upstream_checkpoint_and_its_sha256(chain):
  align = cache.read_json(chain["align"] / "manifest.json")
  records = {record["role"]: record for record in align["upstream"]}
  assert set(records) == {"lm", "vision"}
  for role, run in (("lm", "lm"), ("vision", "contrastive")):
    record = records[role]
    assert record["path"] == str(chain[run].absolute())
    assert record["manifest_sha256"] == cache.sha256_file(chain[run] / "manifest.json")
    assert record["step"] == 2
  assert align["data"] == {"instruct": "synthetic"}
  assert align["model"]["mllm"]["num_visual_tokens"] == VISUAL
  sft = cache.read_json(chain["sft"] / "manifest.json")
  assert [record["role"] for record in sft["upstream"]] == ["init"]
  assert sft["upstream"][0]["manifest_sha256"] == cache.sha256_file(chain["align"] / "manifest.json")
  assert sorted(record["role"] for record in sft["lineage"]) == ["lm", "vision"]
  blind_sft = cache.read_json(chain["blind_sft"] / "manifest.json")
  assert blind_sft["upstream"][0]["stage"] == "blind"
  assert sorted(record["role"] for record in blind_sft["lineage"]) == ["init", "lm", "vision"]


@pytest.mark.slow
def test_sft_trains_projector_and_lm_from_align_weights_and_keeps_the_encoder(chain):
  align, sft = _stored(chain["align"]), _stored(chain["sft"])
  changed = {path.split("/")[0] for path in align if not np.array_equal(align[path], sft[path])}
  assert changed == {"proj", "llm"}
  manifest = cache.read_json(chain["sft"] / "manifest.json")
  assert manifest["trainable_parameters"] == sum(v.size for p, v in sft.items() if not p.startswith("img/"))


@pytest.mark.slow
def test_blind_phase_trains_only_the_lm_on_text_and_refuses_image_batches(chain, tmp_path):
  align, blind = _stored(chain["align"]), _stored(chain["blind"])
  changed = {path.split("/")[0] for path in align if not np.array_equal(align[path], blind[path])}
  assert changed == {"llm"}
  config = adaptation.stage_config("blind")
  _train_settings(config, tmp_path / "blind")
  config.train.seq_len = SEQ
  config.upstream.init = str(chain["align"])
  with pytest.raises(ValueError, match="text_only=True"):
    adaptation.run_stage(config, train_data=_data(_instruct_rows(16, 3, with_images=True)), num_examples=16,
                     devices=ONE_DEVICE)


@pytest.mark.slow
def test_load_trained_returns_the_trained_mllm(chain):
  model, manifest = upstream.load_trained(chain["sft"])
  assert manifest["stage"] == "sft"
  stored = _stored(chain["sft"])
  for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    np.testing.assert_array_equal(np.asarray(variable[...]), stored["/".join(map(str, path))])
  row = _instruct_rows(1, 5)[0]
  logits = model(row["images"][None], row["decoder_input_tokens"][None], image_mask_bt=row["decoder_image_mask"][None])
  assert logits.shape == (1, SEQ, VOCAB) and np.isfinite(np.asarray(logits)).all()


@pytest.mark.slow
def test_align_loads_a_big_vision_npz_encoder(chain, tmp_path):
  text = TextConfig(vocab_size=VOCAB, width=32, depth=1, mlp_dim=64, num_heads=2, max_len=8, dtype="float32")
  towers = TwoTower(get_encoder("vit-nano"), text, 32, rngs=nnx.Rngs(7))
  arrays = {big_vision_key(path): np.asarray(variable[...])
            for path, variable in nnx.to_flat_state(nnx.state(towers, nnx.Param))}
  npz = tmp_path / "siglip.npz"
  np.savez(npz, **arrays)
  config = adaptation.stage_config("align")
  _train_settings(config, tmp_path / "align", steps=1)
  config.train.seq_len = SEQ
  config.mllm.num_visual_tokens = VISUAL
  config.vision.encoder = "vit-nano"
  config.upstream.lm, config.upstream.vision = str(chain["lm"]), str(npz)
  adaptation.run_stage(config, train_data=_data(_instruct_rows(8, 4)), num_examples=8, devices=ONE_DEVICE)
  stored = _stored(tmp_path / "align")
  for path, value in stored.items():
    if path.startswith("img/"):
      np.testing.assert_array_equal(value, arrays[big_vision_key(path.split("/"))], err_msg=path)
  record = cache.read_json(tmp_path / "align" / "manifest.json")["upstream"][1]
  assert record == {"role": "vision", "path": str(npz), "sha256": cache.sha256_file(npz), "encoder": "vit-nano"}


@pytest.mark.slow
def test_contrastive_manifest_describes_both_towers(chain):
  manifest = cache.read_json(chain["contrastive"] / "manifest.json")
  assert manifest["upstream"] == [] and manifest["model"]["embed_dim"] == 32
  assert manifest["model"]["vision"]["image_size"] == IMAGE and manifest["model"]["text"]["vocab_size"] == VOCAB
  assert json.dumps(manifest)  # plain JSON throughout
  assert upstream.read_run(chain["contrastive"], "vision", ("contrastive",)).record["stage"] == "contrastive"
  with pytest.raises(ValueError, match="is a 'contrastive' run; expected pretrain"):
    upstream.read_run(chain["contrastive"], "lm", ("pretrain",))


def _short_answer(item: dict) -> dict:
  """A generated instruction item with its lettered multiple-choice turns asked as short-answer questions.

  "What colour is the circle?\nA. pink\nB. blue ...\n<letter instruction>" -> "D" becomes
  "What colour is the circle?\n<short-answer instruction>" -> "blue" (VQAv2-style, as LLaVA mixes both).
  """
  turns = []
  conversation = item["conversations"]
  for question, answer in zip(conversation[::2], conversation[1::2]):
    text, reply = question["value"], answer["value"]
    if text.endswith(MC_INSTRUCTION):
      lines = text[:-len(MC_INSTRUCTION)].rstrip("\n").split("\n")
      options = {line[0]: line[3:] for line in lines if line[1:3] == ". "}
      stem = [line for line in lines if line[1:3] != ". "]
      text, reply = "\n".join(stem + [SHORT_INSTRUCTION]), options[reply]
    turns += [{**question, "value": text}, {**answer, "value": reply}]
  return {**item, "conversations": turns}


@pytest.mark.slow
def test_contrastive_align_sft_on_generated_data_answers_held_out_questions(tmp_path):
  """The acceptance run: generated shapes-on-photos data, colour questions, tiny towers and a nano LM.

  contrastive trains the towers on captions, align the projector on captions asked as conversations,
  sft the projector and LM on the instruction data (one item in five text-only). Held-out multiple-choice
  questions (unseen images and background crops) are scored by the likelihood of each choice's text.
  """
  start = time.perf_counter()
  gen = tmp_path / "gen"
  generate.generate(gen, seed=0, image_size=32, n_captions=400, n_instruct=800, n_eval_per_benchmark=200,
                    n_mle_per_level=0, objects="shapes", tasks=["colour"], log=lambda _: None)
  captions = loaders.load_captions(gen / "captions.jsonl")
  instruct = [_short_answer(item) for item in loaders.load_llava(gen / "instruct.json")]
  questions = multiple_choice.read_questions(gen / "eval" / "gen_general.jsonl", answer_with="text")
  texts = ([r["caption"] for r in captions] + [t["value"] for r in instruct for t in r["conversations"]]
           + [q.prompt for q in questions] + [c for q in questions for c in q.candidates])
  vocab = caption_vocab(texts, tmp_path / "spm")
  vocab_size = vocab_lib.load_processor(vocab).get_piece_size()
  # Captions asked as conversations need more room than the short-answer rows: every caption fits in 80 tokens.
  visual, seq_len, align_seq_len, batch = 16, 64, 80, 32

  def data(stage: str, records: list, seq: int = seq_len, rows: int = batch) -> stage_data.StageData:
    return stage_data.stage_data(stage, records, vocab_path=vocab, batch_size=rows, seq_len=seq, image_size=32,
                                 num_visual_tokens=visual, system_prompt="", drop_unsupervised=True)

  def settings(config, name: str, steps: int, lr: float, rows: int = batch, seq: int = seq_len) -> None:
    _train_settings(config, tmp_path / name, steps)
    config.train.batch_size, config.train.seq_len = rows, seq
    config.train.optimizer.peak_lr = lr
    config.train.log_every_steps = 50  # each log is a host sync

  from visual_priors.train import config as config_lib  # pylint: disable=import-outside-toplevel
  lm = config_lib.default_config()
  lm.scale, lm.model.vocab_size, lm.model.attention_impl = "nano", vocab_size, "xla"
  lm.batch_size, lm.seq_len, lm.num_steps, lm.token_budget = batch, seq_len, 1, 0
  lm.work_dir, lm.mesh = str(tmp_path / "lm"), {"data": 1, "fsdp": -1, "tensor": 1}
  # An untrained LM (the scale sweep's "0B" runs): what the chain learns here comes from align and sft.
  pretrain.save_untrained(lm, data_identity={"vocab": str(vocab)}, devices=ONE_DEVICE)

  contrastive = adaptation.stage_config("contrastive")
  settings(contrastive, "contrastive", 30, 1e-3)
  contrastive.train.seq_len = 24
  contrastive.vision.encoder, contrastive.vocab_size = "vit-tiny", vocab_size
  caption_data = data("contrastive", captions, seq=24)
  adaptation.run_stage(contrastive, train_data=caption_data.train_data, num_examples=len(captions), devices=ONE_DEVICE)

  align = adaptation.stage_config("align")
  settings(align, "align", 15, 2e-3, seq=align_seq_len)
  align.mllm.num_visual_tokens, align.mllm.resample = visual, "area"
  align.upstream.lm, align.upstream.vision = str(tmp_path / "lm"), str(tmp_path / "contrastive")
  align_records = stage_data.caption_conversations(captions)
  adaptation.run_stage(align, train_data=data("align", align_records, seq=align_seq_len).train_data,
                   num_examples=len(align_records),
                   devices=ONE_DEVICE)

  # Half batches, more steps: on a 2-core CPU a 16-row step takes under half the time of a 32-row one.
  sft = adaptation.stage_config("sft")
  settings(sft, "sft", 250, 3e-3, rows=16)
  sft.upstream.init = str(tmp_path / "align")
  adaptation.run_stage(sft, train_data=data("sft", instruct, rows=16).train_data, num_examples=len(instruct),
                   devices=ONE_DEVICE)

  template = chat.ChatTemplate(vocab, chat.ChatConfig(visual, system_prompt=""))
  results = {}
  for name in ("align", "sft"):
    model, _ = upstream.load_trained(tmp_path / name)
    results[name] = multiple_choice.evaluate(model, questions, template, seq_len=seq_len, batch_size=64)
  print({name: (r["accuracy"], r["chance"]) for name, r in results.items()}, f"{time.perf_counter() - start:.1f} s")
  assert results["sft"]["count"] == 200 and results["sft"]["chance"] == 0.25
  assert results["sft"]["accuracy"] >= results["sft"]["chance"] + 0.12
  assert results["sft"]["accuracy"] >= results["align"]["accuracy"] + 0.1


# --- vision towers from checkpoints others wrote ("hf:DIR", "bv:FILE.npz") --------------------------------------

BIG_VISION = pathlib.Path(__file__).parents[1] / "fixtures" / "big_vision"
# The big_vision fixtures' image tower (width 32, depth 2, 2 heads, MLP 64, 16 px in 4 x 4 patches, MAP pooling).
FIXTURE_TOWER = "bv-fixture-d2"


@pytest.fixture
def fixture_encoder(monkeypatch):
  from visual_priors.models.vision import ViTConfig, registry  # pylint: disable=import-outside-toplevel
  monkeypatch.setitem(registry.ENCODERS, FIXTURE_TOWER, ViTConfig(
      image_size=IMAGE, patch_size=4, width=32, depth=2, mlp_dim=64, num_heads=2, pool_type="map", dtype="float32"))
  return FIXTURE_TOWER


@pytest.fixture(scope="module")
def hf_dinov2(tmp_path_factory) -> pathlib.Path:
  """A random transformers Dinov2Model of the registered dinov2-nano shape, saved with save_pretrained."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  model = transformers.Dinov2Model(transformers.Dinov2Config(
      hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=4, image_size=IMAGE))
  with torch.no_grad():  # no parameter left at a constant initial value, so a mis-mapped one shows
    for parameter in model.parameters():
      parameter.add_(0.05 * torch.randn_like(parameter))
  out = tmp_path_factory.mktemp("hf") / "dinov2"
  model.save_pretrained(out)
  return out


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> pathlib.Path:
  return _pretrain(tmp_path_factory.mktemp("lm") / "lm")


def _expected_tower(source: str, encoder: str, prefix: str = "img/") -> dict[str, np.ndarray]:
  from visual_priors.models.vision import sources  # pylint: disable=import-outside-toplevel
  parsed = sources.parse_source(source, "test")
  config = sources.tower_config(parsed, get_encoder(encoder))
  return {path: np.asarray(value) for path, value in sources.tower_parameters(parsed, config, prefix).items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hf", "bv"])
def test_contrastive_starts_its_image_tower_from_a_checkpoint(kind, hf_dinov2, fixture_encoder, tmp_path):
  source, encoder = ((f"hf:{hf_dinov2}", "dinov2-nano") if kind == "hf" else
                     (f"bv:{BIG_VISION / 'siglip_map_prefixed.npz'}", fixture_encoder))
  config = adaptation.stage_config("contrastive")
  _train_settings(config, tmp_path / "contrastive", steps=1)
  config.train.seq_len = 8
  config.train.frozen = "img/(?!head/).*"  # the tower as loaded; its new head, the text tower, t and b train
  config.vision.encoder = encoder
  config.vision.init_from = source
  config.vocab_size = VOCAB
  adaptation.run_stage(config, train_data=_data(_caption_rows(16, 0)), num_examples=16, devices=ONE_DEVICE)
  stored = _stored(tmp_path / "contrastive")
  expected = _expected_tower(source, encoder)
  assert expected and "img/head/kernel" in stored and "img/head/kernel" not in expected
  for path, value in expected.items():
    np.testing.assert_array_equal(stored[path], value, err_msg=path)
  manifest = cache.read_json(tmp_path / "contrastive" / "manifest.json")
  [record] = manifest["upstream"]
  assert record["role"] == "vision" and record["encoder"] == encoder
  assert (record["format"], len(record["content_sha256"])) == ("hf", 64) if kind == "hf" else "sha256" in record
  assert manifest["model"]["vision"]["class_token"] is (kind == "hf")  # the tower as the checkpoint built it


@pytest.mark.slow
def test_align_reads_a_hugging_face_tower_frozen_or_trained_by_the_regex(lm_run, hf_dinov2, tmp_path):
  source = f"hf:{hf_dinov2}"
  expected = _expected_tower(source, "dinov2-nano")
  runs = {}
  for name, trainable in (("frozen", "proj/.*"), ("trained", "(proj|img)/.*")):
    config = adaptation.stage_config("align")
    _train_settings(config, tmp_path / name, steps=1)
    config.train.seq_len = SEQ
    config.train.trainable = trainable
    config.train.optimizer.peak_lr = 0.1
    config.train.optimizer.warmup_steps = 0
    config.mllm.num_visual_tokens = VISUAL
    config.vision.encoder = "dinov2-nano"
    config.upstream.lm, config.upstream.vision = str(lm_run), source
    assert adaptation.data_spec(config).image_size == IMAGE
    adaptation.run_stage(config, train_data=_data(_instruct_rows(8, 4)), num_examples=8, devices=ONE_DEVICE)
    runs[name] = _stored(tmp_path / name)
  for path, value in expected.items():
    np.testing.assert_array_equal(runs["frozen"][path], value, err_msg=path)
  assert any(not np.array_equal(runs["trained"][path], value) for path, value in expected.items())
  manifest = cache.read_json(tmp_path / "frozen" / "manifest.json")
  assert manifest["upstream"][1]["format"] == "hf" and manifest["upstream"][1]["path"] == str(hf_dinov2)
  assert manifest["model"]["mllm"]["vision"]["class_token"] is True
  model, _ = upstream.load_trained(tmp_path / "frozen")
  row = _instruct_rows(1, 5)[0]
  logits = model(row["images"][None], row["decoder_input_tokens"][None], image_mask_bt=row["decoder_image_mask"][None])
  assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.slow
def test_align_reads_a_big_vision_file_named_as_a_source(lm_run, fixture_encoder, tmp_path):
  npz = BIG_VISION / "siglip_map_scan.npz"
  config = adaptation.stage_config("align")
  _train_settings(config, tmp_path / "align", steps=1)
  config.train.seq_len = SEQ
  config.mllm.num_visual_tokens = VISUAL
  config.vision.encoder = fixture_encoder
  config.upstream.lm, config.upstream.vision = str(lm_run), f"bv:{npz}"
  adaptation.run_stage(config, train_data=_data(_instruct_rows(8, 4)), num_examples=8, devices=ONE_DEVICE)
  stored = _stored(tmp_path / "align")
  expected = _expected_tower(f"bv:{npz}", fixture_encoder)
  assert not any(path.startswith("img/map_head/") for path in stored)  # the MLLM reads patch tokens
  for path, value in stored.items():
    if path.startswith("img/"):
      np.testing.assert_array_equal(value, expected[path], err_msg=path)
  record = cache.read_json(tmp_path / "align" / "manifest.json")["upstream"][1]
  assert record == {"role": "vision", "path": str(npz), "sha256": cache.sha256_file(npz), "encoder": fixture_encoder}


def test_vision_sources_are_checked_before_a_stage_runs(hf_dinov2):
  config = adaptation.stage_config("align")
  config.upstream.lm, config.upstream.vision = "/somewhere", "bv:/somewhere/weights.pt"
  with pytest.raises(ValueError, match=r"upstream.vision .* a .npz file"):
    adaptation.validate(config)
  contrastive = adaptation.stage_config("contrastive")
  contrastive.vision.init_from = "dinov2"
  with pytest.raises(ValueError, match=r"vision.init_from 'dinov2' must be 'hf:DIR'"):
    adaptation.validate(contrastive)
  contrastive.vision.init_from, contrastive.vision.encoder = f"hf:{hf_dinov2}", "vit-nano"
  contrastive.vocab_size = VOCAB
  with pytest.raises(ValueError, match="not this encoder's architecture: depth: checkpoint 2, encoder 1"):
    adaptation.run_stage(contrastive, train_data=_data(_caption_rows(8, 0)), num_examples=8)
