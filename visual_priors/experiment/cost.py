"""Estimated compute of an experiment: model FLOPs per stage and accelerator-hours at a stated MFU.

Each stage module counts its own model FLOPs (2 per multiply-add, as in visual_priors.models.flops; its `flops`
says what): pretrain the token budget, vision a contrastive tower's steps, align / blind / sft their steps of
the MLLM's train step (`stage.adaptation_steps`: steps, or epochs over the examples). Every adaptation row is
counted at the full adaptation seq_len with one image (padding and the paper's language-only SFT items are not
discounted: an upper bound of that part). Evaluation is not counted
(decoding is small next to training but depends on answer lengths). Example counts for data kind
"llava" are the paper's (docs/paper.md, section 4: ~1M captions, ~2M + ~1.5M instruction items) unless
given; for "generated" they are the generator's settings. Hours = FLOPs / (peak bf16 FLOP/s of the
chip, train/mfu.py's table, x MFU); MFU defaults to 0.4, a typical well-tuned large-model figure, not a
measurement of this code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import ml_collections

from visual_priors.experiment import graph, schema

DEFAULT_CHIP = "TPU v5p"
DEFAULT_MFU = 0.4
# The paper's adaptation data (docs/paper.md, section 4: adaptation).
PAPER_CAPTIONS = 1_000_000
PAPER_INSTRUCT = 3_500_000


@dataclasses.dataclass(frozen=True)
class CostEstimate:
  """FLOPs per stage (model FLOPs) and what they take on `chip` at `mfu`."""

  params: int
  tokens: int
  flops: dict[str, float]
  chip: str
  peak_flops: float
  mfu: float
  assumptions: tuple[str, ...]

  @property
  def total_flops(self) -> float:
    return float(sum(self.flops.values()))

  @property
  def chip_hours(self) -> float:
    return self.total_flops / (self.peak_flops * self.mfu) / 3600.0


def estimate(config: ml_collections.ConfigDict, *, chip: str = DEFAULT_CHIP, mfu: float = DEFAULT_MFU,
             examples: Mapping[str, int] | None = None) -> CostEstimate:
  """The compute of `config` (validated): each stage's `flops`; `examples` may give {"captions": n,
  "instruct": n}."""
  from visual_priors.train import mfu as mfu_lib  # pylint: disable=import-outside-toplevel (jax: not for `list`)

  schema.validate(config)
  peak = mfu_lib.peak_flops_per_device(chip)
  if peak is None:
    known = ", ".join(fragment for fragment, _ in mfu_lib.PEAK_BF16_FLOPS)
    raise ValueError(f"No peak FLOP/s known for chip {chip!r}; name one of: {known} (case-insensitive).")
  if not 0 < mfu <= 1:
    raise ValueError(f"MFU must be in (0, 1], got {mfu}.")
  data = config.adapt.data
  if data.kind == "generated":
    counts = {"captions": data.generated.n_captions, "instruct": data.generated.n_instruct}
    source = "generated data settings"
  else:
    counts = {"captions": PAPER_CAPTIONS, "instruct": PAPER_INSTRUCT}
    source = "the paper's data sizes"
  counts.update(examples or {})
  assumptions = [
      f"model FLOPs (2 per multiply-add); {chip}: {peak / 1e12:g} TFLOP/s bf16 peak at MFU {mfu:g}",
      f"adaptation examples: {counts['captions']:,} captions, {counts['instruct']:,} instruction items "
      f"({source if not examples else 'given'}); every row at full seq_len with one image (upper bound)",
      "evaluation not counted",
  ]
  if config.vision.kind == "contrastive":
    assumptions.append("contrastive text tower: the image tower's shape over the recipe's caption length")
  result = {}
  for stage in graph.STAGES.values():
    value = stage.flops(config, counts) if stage.active(config) else None
    if value is not None:
      result[stage.name] = float(value)
  return CostEstimate(params=schema.decoder_params(schema.decoder_config(config)),
                      tokens=int(config.pretrain.token_budget), flops=result, chip=chip, peak_flops=peak, mfu=mfu,
                      assumptions=tuple(assumptions))


def _human(value: float, unit: str = "") -> str:
  for factor, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(value) >= factor:
      return f"{value / factor:.3g}{suffix}{unit}"
  return f"{value:.3g}{unit}"


def format_hours(hours: float) -> str:
  """"3.2 s", "14 min", "5.1 h", "9,400 h"."""
  if hours * 3600 < 60:
    return f"{hours * 3600:.2g} s"
  if hours < 1:
    return f"{hours * 60:.2g} min"
  return f"{hours:,.3g} h" if hours < 1000 else f"{hours:,.0f} h"


def format_estimate(estimate_: CostEstimate) -> str:
  """Multi-line text: parameters, tokens, FLOPs per stage, chip-hours, and the assumptions."""
  lines = [f"LM parameters  {_human(estimate_.params)}", f"pretrain tokens  {_human(estimate_.tokens)}"]
  for stage, value in estimate_.flops.items():
    lines.append(f"{stage:<9} {value:.3g} FLOPs")
  lines.append(f"total     {estimate_.total_flops:.3g} FLOPs = {format_hours(estimate_.chip_hours)} on one "
               f"{estimate_.chip} at MFU {estimate_.mfu:g}")
  lines += [f"  assumes: {text}" for text in estimate_.assumptions]
  return "\n".join(lines)
