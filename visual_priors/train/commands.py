"""`python -m visual_priors {pretrain, compile-check, bench lm, bench sft}`: train, check a scale fits, time steps."""

from __future__ import annotations

import json
import pathlib

from visual_priors.overrides import apply_assignments

MESH_HELP = "Mesh axis sizes, e.g. data=1,fsdp=-1,tensor=1 (-1 = the remaining devices; absent axes are 1)."


def parse_mesh(text: str) -> dict[str, int]:
  """'data=2,fsdp=-1' -> {'data': 2, 'fsdp': -1}."""
  mesh = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    axis, sep, size = part.partition("=")
    if not sep or not size.strip().removeprefix("-").isdigit():
      raise ValueError(f"Bad mesh entry {part!r} in {text!r}; expected AXIS=SIZE, e.g. data=1,fsdp=-1,tensor=1.")
    mesh[axis.strip()] = int(size)
  return mesh


def add_parser(subparsers) -> None:
  pretrain = subparsers.add_parser("pretrain", help="Pre-train a decoder scale on a mixture of a segment store.")
  pretrain.add_argument("--scale", required=True, help="Model scale, e.g. tiny, 340m, 3b.")
  pretrain.add_argument("--mixture", default="mix6",
                        help="A paper mixture, NAME=W,..., cat:CATEGORY=P, or seqio:NAME (a registered seqio Task or "
                             "Mixture; see --seqio-module).")
  pretrain.add_argument("--work-dir", required=True, help="Run directory: checkpoints, metrics, manifest.json.")
  length = pretrain.add_mutually_exclusive_group(required=True)
  length.add_argument("--steps", type=int, help="Optimizer steps to train.")
  length.add_argument("--tokens", type=int, help="Token budget (rounded up to whole steps).")
  pretrain.add_argument("--batch", type=int, default=1024, help="Global batch in sequences.")
  pretrain.add_argument("--seq", type=int, default=2048)
  pretrain.add_argument("--eval-batch", type=int, default=None, help="Validation batch (default: --batch).")
  pretrain.add_argument("--mesh", default="data=1,fsdp=-1,tensor=1", help=MESH_HELP)
  pretrain.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="Config override, repeatable: optimizer.peak_lr=1e-3, log_every_steps=10, ...")
  pretrain.add_argument("--store", default=None, help="Segment store directory (default: the latest build).")
  pretrain.add_argument("--cache-dir", default=None)
  pretrain.add_argument("--seqio-module", action="append", default=[], metavar="MODULE",
                        help="Python module to import first, repeatable: it registers the seqio Tasks / Mixtures that "
                             "--mixture seqio:NAME names (a user Task is cached once as a segment store).")
  pretrain.add_argument("--init-from", default="", metavar="hf:DIR",
                        help="Start from a Hugging Face Llama directory's weights (its shapes must be --scale's; the "
                             "store must use its tokenizer: data build --vocab DIR).")
  pretrain.set_defaults(func=_pretrain)

  check = subparsers.add_parser(
      "compile-check", help="Compile the train step (or an evaluation's decoding) for a mesh without running it; "
                            "print per-device memory.")
  check.add_argument("--stage", choices=("train", "eval"), default="train",
                     help="train: the LM train step; eval: the MLLM's batched greedy decoding as evaluation runs it "
                          "(prefill of image prompts + the cached decode step).")
  check.add_argument("--scale", required=True)
  check.add_argument("--mesh", default="data=1,fsdp=-1,tensor=1", help=MESH_HELP)
  check.add_argument("--batch", type=int, default=None, help="Global batch (default: one per data-parallel device).")
  check.add_argument("--seq", type=int, default=2048)
  check.add_argument("--grad-accum", type=int, default=1)
  check.add_argument("--remat", default=None, help="Override the scale's remat policy (none, full, ...).")
  check.add_argument("--topology", default=None,
                     help="Compile for a TPU slice such as v5p-128 (needs libtpu: pip install -e '.[tpu]').")
  check.add_argument("--json", action="store_true")
  evaluation = check.add_argument_group("--stage eval")
  evaluation.add_argument("--encoder", default="metaclip-b16-224", help="Vision encoder name (default: the paper's).")
  evaluation.add_argument("--visual-tokens", type=int, default=576, help="Visual tokens per image (default 576).")
  evaluation.add_argument("--text-tokens", type=int, default=64,
                          help="Prompt tokens besides the image slots (default 64); the prompt is padded to its "
                               "bucket (the next power of two).")
  evaluation.add_argument("--new-tokens", type=int, default=32, help="Tokens generated per prompt (default 32).")
  check.set_defaults(func=_compile_check)

  bench = subparsers.add_parser("bench", help="Benchmarks of the training hot path.")
  bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
  lm = bench_sub.add_parser("lm", help="LM train-step time, tokens/s, MFU and peak memory.")
  lm.add_argument("--scale", required=True)
  lm.add_argument("--batch", type=int, default=8)
  lm.add_argument("--seq", type=int, default=2048)
  lm.add_argument("--steps", type=int, default=10)
  lm.add_argument("--warmup", type=int, default=2, help="Untimed steps first (the compile happens here).")
  lm.add_argument("--mesh", default="data=1,fsdp=-1,tensor=1", help=MESH_HELP)
  lm.add_argument("--grad-accum", type=int, default=1)
  lm.add_argument("--dtype", default=None, help="Compute dtype override (the scale's default is bfloat16).")
  lm.add_argument("--remat", default=None)
  lm.add_argument("--attention", default=None, help="auto, cudnn, xla or blockwise.")
  lm.add_argument("--packed", action="store_true", help="Feed packed rows (segment ids) instead of full rows.")
  lm.add_argument("--compile-cache", default="", metavar="DIR",
                  help="JAX's persistent compilation cache: a relaunch loads the init and step programs instead of "
                       "compiling them (default: $VISUAL_PRIORS_COMPILE_CACHE, else none).")
  lm.add_argument("--json", action="store_true")
  lm.set_defaults(func=_bench_lm)
  sft = bench_sub.add_parser("sft", help="SFT step time, images/s, tokens/s, MFU and peak memory.")
  sft.add_argument("--scale", default="tiny", help="LM scale.")
  sft.add_argument("--encoder", default="vit-tiny", help="Vision encoder name.")
  sft.add_argument("--visual-tokens", type=int, default=64)
  sft.add_argument("--batch", type=int, default=8)
  sft.add_argument("--seq", type=int, default=128)
  sft.add_argument("--steps", type=int, default=10)
  sft.add_argument("--warmup", type=int, default=2)
  sft.add_argument("--mesh", default="data=1,fsdp=-1,tensor=1", help=MESH_HELP)
  sft.add_argument("--json", action="store_true")
  sft.set_defaults(func=_bench_sft)


