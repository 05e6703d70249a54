r"""`python -m visual_priors {stage, bench-sft}`: run an adaptation stage on files; time the SFT step.

    python -m visual_priors stage contrastive --captions gen/captions.jsonl --vocab spm.model --work-dir runs/con
    python -m visual_priors stage align --lm runs/lm --vision runs/con --captions gen/captions.jsonl \
        --work-dir runs/align
    python -m visual_priors stage sft --init runs/align --instruct gen/instruct.json --work-dir runs/sft
    python -m visual_priors stage blind --init runs/align --instruct gen/instruct.json --work-dir runs/blind
    python -m visual_priors bench-sft --scale tiny --encoder vit-tiny --visual-tokens 64 --seq 128

The vocabulary, image size, visual-token count and system prompt default to the upstream run's (an
explicit `--vocab` must be the one the LM was trained with: its sha256 is checked).
"""

from __future__ import annotations

import json
import pathlib

from visual_priors.overrides import apply_assignments
from visual_priors.train.commands import MESH_HELP, parse_mesh

_STAGES = ("contrastive", "align", "sft", "blind")


def add_parser(subparsers) -> None:
  stage = subparsers.add_parser("stage", help="Run an adaptation stage: contrastive, align, sft or blind.")
  stage.add_argument("name", choices=_STAGES, help="The stage (see visual_priors.train.adaptation).")
  stage.add_argument("--work-dir", required=True, help="Run directory: checkpoints, metrics, manifest.json.")
  stage.add_argument("--lm", help="align: the pretrain run to start the LM from.")
  stage.add_argument("--vision", help="align: a contrastive run, or a big_vision .npz (with --encoder).")
  stage.add_argument("--init", help="sft / blind: the align (or, for sft, blind) run to start from.")
  stage.add_argument("--encoder", help="contrastive: the tower to train; align: the .npz's architecture.")
  data = stage.add_mutually_exclusive_group(required=True)
  data.add_argument("--captions", help="Caption pairs (JSONL of {image, caption}): contrastive, align.")
  data.add_argument("--instruct", help="LLaVA/Cambrian instruction JSON or JSONL: align, sft, blind.")
  stage.add_argument("--images", default=None, help="Image folder (default: the data file's folder).")
  stage.add_argument("--vocab", default=None, help="SentencePiece model (default: the upstream's).")
  stage.add_argument("--system-prompt", default=None, help="Chat system prompt (default: upstream's, or LLaVA's).")
  stage.add_argument("--visual-tokens", type=int, default=None, help="align: visual tokens per image (576).")
  stage.add_argument("--projector", default=None, help="align: linear or mlp2x_gelu.")
  length = stage.add_mutually_exclusive_group()
  length.add_argument("--epochs", type=float, default=None, help="Passes over the data (default 1).")
  length.add_argument("--steps", type=int, default=None, help="Optimizer steps (instead of epochs).")
  stage.add_argument("--batch", type=int, default=None, help="Global batch (default 512).")
  stage.add_argument("--seq", type=int, default=None, help="Tokens per row (caption tokens for contrastive).")
  stage.add_argument("--mesh", default="data=1,fsdp=-1,tensor=1", help=MESH_HELP)
  stage.add_argument("--drop-unsupervised", action="store_true",
                     help="Skip rows whose answers are truncated away (default: fail on them).")
  stage.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="Stage config override, repeatable: train.optimizer.peak_lr=1e-4, warmup_fraction=0.1, ...")
  stage.set_defaults(func=_run_stage)

  bench = subparsers.add_parser("bench-sft", help="SFT step time, images/s, tokens/s, MFU and peak memory.")
  bench.add_argument("--scale", default="tiny", help="LM scale.")
  bench.add_argument("--encoder", default="vit-tiny", help="Vision encoder name.")
  bench.add_argument("--visual-tokens", type=int, default=64)
  bench.add_argument("--batch", type=int, default=8)
  bench.add_argument("--seq", type=int, default=128)
  bench.add_argument("--steps", type=int, default=10)
  bench.add_argument("--warmup", type=int, default=2)
  bench.add_argument("--mesh", default="data=1,fsdp=-1,tensor=1", help=MESH_HELP)
  bench.add_argument("--json", action="store_true")
  bench.set_defaults(func=_bench_sft)


