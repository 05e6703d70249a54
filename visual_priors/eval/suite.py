"""The evaluation of one finished run: every evaluator the experiment config turns on, as result rows per stage.

    evaluate_run(config, stages, out_dir, log) -> {"sft": [rows], "pretrain": [rows]}

`stages` maps stage names to what the runner finished (`visual_priors.experiment.evaluate.stage_locations`): the
trainer run directories of "pretrain" and "sft" (or "blind"/"align"), the generated data directory
"mmdata" and the "vision" run (a contrastive run directory, a big_vision .npz or a Hugging Face directory).

  evaluated stage  evaluator                       turned on by              files under out_dir
  sft              VQA (generate -> score -> table,  eval.benchmarks           vqa/
                   with the blind control, and
                   "accuracy_chance": a uniform guess
                   among the MC and yes/no options)
  sft              MLE-Bench levels, from the VQA     eval.mle_bench            (vqa/scores.jsonl)
                   scores of mle_bench/gen_mle_bench
  sft              answer likelihood of MC and yes/no eval.likelihood          likelihood.json
                   questions ("accuracy_likelihood")
  sft              reasoning-trace probe             eval.probe.enabled        probe/
  pretrain         language (perplexity, zero-shot)  eval.language             -
  pretrain         LM-vision alignment (mutual k-NN) eval.alignment.enabled    alignment/

Where the paper is silent:
  * Public benchmarks are read under `runtime.eval_data_root` (default `<cache>/benchmarks`); the
    generated ones from the run's own mmdata directory. Absent benchmarks are reported missing, not zero.
  * MLE-Bench: the generated set ("gen_mle_bench") whenever the run has generated data, plus the released
    one ("mle_bench") when its files are present.
  * Alignment pairs are the run's caption data (at most `ALIGNMENT_PAIRS`), LM features from the pre-trained
    LM (the model whose prior is measured); vision models (`eval.alignment.vision_models`, one row
    `alignment/<name>` each and `alignment` their mean): "self" = this run's vision tower, named by its
    encoder (`vision.encoder`), and "<encoder>=<path.npz | bv:FILE.npz | hf:DIR>" entries, named by the
    encoder (a name taken twice gets "-2", "-3", ...). A vision model's features: its pooled output where it
    has one, else the mean of its patch tokens; with layer "best" every layer's class token (or patch mean).
  * Probe items are the generated Knowledge and Vision-Centric questions (the probe's groups).
Each evaluator resumes from its own files, so a crashed evaluation picks up where it stopped.

On the run's mesh (`mesh`, the runner's): the MLLM and the LM are restored into their training shardings and
every evaluator runs inside `sharding.activation_sharding(mesh, rules)`: batched greedy decoding with the KV
cache sharded, answer likelihoods, perplexity and zero-shot scores, and the LM's alignment features (the
alignment's vision models run data-parallel, replicated). Their batches are split over the mesh's batch axes
(eval batch sizes rounded up to a multiple of them) and their outputs come back replicated; predictions and
scores equal one device's (float32: within 1e-5).
"""

from __future__ import annotations

import contextlib
import pathlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from visual_priors.data import cache, segments
from visual_priors.data.multimodal import chat, loaders
from visual_priors.eval import alignment, benchmarks, judge, language, mle_bench, multiple_choice, probe
from visual_priors.eval import vqa
from visual_priors.models import sharding
from visual_priors.models.vision import ViTConfig, get_encoder
from visual_priors.models.vision import sources as vision_sources
from visual_priors.train import upstream as upstream_lib

Rows = list[dict[str, Any]]
ALIGNMENT_PAIRS = 1024  # caption-image pairs for mutual k-NN (the PRH protocol uses ~1k)
MLE_BENCHMARKS = ("mle_bench", "gen_mle_bench")
# Likelihood rows hold the whole question, its options and the answer; SFT rows may be cut shorter than that.
LIKELIHOOD_MIN_SEQ = 256


@contextlib.contextmanager
def _timed(log: Callable[[str], None], what: str, start_line: str) -> Iterator[None]:
  """Logs `start_line`, runs the block, then "eval: <what> done in N s"."""
  started = time.perf_counter()
  log(start_line)
  yield
  log(f"eval: {what} done in {time.perf_counter() - started:.1f} s")


def model_stage_of(stages: Mapping[str, pathlib.Path]) -> str:
  for stage in ("sft", "blind", "align"):
    if stage in stages:
      return stage
  raise ValueError(f"No adapted model to evaluate: the finished stages are {sorted(stages)}; the eval stage "
                   "needs an sft (or align) run.")