def _model_overrides(args) -> dict:
  names = {"dtype": "dtype", "remat": "remat", "attention": "attention_impl"}
  return {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg, None) is not None}


def _pretrain(args) -> int:
  from visual_priors.data import pipeline, segments, tasks  # pylint: disable=import-outside-toplevel
  from visual_priors.models import sharding  # pylint: disable=import-outside-toplevel
  from visual_priors.train import config as config_lib, optimizer  # pylint: disable=import-outside-toplevel
  from visual_priors.train import hf_import, pretrain, store_data  # pylint: disable=import-outside-toplevel

  init_from = hf_import.parse_init_from(args.init_from)
  sharding.maybe_initialize_distributed()
  config = config_lib.default_config()
  config.scale = args.scale
  config.work_dir = str(pathlib.Path(args.work_dir).absolute())
  config.batch_size, config.seq_len = args.batch, args.seq
  config.num_steps, config.token_budget = (args.steps, 0) if args.steps else (0, args.tokens)
  config.mesh = parse_mesh(args.mesh)
  config = apply_assignments(config, args.set, config_lib.OPEN_KEYS)
  tasks.import_modules(args.seqio_module)
  try:
    store = segments.open_store(args.store, args.cache_dir)
  except FileNotFoundError:
    if args.store or not tasks.is_seqio(args.mixture):
      raise
    store = None  # a user's seqio Task reads its own cache store
  if init_from is not None and not tasks.is_seqio(args.mixture):
    hf_import.check_vocabulary(init_from, store.vocab_path)
  data = store_data.mixture_data(store, args.mixture, batch_size=config.batch_size, seq_len=config.seq_len,
                                 eval_batch_size=args.eval_batch or config.batch_size, seed=config.seed,
                                 cache_dir=args.cache_dir)
  if init_from is not None and tasks.is_seqio(args.mixture):  # the store is known once the mixture is resolved
    hf_import.check_vocabulary(init_from, data.store.vocab_path)
  config.model.vocab_size = data.vocab_size
  if not any(assignment.partition("=")[0].strip() == "optimizer.warmup_steps" for assignment in args.set):
    steps = config_lib.total_steps(config)
    warmup = optimizer.short_run_warmup(config.optimizer.warmup_steps, steps)
    if warmup != config.optimizer.warmup_steps:
      print(f"warm-up: {warmup} steps (10% of this {steps}-step run; the default {config.optimizer.warmup_steps} "
            "applies from 10x that length; set optimizer.warmup_steps to choose)")
      config.optimizer.warmup_steps = warmup
  eval_sets, skipped = store_data.split_trackable(data.eval_sets)
  if skipped:
    print(store_data.skipped_line(skipped, args.eval_batch or config.batch_size))
  from visual_priors.train import compile_cache  # pylint: disable=import-outside-toplevel
  with compile_cache.use(compile_cache.resolve(config.work_dir)):  # <work_dir>/.jax_cache: a resume loads its programs
    result = pretrain.pretrain(config, train_data=data.train_data, eval_sets=eval_sets,
                               data_identity=data.identity, data_report=data.report, init_from=init_from)
  print("Mixture components, nominal vs realised token share:")
  print(pipeline.format_proportions(data.meter.report()))
  print(json.dumps({"work_dir": str(result.work_dir), "step": result.step, "tokens_seen": result.tokens_seen,
                    "final_metrics": result.final_metrics}, indent=2))
  return 0


