"""The demo: demo-sized local data, the nano mixture ablation (experiments/demo.py) end to end, an HTML report.

    python -m visual_priors demo [--root runs/demo] [--reduced] [--seeds 0,1]

1. Builds the local corpora (every built-in source, at most `DataSize.max_mb_per_source` each), a
   SentencePiece vocabulary and a labelled segment store, into `<root>/data/<size>/` (its own cache, so the
   full-size corpora of `data build` are never replaced; package downloads are shared).
2. Runs every `demo/*` experiment once per seed of `SEEDS` (the grid's seed axis), with `data.store` set to that
   store: pretrain per mixture and seed, the generated data (shared), the contrastive vision tower (per seed),
   align, sft and eval per mixture and seed, into `<root>` (the runner's stages/, runs/, results/). The LM-vision alignment is measured against two vision models: the
   run's own tower ("self", vit-tiny) and `ALIGNMENT_TOWER`, a random-init DINOv2-layout tower in Hugging Face
   format (config.json + model.safetensors) that `models/vision/random_hf.py` writes from a seed into
   `<root>/data/vision/` on first use (no weights can be downloaded here, and no torch is needed). It is
   added as an override (`eval.alignment.vision_models`), so the registered demo experiments keep their keys.
3. Writes `<root>/report.html` from the results with notes on what a nano run can and cannot show, and the
   comparisons fixed before the runs (`analysis/comparison.py`): per group, whether each run learned from the
   images, whether pre-training helped against the untrained control, and whether the mixtures differ.

Every step is cached (corpora, vocabulary and store by their manifests, stages by their keys), so a second
run finishes in seconds. `--reduced` runs the same path at CI size: tiny corpora and the experiments' own
`reduced` settings (plus `REDUCED_OVERRIDES`), on the first `REDUCED_MIXTURES` mixture(s).
"""

from __future__ import annotations

import dataclasses
import pathlib
import shlex
import time
from collections.abc import Callable, Sequence

import jax

from visual_priors.experiment import grid
from visual_priors.experiment.grid import GridRow

REDUCED_MIXTURES = 1
# The seed axis of the demo (grid `seeds`): every experiment runs once per seed, so the report's comparisons pool
# seed-paired differences. The reduced demo runs one seed: it checks the pipeline, it compares nothing.
SEEDS = (0, 1)
REDUCED_SEEDS = (0,)
# The reduced data's 1000-piece vocabulary spells captions and questions in more tokens, so its rows need more room
# than the local recipe's 80 (align) and 128 (sft) tokens.
REDUCED_OVERRIDES = ("adapt.align.seq_len=128", "adapt.sft.seq_len=128")
# The second vision model of the alignment rows: (registered encoder, seed of its random weights).
ALIGNMENT_TOWER = ("dinov2-nano", 0)
ALIGNMENT_NOTE = (
    "Two vision models: the run's own tower (trained contrastively on the generated captions) and "
    "{encoder}, a DINOv2-layout tower in Hugging Face format (config.json + model.safetensors) with random "
    "weights (seed {seed}), written by the framework because no pre-trained weights can be downloaded here. "
    "Its column measures how much image-layout structure the LM's caption features share with an untrained "
    "tower, not a learned visual prior; with real weights, list them in eval.alignment.vision_models "
    "('dinov2-g14-224=hf:DIR').")


@dataclasses.dataclass(frozen=True)
class DataSize:
  name: str
  max_mb_per_source: float  # corpus text per source
  vocab_mb_per_source: float  # of which the vocabulary trains on this much (SentencePiece dominates the build)
  vocab_size: int
  segment_length: int


# Sized so that the cold build (downloads cached) takes about a minute on two CPU cores.
DEMO_DATA = DataSize("demo", max_mb_per_source=1.0, vocab_mb_per_source=0.5, vocab_size=4000, segment_length=256)
REDUCED_DATA = DataSize("reduced", max_mb_per_source=0.05, vocab_mb_per_source=0.05, vocab_size=1000,
                        segment_length=64)

