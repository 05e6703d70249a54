"""`python -m visual_priors {export hf, eval lm-harness}`: runs out to Hugging Face, and lm-eval on them."""

from __future__ import annotations

import json
import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
  """'5GB' / '500MB' / '1e9' -> bytes (powers of 1024 for K, M, G, T)."""
  match = _SIZE.match(str(text))
  if not match:
    try:
      return int(float(text))
    except ValueError:
      raise ValueError(f"Bad size {text!r}; expected e.g. 5GB, 500MB or a byte count.") from None
  number, unit = float(match.group(1)), match.group(2).upper()
  return int(number * 1024 ** "_KMGT".index(unit)) if unit else int(number)


def add_parser(subparsers) -> None:
  export = subparsers.add_parser("export", help="Write a run in another framework's format.")
  export_sub = export.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
  hf = export_sub.add_parser("hf", help="A Hugging Face Llama directory (config, safetensors, tokenizer); an MLLM "
                                        "run adds its projector and vision tower.")
  hf.add_argument("source", metavar="RUN_OR_STAGE_DIR",
                  help="A runner run (<root>/runs/<id>), a stage directory or a trainer run directory.")
  hf.add_argument("--out", required=True, help="Output directory (replaced atomically).")
  hf.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                  help="Tensor dtype (float32 is exact; bfloat16 halves the size).")
  hf.add_argument("--stage", default=None, help="Of a runner run, the stage to export (default: the last trained).")
  hf.add_argument("--vocab", default=None, help="The SentencePiece model, when the run's is not on this machine.")
  hf.add_argument("--max-shard-size", default="5GB", help="Shard the weights above this size (default 5GB).")
  hf.set_defaults(func=_export_hf)

  evaluate = subparsers.add_parser("eval", help="Evaluate a run with an external harness.")
  eval_sub = evaluate.add_subparsers(dest="eval_command", required=True, metavar="HARNESS")
  harness = eval_sub.add_parser("lm-harness", help="lm-evaluation-harness (hf backend) on the run's exported LM; "
                                                   "rows go to the results store.")
  harness.add_argument("run", metavar="RUN", help="A runner run (<root>/runs/<id>) or a pretrain run directory.")
  harness.add_argument("--tasks", required=True, help="Comma-separated lm-eval task names.")
  harness.add_argument("--include-path", default=None, help="A folder of custom lm-eval task YAML files.")
  harness.add_argument("--results", default=None, help="Results store root (default: <root>/results of a runner run).")
  harness.add_argument("--run-name", default=None, help="Run name in the store (default: the run id).")
  harness.add_argument("--stage", default=None, help="Of a runner run, the stage whose LM is evaluated (pretrain).")
  harness.add_argument("--export-dir", default=None, help="Where the export goes (default: <trainer run>/hf).")
  harness.add_argument("--batch-size", type=int, default=8)
  harness.add_argument("--limit", type=int, default=None, help="Documents per task (default: all).")
  harness.add_argument("--device", default="cpu", help="torch device for lm-eval, e.g. cpu or cuda:0.")
  harness.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
  harness.set_defaults(func=_lm_harness)


def _export_hf(args) -> int:
  from visual_priors.interop import hf_export  # pylint: disable=import-outside-toplevel

  record = hf_export.export_hf(args.source, args.out, dtype=args.dtype, stage=args.stage, vocab=args.vocab,
                               max_shard_bytes=parse_size(args.max_shard_size))
  print(json.dumps({key: record[key] for key in ("out", "stage", "step", "dtype", "parameters", "files")}, indent=2))
  return 0


def _lm_harness(args) -> int:
  from visual_priors.interop import lm_harness  # pylint: disable=import-outside-toplevel

  tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
  rows = lm_harness.evaluate(args.run, tasks, results_root=args.results, run_name=args.run_name, stage=args.stage,
                             export_dir=args.export_dir, include_path=args.include_path, batch_size=args.batch_size,
                             limit=args.limit, device=args.device, dtype=args.dtype)
  for row in rows:
    print(f"{row['benchmark']:32s} {row['metric']:20s} {row['value']:8.2f}  (n={row['count']})")
  return 0