def _generated_paths(stages: Mapping[str, pathlib.Path]) -> dict[str, pathlib.Path]:
  """The generated benchmarks' files in this run's mmdata directory (absent files are reported missing)."""
  if "mmdata" not in stages:
    return {}
  eval_dir = pathlib.Path(stages["mmdata"]) / "eval"
  paths = {name: eval_dir / f"{name}.jsonl" for name in benchmarks.GENERATED_BENCHMARKS}
  paths["gen_mle_bench"] = eval_dir / "mle_bench.jsonl"
  return paths


def _vqa_benchmarks(config: ml_collections.ConfigDict, paths: Mapping[str, pathlib.Path]) -> list[str]:
  names = list(config.eval.benchmarks)
  if config.eval.mle_bench:
    names += [name for name in MLE_BENCHMARKS if name not in names and (name != "gen_mle_bench" or name in paths)]
  return names


def _mle_bench_rows(names: list[str], scores_path: pathlib.Path, data_root: pathlib.Path,
                    paths: Mapping[str, pathlib.Path], limit: int | None) -> Rows:
  """Per-level and overall (weighted and unweighted) accuracy from the VQA scores of the MLE-Bench sets."""
  if not scores_path.is_file():
    return []
  scores = vqa.read_scores(scores_path)
  rows: Rows = []
  for name in names:
    if name not in MLE_BENCHMARKS:
      continue
    scored = {s["id"]: s["score"] for s in scores if s["benchmark"] == name and not s["blind"]}
    if not scored:
      continue
    items = [item for item in benchmarks.load_benchmark(name, data_root, paths=paths, limit=limit)
             if item["id"] in scored]
    rows += mle_bench.level_report(items, [scored[item["id"]] >= 1.0 for item in items], benchmark=name)
  return rows


def _choice_items(names: list[str], data_root: pathlib.Path, paths: Mapping[str, pathlib.Path],
                  limit: int | None) -> Iterator[tuple[str, list[dict], list[multiple_choice.Question]]]:
  """(benchmark, items, questions) of each present benchmark's multiple-choice and yes/no questions."""
  for name in names:
    try:
      items = benchmarks.load_benchmark(name, data_root, paths=paths, limit=limit)
    except benchmarks.BenchmarkMissing:
      continue
    items = [item for item in items if item["type"] in ("mc", "yes_no")]
    if items:
      yield name, items, [multiple_choice.to_question({**item, "prompt": None}, answer_with="text") for item in items]


def _per_question_rows(metric: str, records: list[dict[str, Any]]) -> Rows:
  return [{**row, "metric": metric} for row in vqa.tabulate(records) if row["benchmark"] != "cvbench"]


ChoiceItems = list[tuple[str, list[dict], list[multiple_choice.Question]]]


def _chance_rows(choice_items: ChoiceItems) -> Rows:
  """"accuracy_chance" per benchmark, group and overall: the expected accuracy of a uniform guess among the options
  of the multiple-choice and yes/no questions (`_choice_items`; no model needed, so it is there whatever else is
  scored)."""
  records = [{"benchmark": name, "group": item["group"], "blind": False, "score": 1.0 / len(question.candidates)}
             for name, items, questions in choice_items for item, question in zip(items, questions)]
  return _per_question_rows("accuracy_chance", records)


def _likelihood_rows(model, template: chat.ChatTemplate, choice_items: ChoiceItems, *, seq_len: int,
                     batch_size: int, out_path: pathlib.Path) -> Rows:
  """"accuracy_likelihood" rows (the best-scoring option text is the answer; `multiple_choice`) per benchmark, group
  and overall, over the present benchmarks' multiple-choice and yes/no questions."""
  if out_path.is_file():  # files written before chance rows had their own function hold them too
    return [row for row in cache.read_json(out_path) if row["metric"] == "accuracy_likelihood"]
  hits = []
  for name, items, questions in choice_items:
    scores = multiple_choice.candidate_scores(model, questions, template, seq_len=seq_len, batch_size=batch_size)
    hits += [{"benchmark": name, "group": item["group"], "blind": False,
              "score": float(int(np.argmax(score)) == question.answer_index)}
             for item, question, score in zip(items, questions, scores)]
  rows = _per_question_rows("accuracy_likelihood", hits)
  cache.write_json_atomic(out_path, rows)
  return rows