def _stage_config(args):
  from visual_priors.train import adaptation  # pylint: disable=import-outside-toplevel

  config = adaptation.stage_config(args.name)
  config.train.work_dir = str(pathlib.Path(args.work_dir).absolute())
  config.train.mesh = parse_mesh(args.mesh)
  upstream = {"lm": args.lm, "vision": args.vision, "init": args.init}
  for key, value in upstream.items():
    if value is not None:
      if key not in config.upstream:
        raise ValueError(f"--{key} is not an upstream of the {args.name} stage; it reads "
                         f"{', '.join('--' + k for k in config.upstream) or 'none'}.")
      config.upstream[key] = str(pathlib.Path(value).absolute())
  if args.encoder is not None:
    if "vision" not in config:
      raise ValueError(f"--encoder applies to contrastive and align, not {args.name}.")
    config.vision.encoder = args.encoder
  for option, key in (("visual_tokens", "num_visual_tokens"), ("projector", "projector")):
    if getattr(args, option) is not None:
      if "mllm" not in config:
        raise ValueError(f"--{option.replace('_', '-')} applies to align only (later stages inherit it).")
      config.mllm[key] = getattr(args, option)
  for name, value in (("batch_size", args.batch), ("seq_len", args.seq), ("num_steps", args.steps)):
    if value is not None:
      config.train[name] = value
  if args.epochs is not None:
    config.epochs = args.epochs
  return apply_assignments(config, args.set, adaptation.OPEN_KEYS)


def _records(args) -> tuple[list, list[str]]:
  from visual_priors.data.multimodal import loaders  # pylint: disable=import-outside-toplevel
  from visual_priors.train import stage_data  # pylint: disable=import-outside-toplevel

  if args.captions:
    captions = loaders.load_captions(args.captions, args.images)
    if args.name == "contrastive":
      return captions, [args.captions]
    if args.name != "align":
      raise ValueError(f"The {args.name} stage trains on instruction data; pass --instruct.")
    return stage_data.caption_conversations(captions), [args.captions]
  if args.name == "contrastive":
    raise ValueError("The contrastive stage trains on caption pairs; pass --captions.")
  return loaders.load_llava(args.instruct, args.images), [args.instruct]


def _run_stage(args) -> int:
  from visual_priors.train import adaptation  # pylint: disable=import-outside-toplevel

  config = _stage_config(args)
  adaptation.data_spec(config)  # a missing or unfinished upstream is reported before the data files are read
  records, files = _records(args)
  result = adaptation.run_on_records(config, records, files, vocab=args.vocab, system_prompt=args.system_prompt,
                                drop_unsupervised=args.drop_unsupervised)
  print(json.dumps({"work_dir": str(result.work_dir), "step": result.step,
                    "final_metrics": result.final_metrics}, indent=2))
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
  if args.json:
    print(json.dumps(result, indent=2))
    return 0
  mfu = "unknown (no peak FLOP/s for this device kind)" if result["mfu"] is None else f"{100 * result['mfu']:.1f}%"
  print(f"SFT step: LM {args.scale} + {args.encoder}, batch {args.batch} x {args.seq} "
        f"({args.visual_tokens} visual tokens per row) on {result['num_devices']} x {result['device_kind']}")
  print(f"  step time   {1000 * result['step_time_seconds']:.1f} ms")
  print(f"  images/s    {result['images_per_second']:,.1f}")
  print(f"  tokens/s    {result['tokens_per_second']:,.0f}")
  print(f"  MFU         {mfu}")
  print(f"  peak memory {result['peak_memory_bytes'] / 1024 ** 3:.3f} GiB per device ({result['memory_source']})")
  return 0
