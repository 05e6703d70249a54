"""`python -m visual_priors data {build,labels,mixtures,bench}`: build and inspect the text-data layer."""

from __future__ import annotations

import argparse
import json
import pathlib
import time

from visual_priors.data import cache, categories, mixtures, segments



def add_parser(subparsers) -> None:
  data = subparsers.add_parser("data", help="Build and inspect corpora, labels, vocabulary and mixtures.")
  sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

  build = sub.add_parser("build", help="Fetch packages, build corpora, train the vocabulary, segment and label.")
  build.add_argument("--sources", default=None,
                     help="Comma-separated corpus sources (default: every built-in offline source).")
  build.add_argument("--max-mb-per-source", type=float, default=None,
                     help="Bound each source's corpus to this many MB of text (default: no bound).")
  build.add_argument("--vocab-size", type=int, default=32000)
  build.add_argument("--vocab", default=None, metavar="MODEL_OR_HF_DIR",
                     help="Tokenize with this vocabulary instead of training one: a SentencePiece .model or a Hugging "
                          "Face directory (its tokenizer.model or unigram tokenizer.json), e.g. to continue "
                          "pre-training an imported checkpoint (pretrain.init_from=hf:DIR).")
  build.add_argument("--segment-length", type=int, default=1024, help="Tokens per segment, EOS included.")
  build.add_argument("--labeller", default="lexicon", choices=("lexicon", "llm"))
  build.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL, e.g. http://host:8000/v1.")
  build.add_argument("--llm-model", default=None, help="Model name served at --llm-url.")
  # The LLM labeller's request policy (visual_priors/data/labelling/llm.py, LlmConfig); None keeps its default.
  build.add_argument("--llm-timeout", type=float, default=None, metavar="SECONDS",
                     help="Seconds to wait for one reply before retrying it (default: 120).")
  build.add_argument("--llm-retries", type=int, default=None, metavar="N",
                     help="Retries of a request after a timeout, dropped connection, 429 or 5xx, with backoff; then "
                          "the run stops naming the endpoint (default: 6).")
  build.add_argument("--llm-concurrency", type=int, default=None, metavar="N",
                     help="Requests in flight at once (default: 8).")
  build.add_argument("--downloads-dir", default=None,
                     help="Package download cache (default: $VISUAL_PRIORS_DOWNLOADS or <cache>/downloads).")
  _add_cache(build)
  build.set_defaults(func=_build)

  labels = sub.add_parser("labels", help="Print each source's label rates (docs/paper.md, section 2 layout).")
  labels.add_argument("--store", default=None, help="Segment store directory (default: the latest build).")
  labels.add_argument("--split", default="train")
  labels.add_argument("--llm-url", default=None,
                      help="With --llm-model: also score the store's LLM labeller on the hand-labelled test split.")
  labels.add_argument("--llm-model", default=None, help="Model name served at --llm-url.")
  _add_cache(labels)
  labels.set_defaults(func=_labels)

  mix = sub.add_parser("mixtures", help="Print mix0..mix10 with their weights and reasoning/visual shares.")
  mix.add_argument("--measured", action="store_true",
                   help="Also compute shares from the local store's measured label rates.")
  mix.add_argument("--store", default=None)
  _add_cache(mix)
  mix.set_defaults(func=_mixtures)

  bench = sub.add_parser("bench", help="Measure the input pipeline's throughput (tokens/s) and realised shares.")
  bench.add_argument("--mixture", default="mix6", help="A paper mixture, NAME=W,... or cat:CATEGORY=P.")
  bench.add_argument("--batch", type=int, default=16)
  bench.add_argument("--seq", type=int, default=2048)
  bench.add_argument("--batches", type=int, default=50)
  bench.add_argument("--store", default=None)
  bench.add_argument("--json", action="store_true")
  _add_cache(bench)
  bench.set_defaults(func=_bench)


def _add_cache(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--cache-dir", default=None,
                      help=f"Data cache (default: ${cache.CACHE_ENV} or ~/.cache/visual_priors).")


def _build(args) -> int:
  from visual_priors.data import corpora, vocab  # pylint: disable=import-outside-toplevel
  from visual_priors.data.labelling import make_labeller  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel

  sources = args.sources.split(",") if args.sources else list(corpora.BUILTIN_SOURCES)
  labeller_config = ml_collections.ConfigDict({"kind": args.labeller})
  policy = {field: value for field, value in (("timeout_s", args.llm_timeout), ("max_retries", args.llm_retries),
                                              ("concurrency", args.llm_concurrency)) if value is not None}
  if args.labeller == "llm":
    if not (args.llm_url and args.llm_model):
      raise ValueError("--labeller llm needs --llm-url and --llm-model.")
    labeller_config.update(base_url=args.llm_url, model=args.llm_model,
                           cache_path=str(cache.cache_root(args.cache_dir) / "labels" / "llm_cache.sqlite"), **policy)
  elif policy:
    raise ValueError("--llm-timeout, --llm-retries and --llm-concurrency set the LLM labeller's requests; they need "
                     "--labeller llm.")
  labeller = make_labeller(labeller_config)  # validated before any download
  vocab_config = vocab.VocabConfig(vocab_size=args.vocab_size)
  segment_config = segments.SegmentConfig(segment_length=args.segment_length)
  start = time.perf_counter()
  manifests = corpora.build_corpora(sources, cache_dir=args.cache_dir, max_mb_per_source=args.max_mb_per_source,
                                    downloads_dir=args.downloads_dir)
  print(corpora.format_summary(manifests))
  if args.vocab:
    from visual_priors.data import hf_tokenizer  # pylint: disable=import-outside-toplevel
    digest = cache.sha256_json({"vocab": str(pathlib.Path(args.vocab).expanduser().absolute())})[:12]
    work_dir = cache.cache_root(args.cache_dir) / "vocab" / f"hf-{digest}"
    model = hf_tokenizer.vocabulary_model(args.vocab, work_dir=work_dir)
    print(f"vocab: {model} (given)")
  else:
    model = vocab.train_vocab(sources, vocab_config, cache_dir=args.cache_dir)
  store = segments.build_segment_store(sources, model, labeller, segment_config, cache_dir=args.cache_dir)
  cache.write_json_atomic(cache.cache_root(args.cache_dir) / segments.LATEST, {"store": str(store.root)})
  print(f"segment store: {store.root} ({time.perf_counter() - start:.0f}s)")
  return 0