NOTES = """\
This is the nano demo: a {params} LM pre-trained on {tokens} tokens per mixture (and the same LM untrained, the
control), a vit-tiny image tower trained contrastively on generated captions, and short align and SFT phases on
generated image-text data, all on a CPU in minutes, each experiment once per seed ({seeds}). It shows that the whole
pipeline runs and how its outputs look: the per-group VQA tables on the generated benchmarks, MLE-Bench-style
existence by object size, language perplexity per source, alignment and the reasoning-trace probe.

The comparisons were fixed before the runs: per group, whether each run learned from the images (above chance and
above the same model with the images withheld), whether pre-training helped against the untrained control, and
whether the mixtures differ, paired by seed and question. Their answers are in "Pre-registered comparisons", in
words. At this size the LM has seen a few hundred thousand tokens (the paper: billions), so the mixtures are
expected to differ by no more than run-to-run noise, and "cannot tell" is a likely answer. Read the demo as a
template for the real grid (`python -m visual_priors grid --filter '^mix/' --seeds 0,1` on accelerators), not as
evidence about visual priors."""


@dataclasses.dataclass(frozen=True)
class DemoResult:
  root: pathlib.Path
  store: pathlib.Path
  runs: list[GridRow]
  report: pathlib.Path | None
  seconds: dict[str, float]  # "data", "runs", "report", "total"

  @property
  def failed(self) -> bool:
    return any(row.status in ("failed", "interrupted") for row in self.runs)


def build_data(size: DataSize, cache_dir: pathlib.Path, log: Callable[[str], None] = print) -> pathlib.Path:
  """Corpora, vocabulary and lexicon-labelled segment store of every built-in source; returns the store path."""
  import ml_collections  # pylint: disable=import-outside-toplevel

  from visual_priors.data import corpora, segments, vocab  # pylint: disable=import-outside-toplevel
  from visual_priors.data.labelling import make_labeller  # pylint: disable=import-outside-toplevel

  sources = list(corpora.BUILTIN_SOURCES)
  corpora.build_corpora(sources, cache_dir=cache_dir, max_mb_per_source=size.max_mb_per_source, log=log,
                        downloads_dir=corpora.fetch.downloads_root())
  vocab_config = vocab.VocabConfig(vocab_size=size.vocab_size, max_mb_per_source=size.vocab_mb_per_source)
  model = vocab.train_vocab(sources, vocab_config, cache_dir=cache_dir, log=log)
  store = segments.build_segment_store(sources, model, make_labeller(ml_collections.ConfigDict({"kind": "lexicon"})),
                                       segments.SegmentConfig(segment_length=size.segment_length),
                                       cache_dir=cache_dir, log=log)
  return store.root


def alignment_tower(data_root: pathlib.Path) -> pathlib.Path:
  """`<data_root>/vision/<encoder>-seed<seed>`: the random-init Hugging Face tower of `ALIGNMENT_TOWER`, written
  (atomically, in well under a second) when absent; the same bytes on every machine."""
  from visual_priors.data import cache  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import random_hf  # pylint: disable=import-outside-toplevel

  encoder, seed = ALIGNMENT_TOWER
  directory = pathlib.Path(data_root) / "vision" / f"{encoder}-seed{seed}"
  if not (directory / "config.json").is_file():
    with cache.atomic_directory(directory) as tmp:
      random_hf.write_random_dinov2(tmp, seed=seed, **random_hf.DEMO_TOWER)
  return directory


def alignment_override(tower: pathlib.Path) -> str:
  """The `--set` that measures alignment against the run's own tower and `tower` (an `ALIGNMENT_TOWER`)."""
  return f"eval.alignment.vision_models={['self', f'{ALIGNMENT_TOWER[0]}=hf:{tower}']!r}"


def experiment_names(reduced: bool) -> list[str]:
  """The registered demo experiments, or (reduced) the first REDUCED_MIXTURES of them as reduced variants."""
  from visual_priors.experiment import registry  # pylint: disable=import-outside-toplevel

  entries = {name: entry for name, entry in registry.entries().items() if name.startswith("demo/")}
  if len(entries) < 3 and not reduced:
    raise ValueError(f"experiments/demo.py registers {len(entries)} demo experiments; the demo needs at least 3 "
                     "(two mixtures and the untrained control).")
  if not reduced:
    return list(entries)
  return [f"{entry.file.stem}:{entry.arg},reduced" for entry in list(entries.values())[:REDUCED_MIXTURES]]