def _compile_check(args) -> int:
  from visual_priors.models import scales, sharding  # pylint: disable=import-outside-toplevel
  from visual_priors.train import compile_check, topology  # pylint: disable=import-outside-toplevel

  model_config = scales.get_scale(args.scale, **_model_overrides(args))
  mesh_shape = parse_mesh(args.mesh)
  devices = topology.topology_devices(args.topology) if args.topology else None
  batch = args.batch
  if batch is None:
    mesh = sharding.make_mesh(mesh_shape, devices)
    batch = mesh.shape["data"] * mesh.shape["fsdp"] * (args.grad_accum if args.stage == "train" else 1)
  if args.stage == "eval":
    return _compile_check_eval(args, model_config, mesh_shape, devices, batch)
  report = compile_check.compile_train_step(model_config, mesh_shape=mesh_shape, batch_size=batch,
                                            seq_len=args.seq, devices=devices, grad_accum_steps=args.grad_accum)
  if args.json:
    print(json.dumps({**report.__dict__, "mesh": dict(report.mesh), "total_bytes": report.total_bytes}, indent=2))
  else:
    print(f"{args.scale}" + (f" on {args.topology}" if args.topology else ""))
    print(report.format())
  return 0


def _compile_check_eval(args, model_config, mesh_shape, devices, batch: int) -> int:
  import dataclasses  # pylint: disable=import-outside-toplevel

  from visual_priors.eval import decode_check  # pylint: disable=import-outside-toplevel
  from visual_priors.models.mllm import MLLMConfig, feature_extractor  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import get_encoder  # pylint: disable=import-outside-toplevel

  vision = dataclasses.replace(feature_extractor(get_encoder(args.encoder)), dtype=model_config.dtype)
  config = MLLMConfig(vision=vision, llm=model_config, num_visual_tokens=args.visual_tokens)
  report = decode_check.compile_decode(config, mesh_shape=mesh_shape, batch_size=batch, text_tokens=args.text_tokens,
                                       max_new_tokens=args.new_tokens, devices=devices)
  if args.json:
    memory = report.memory
    print(json.dumps({**memory.__dict__, "mesh": dict(memory.mesh), "total_bytes": memory.total_bytes,
                      "prompt_bucket": report.prompt_bucket, "visual_tokens": report.visual_tokens,
                      "max_new_tokens": report.max_new_tokens, "encoder": args.encoder}, indent=2))
  else:
    print(f"eval decoding: {args.scale} + {args.encoder}" + (f" on {args.topology}" if args.topology else ""))
    print(report.format())
  return 0