def _vision_pooling(tower: ViTConfig, best: bool) -> str:
  """How a tower's features are taken (see the module docstring)."""
  if best:
    return "cls" if tower.class_token or tower.pool_type == "tok" else "mean"
  return "mean" if tower.pool_type == "none" else "head"


def vision_model_specs(config: ml_collections.ConfigDict, vision_location: pathlib.Path | None) -> dict[str, dict]:
  """`alignment.build_vision_models` specs of eval.alignment.vision_models, by row name (see the module
  docstring); `vision_location` is the vision stage's (needed for "self")."""
  best = config.eval.alignment.layer == "best"
  specs: dict[str, dict[str, Any]] = {}
  for entry in config.eval.alignment.vision_models:
    if entry == "self":
      if vision_location is None:
        raise ValueError("eval.alignment.vision_models names 'self', but the run has no vision stage output.")
      encoder, location = config.vision.encoder, pathlib.Path(vision_location)
      if location.suffix == ".npz":
        spec = {"kind": "npz", "path": str(location), "encoder": encoder}
      elif (location / upstream_lib.MANIFEST).is_file():
        tower = ViTConfig(**upstream_lib.read_run(location, "vision", ("contrastive",)).manifest["model"]["vision"])
        spec = {"kind": "contrastive", "run": str(location), "pooling": _vision_pooling(tower, best)}
      else:
        spec = {"kind": "hf", "path": str(location), "encoder": encoder}
    else:
      encoder, text = str(entry).split("=", 1)
      source = vision_sources.parse_source(text, f"eval.alignment.vision_models entry {entry!r}:", plain_npz=True)
      spec = {"kind": "hf" if source.kind == "hf" else "npz", "path": str(source.path), "encoder": encoder}
    if spec["kind"] != "contrastive":
      tower = get_encoder(encoder)
      if spec["kind"] == "hf":
        tower = vision_sources.tower_config(vision_sources.VisionSource("hf", pathlib.Path(spec["path"])), tower)
      spec["pooling"] = _vision_pooling(tower, best)
    if best:
      spec["all_layers"] = True
    name, count = encoder, 1
    while name in specs:
      count += 1
      name = f"{encoder}-{count}"
    specs[name] = spec
  return specs


def _alignment_rows(config: ml_collections.ConfigDict, stages: Mapping[str, pathlib.Path], decoder, vocab_path,
                    image_size: int, out_dir: pathlib.Path) -> Rows:
  settings = config.eval.alignment
  specs = vision_model_specs(config, stages.get("vision"))
  pairs = loaders.load_captions(pathlib.Path(stages["mmdata"]) / "captions.jsonl")[:ALIGNMENT_PAIRS]
  layer = settings.layer if settings.layer in ("last", "best") else int(settings.layer)
  quantile = float(settings.get("outlier_quantile", 1.0))
  return list(alignment.evaluate_alignment(
      decoder, vocab_path, pairs, alignment.build_vision_models(specs), k=settings.k, layer=layer,
      pooling=settings.pooling, image_size=image_size, batch_size=config.runtime.eval_batch_size,
      outlier_quantile=None if quantile == 1.0 else quantile, out_dir=out_dir))


def evaluate_run(config: ml_collections.ConfigDict, stages: Mapping[str, pathlib.Path], out_dir: pathlib.Path,
                 log: Callable[[str], None] = print, *, mesh: jax.sharding.Mesh | None = None,
                 rules: sharding.LogicalRules = sharding.DEFAULT_LOGICAL_AXIS_RULES) -> dict[str, Rows]:
  """Result rows keyed by the evaluated stage; see the module docstring.

  `mesh` (the run's, `visual_priors.experiment.runner`): the trained models are restored into their shardings on it
  (`rules`, as training places them) and every evaluator of the LM and MLLM runs on it, batches split over its
  batch axes (eval batch sizes rounded up to a multiple of them). None, or a mesh of one device, evaluates on
  that one device.
  """
  if mesh is None or mesh.devices.size == 1:  # restored onto that device; the evaluators' programs as without one
    return _evaluate_run(config, stages, pathlib.Path(out_dir), log, mesh, rules)
  with sharding.activation_sharding(mesh, rules):
    return _evaluate_run(config, stages, pathlib.Path(out_dir), log, mesh, rules)