def run_demo(root: str | pathlib.Path = "runs/demo", *, reduced: bool = False, names: Sequence[str] | None = None,
             seeds: Sequence[int] | None = None, devices: Sequence[jax.Device] | None = None,
             log: Callable[[str], None] = print) -> DemoResult:
  """Builds the data, runs the demo experiments (or `names`) once per seed (default `SEEDS`, reduced
  `REDUCED_SEEDS`), writes the report; see the module docstring."""
  from visual_priors.experiment import registry  # pylint: disable=import-outside-toplevel
  from visual_priors.analysis import report  # pylint: disable=import-outside-toplevel
  from visual_priors.analysis.results import ResultsStore  # pylint: disable=import-outside-toplevel

  root = pathlib.Path(root).absolute()
  size = REDUCED_DATA if reduced else DEMO_DATA
  started = time.perf_counter()
  seconds: dict[str, float] = {}
  log(f"demo: building {size.name}-sized data ({size.max_mb_per_source} MB per source, vocabulary "
      f"{size.vocab_size}, {size.segment_length}-token segments)")
  store = build_data(size, root / "data" / size.name, log)
  seconds["data"] = time.perf_counter() - started
  log(f"demo: data ready in {seconds['data']:.1f} s: {store}")
  names = list(names) if names is not None else experiment_names(reduced)
  overrides = [f"data.store={store}", alignment_override(alignment_tower(root / "data")),
               *(REDUCED_OVERRIDES if reduced else ())]
  seeds = tuple(seeds) if seeds is not None else REDUCED_SEEDS if reduced else SEEDS
  rows = grid.grid(names, root=root, overrides=overrides, seeds=seeds, devices=devices, log=log)
  run_ids = [row.run_id for row in rows if row.run_id]
  seconds["runs"] = time.perf_counter() - started - seconds["data"]
  report_path = None
  if run_ids:
    frame_store = ResultsStore(root / "results")
    example = registry.get_experiment(names[0], overrides)
    notes = NOTES.format(params=f"{example.meta.params / 1e6:.1f}M-parameter",
                         tokens=f"{int(example.pretrain.token_budget):,}", seeds=", ".join(map(str, seeds)))
    report_started = time.perf_counter()
    encoder, seed = ALIGNMENT_TOWER
    report_path = report.write_report(_only_runs(frame_store, run_ids), root / "report.html",
                                      title="visual_priors demo: nano mixture ablation", notes=notes,
                                      section_notes={"alignment": ALIGNMENT_NOTE.format(encoder=encoder, seed=seed)})
    seconds["report"] = time.perf_counter() - report_started
    log(f"demo: report {report_path}")
  seconds["total"] = time.perf_counter() - started
  log("demo: " + ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items()))
  log("demo: inspect it with\n" + "\n".join(f"  {command}" for command in inspect_commands(root, store)))
  return DemoResult(root=root, store=store, runs=rows, report=report_path, seconds=seconds)


def inspect_commands(root: pathlib.Path, store: pathlib.Path) -> list[str]:
  """The commands that show the demo's data labels, measured mixture shares and report, as a user types them."""
  def shown(path: pathlib.Path) -> str:
    path = pathlib.Path(path).absolute()
    return shlex.quote(str(path.relative_to(pathlib.Path.cwd()) if path.is_relative_to(pathlib.Path.cwd()) else path))

  return [f"python -m visual_priors data labels --store {shown(store)}",
          f"python -m visual_priors data mixtures --measured --store {shown(store)}",
          f"python -m visual_priors report --results {shown(root / 'results')} "
          f"--out {shown(root / 'report_all_runs.html')}"]


def _only_runs(store, run_ids: Sequence[str]):
  """The results store restricted to this demo's runs (the root may hold others)."""
  from visual_priors.analysis.results import load_results  # pylint: disable=import-outside-toplevel
  return load_results(store).select(run_ids)