def _bench_lm(args) -> int:
  from visual_priors.models import scales, sharding  # pylint: disable=import-outside-toplevel
  from visual_priors.train import bench, compile_cache  # pylint: disable=import-outside-toplevel

  sharding.maybe_initialize_distributed()
  model_config = scales.get_scale(args.scale, **_model_overrides(args))
  with compile_cache.use(compile_cache.resolve(None, args.compile_cache)):
    result = bench.run_bench(model_config, batch_size=args.batch, seq_len=args.seq, steps=args.steps,
                             warmup_steps=args.warmup, mesh_shape=parse_mesh(args.mesh),
                             grad_accum_steps=args.grad_accum, packed=args.packed)
  return _report({"scale": args.scale, **result}, args.json,
                 f"{args.scale}: {result['parameters'] / 1e6:,.1f}M parameters, batch {args.batch} x {args.seq}")


def _report(result: dict, as_json: bool, title: str, extra: tuple[tuple[str, str], ...] = ()) -> int:
  """A bench's result as JSON, or as a title line (with the devices) and its measurements."""
  if as_json:
    print(json.dumps(result, indent=2))
    return 0
  mfu = "unknown (no peak FLOP/s for this device kind)" if result["mfu"] is None else f"{100 * result['mfu']:.1f}%"
  print(f"{title} on {result['num_devices']} x {result['device_kind']}")
  rows = (("step time", f"{1000 * result['step_time_seconds']:.1f} ms"), *extra,
          ("tokens/s", f"{result['tokens_per_second']:,.0f}"), ("MFU", mfu),
          ("peak memory", f"{result['peak_memory_bytes'] / 1024 ** 3:.3f} GiB per device ({result['memory_source']})"))
  for name, value in rows:
    print(f"  {name:<11} {value}")
  return 0


def _bench_sft(args) -> int:
  import dataclasses  # pylint: disable=import-outside-toplevel

  from visual_priors.models import scales  # pylint: disable=import-outside-toplevel
  from visual_priors.models.mllm import MLLMConfig, feature_extractor  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import get_encoder  # pylint: disable=import-outside-toplevel
  from visual_priors.train import sft_bench  # pylint: disable=import-outside-toplevel

  llm = scales.get_scale(args.scale)
  vision = dataclasses.replace(feature_extractor(get_encoder(args.encoder)), dtype=llm.dtype)
  config = MLLMConfig(vision=vision, llm=llm, num_visual_tokens=args.visual_tokens)
  result = sft_bench.run_sft_bench(config, batch_size=args.batch, seq_len=args.seq, steps=args.steps,
                                   warmup_steps=args.warmup, mesh_shape=parse_mesh(args.mesh))
  result.update(scale=args.scale, encoder=args.encoder)
  return _report(result, args.json, f"SFT step: LM {args.scale} + {args.encoder}, batch {args.batch} x {args.seq} "
                 f"({args.visual_tokens} visual tokens per row)",
                 (("images/s", f"{result['images_per_second']:,.1f}"),))