def _evaluate_run(config: ml_collections.ConfigDict, stages: Mapping[str, pathlib.Path], out_dir: pathlib.Path,
                  log: Callable[[str], None], mesh: jax.sharding.Mesh | None,
                  rules: sharding.LogicalRules) -> dict[str, Rows]:
  model_stage = model_stage_of(stages)
  limit = int(config.eval.limit) or None
  batch_size = sharding.batch_multiple(int(config.runtime.eval_batch_size))
  if mesh is not None and mesh.devices.size > 1:
    log(f"eval: on a mesh of {mesh.devices.size} devices ({', '.join(f'{a}={n}' for a, n in mesh.shape.items())})")
  model, manifest = upstream_lib.load_trained(stages[model_stage], upstream_lib.MLLM_STAGES, mesh, rules)
  vocab_path = upstream_lib.vocabulary(manifest, f"the {model_stage} run at {stages[model_stage]}")
  chat_settings = manifest.get("data", {}).get("chat", {})
  template = chat.ChatTemplate(vocab_path, chat.ChatConfig(**chat_settings) if chat_settings else
                               chat.ChatConfig(model.config.num_visual_tokens))
  image_size = model.config.vision.image_size
  results: dict[str, Rows] = {model_stage: []}

  paths = _generated_paths(stages)
  data_root = pathlib.Path(config.runtime.eval_data_root or cache.cache_root() / "benchmarks")
  names = _vqa_benchmarks(config, paths)
  if names:
    with _timed(log, "VQA", f"eval: VQA on {len(names)} benchmarks ({', '.join(names)})"):
      generate = vqa.replies_generator(model, template, image_size=image_size,
                                       max_new_tokens=int(config.eval.max_new_tokens), batch_size=batch_size)
      vqa_rows = vqa.evaluate_vqa(names, data_root=data_root, generate=generate, out_dir=out_dir / "vqa",
                                  limit=limit, paths=paths, batch_size=max(batch_size, 64), log=log)
      results[model_stage] += list(vqa_rows)
      results[model_stage] += _mle_bench_rows(names, out_dir / "vqa" / vqa.SCORES, data_root, paths, limit)
      choice_items = list(_choice_items(names, data_root, paths, limit))
      results[model_stage] += _chance_rows(choice_items)
    if config.eval.likelihood:
      with _timed(log, "answer likelihood", "eval: answer likelihood of the multiple-choice and yes/no questions"):
        seq_len = max(int(config.adapt.sft.seq_len), LIKELIHOOD_MIN_SEQ)
        results[model_stage] += _likelihood_rows(model, template, choice_items, seq_len=seq_len,
                                                 batch_size=max(batch_size, 32), out_path=out_dir / "likelihood.json")

  if config.eval.probe.enabled:
    files = [paths[name] for name in ("gen_knowledge", "gen_vision_centric")
             if name in paths and paths[name].is_file()]
    if files:
      with _timed(log, "reasoning-trace probe", f"eval: reasoning-trace probe on {', '.join(f.stem for f in files)}"):
        generate_traces = probe.model_generate(model, template, image_size=image_size, batch_size=batch_size,
                                               max_new_tokens=int(config.eval.probe.max_new_tokens))
        trace_judge = judge.make_judge({k: config.eval.probe[k] for k in ("judge", "url", "model")})
        results[model_stage] += probe.evaluate_probe(probe.load_probe_items(files), generate_traces, trace_judge,
                                                     out_dir / "probe", limit=limit)
    else:
      log("eval: probe skipped: no generated Knowledge / Vision-Centric questions in this run's data")

  if (config.eval.language or config.eval.alignment.enabled) and "pretrain" in stages:
    decoder, lm_manifest = upstream_lib.load_trained(stages["pretrain"], ("pretrain",), mesh, rules)
    lm_vocab = upstream_lib.vocabulary(lm_manifest, f"the pretrain run at {stages['pretrain']}")
    results["pretrain"] = []
    if config.eval.language:
      with _timed(log, "language", "eval: language (validation perplexity per source and category, zero-shot)"):
        store = segments.recorded_store(lm_manifest["data"]["segment_store"])
        results["pretrain"] += language.evaluate_language(
            decoder, lm_vocab, store=store, data_root=data_root / "language", seq_len=int(config.pretrain.seq_len),
            batch_size=batch_size, limit=limit, seed=int(config.seed), log=log)
    if config.eval.alignment.enabled and "mmdata" in stages and "vision" in stages:
      with _timed(log, "alignment", "eval: LM-vision alignment (mutual k-NN)"):
        results["pretrain"] += _alignment_rows(config, stages, decoder, lm_vocab, image_size, out_dir / "alignment")
  return results