def format_rate_table(rows: dict[str, dict[str, float]], title: str = "source") -> str:
  """A markdown table in the paper's layout (docs/paper.md, section 2); values are percentages."""
  heads = [categories.CATEGORY_HEADINGS[c] for c in categories.TABLE_CATEGORIES]
  lines = [f"| {title} | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
  for name, rates in rows.items():
    lines.append(f"| {name} | " + " | ".join(f"{rates[c]:.1f}" for c in categories.TABLE_CATEGORIES) + " |")
  return "\n".join(lines)


def _labels(args) -> int:
  store = segments.open_store(args.store, args.cache_dir)
  measured = {s: {c: 100 * store.label_rates(s, args.split)[c] for c in categories.TABLE_CATEGORIES}
              for s in store.sources}
  print(f"Measured label rates (% of {args.split} segments; labeller: {store.manifest['labeller']}):")
  print(format_rate_table(measured))
  print("\nPublished rates (docs/paper.md, section 2):")
  print(format_rate_table(categories.PUBLISHED_RATES_PERCENT))
  print()
  print(_labeller_quality(store.manifest["labeller"], args))
  return 0


def _labeller_quality(store_labeller: str, args) -> str:
  """Per-label precision/recall/F1/support on the hand-labelled test split: the lexicon labeller's, and the
  store's LLM labeller's when it labelled the store and its endpoint is given."""
  from visual_priors.data.labelling import evaluate, make_labeller  # pylint: disable=import-outside-toplevel
  lexicon = make_labeller({"kind": "lexicon"})
  note = "" if store_labeller == lexicon.name else f"; the store was labelled by {store_labeller}"
  parts = [evaluate.report_on_test_split(lexicon, f"Labeller quality on the hand-labelled test split ({lexicon.name}"
                                         f"{note})")]
  if store_labeller.startswith("llm-"):
    if args.llm_url and args.llm_model:
      llm = make_labeller({"kind": "llm", "base_url": args.llm_url, "model": args.llm_model,
                           "cache_path": str(cache.cache_root(args.cache_dir) / "labels" / "llm_cache.sqlite")})
      parts.append(evaluate.report_on_test_split(llm, f"LLM labeller on the hand-labelled test split ({llm.name})"))
    else:
      parts.append(f"(pass --llm-url and --llm-model to score the store's labeller, {store_labeller}, the same way)")
  return "\n\n".join(parts)


def _mixtures(args) -> int:
  columns = list(next(iter(mixtures.PAPER_MIXTURES.values())).weights)
  rates = {"published": None}
  if args.measured:
    store = segments.open_store(args.store, args.cache_dir)
    rates["measured"] = {s: store.label_rates(s) for s in store.sources}
  head = "| mix | " + " | ".join(columns) + " | " + " | ".join(
      f"reasoning % ({k}) | visual % ({k})" for k in rates) + " |"
  print(head)
  print("|---" * (head.count("|") - 1) + "|")
  for name, spec in mixtures.PAPER_MIXTURES.items():
    cells = [f"{100 * spec.weights.get(c, 0.0):.1f}" for c in columns]
    for table in rates.values():
      shares = mixtures.mixture_shares(spec, table)
      cells += [f"{100 * shares['reasoning']:.1f}", f"{100 * shares['visual']:.1f}"]
    print(f"| {name} | " + " | ".join(cells) + " |")
  return 0


def _bench(args) -> int:
  from visual_priors.data import pipeline  # pylint: disable=import-outside-toplevel

  store = segments.open_store(args.store, args.cache_dir)
  spec = mixtures.parse_spec(args.mixture, known_sources=store.sources)
  config = pipeline.PipelineConfig(batch_size=args.batch, seq_len=args.seq)
  iterator, plan = pipeline.mixture_iterator(store, spec, config, process_index=0, process_count=1)
  meter = pipeline.ProportionMeter(plan)
  next(iterator)  # warm-up: file opens
  start, tokens = time.perf_counter(), 0
  for _ in range(args.batches):
    batch = next(iterator)
    meter.update(batch)
    tokens += int((batch["decoder_segment_ids"] > 0).sum())
  seconds = time.perf_counter() - start
  result = {"tokens_per_s": tokens / seconds, "batches": args.batches, "seconds": seconds, "non_pad_tokens": tokens,
            "proportions": meter.report()}
  if args.json:
    print(json.dumps(result, indent=2))
    return 0
  print(f"grain: {tokens / seconds:,.0f} non-padding tokens/s ({args.batches} batches of {args.batch}x{args.seq})")
  print(pipeline.format_proportions(meter.report()))
  return 0
