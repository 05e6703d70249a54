"""Estimated compute of an experiment: model FLOPs per stage and accelerator-hours at a stated MFU.

What is counted (model FLOPs, 2 per multiply-add, as in visual_priors.models.flops):
  pretrain     token_budget x train FLOPs per token (3 x forward: 6N plus causal attention) at seq_len.
  contrastive  (vision.kind "contrastive") steps x batch x 3 x (image tower + text tower forward); steps 0 =
               one epoch of the captions.
  align        steps x `mllm_train_flops_per_step` with the projector training (encoder 1F, projector 3F,
               LM 2F); steps = adapt.align.steps or epochs over the captions.
  blind / sft  the same with projector and LM training (encoder 1F, projector 3F, LM 3F) over the
               instruction items; blind counts like sft (an upper bound: its rows carry no image).
Every adaptation row is counted at the full adaptation seq_len with one image (padding and the paper's
language-only SFT items are not discounted: an upper bound of that part). Evaluation is not counted
(decoding is small next to training but depends on answer lengths). Example counts for data kind
"llava" are the paper's (docs/paper.md, section 4: ~1M captions, ~2M + ~1.5M instruction items) unless
given; for "generated" they are the generator's settings. Hours = FLOPs / (peak bf16 FLOP/s of the
chip, train/mfu.py's table, x MFU); MFU defaults to 0.4, a typical well-tuned large-model figure, not a
measurement of this code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import ml_collections

from visual_priors import config as config_lib

DEFAULT_CHIP = "TPU v5p"
DEFAULT_MFU = 0.4
# The paper's adaptation data (docs/paper.md, section 4: adaptation).
PAPER_CAPTIONS = 1_000_000
PAPER_INSTRUCT = 3_500_000
CONTRASTIVE_TEXT_LEN = 64  # the contrastive recipe's caption length (train/stages.py RECIPES)


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


def _steps(stage: ml_collections.ConfigDict, examples: int) -> int:
  if stage.steps > 0:
    return int(stage.steps)
  return max(1, math.ceil(stage.epochs * examples / stage.batch_size))


def estimate(config: ml_collections.ConfigDict, *, chip: str = DEFAULT_CHIP, mfu: float = DEFAULT_MFU,
             examples: Mapping[str, int] | None = None) -> CostEstimate:
  """The compute of `config` (validated); `examples` may give {"captions": n, "instruct": n}."""
  # Imported here: these pull in jax, which `list` and `--help` do not need.
  from visual_priors.models import flops, scales  # pylint: disable=import-outside-toplevel
  from visual_priors.models.mllm import MLLMConfig, feature_extractor  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import flops as vision_flops  # pylint: disable=import-outside-toplevel
  from visual_priors.models.vision import registry as encoders  # pylint: disable=import-outside-toplevel
  from visual_priors.train import mfu as mfu_lib  # pylint: disable=import-outside-toplevel

  config_lib.validate(config)
  peak = mfu_lib.peak_flops_per_device(chip)
  if peak is None:
    known = ", ".join(fragment for fragment, _ in mfu_lib.PEAK_BF16_FLOPS)
    raise ValueError(f"No peak FLOP/s known for chip {chip!r}; name one of: {known} (case-insensitive).")
  if not 0 < mfu <= 1:
    raise ValueError(f"MFU must be in (0, 1], got {mfu}.")
  model_overrides = config.pretrain.overrides.get("model", {})
  llm = scales.get_scale(config.pretrain.scale, **dict(model_overrides))
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
  result: dict[str, float] = {}
  result["pretrain"] = config.pretrain.token_budget * flops.train_flops_per_token(llm, config.pretrain.seq_len)

  image_tower = encoders.get_encoder(config.vision.encoder)
  if config.vision.kind == "contrastive":
    batch = config.vision.contrastive.batch_size
    steps = config.vision.contrastive.steps or max(1, math.ceil(counts["captions"] / batch))
    text_len = CONTRASTIVE_TEXT_LEN
    pair = vision_flops.forward_flops_per_image(image_tower) + flops.encoder_forward_flops(
        image_tower.width, image_tower.depth, image_tower.mlp_dim, text_len)
    result["vision"] = 3.0 * steps * batch * pair
    assumptions.append(f"contrastive text tower: the image tower's shape over {text_len}-token captions")
  else:
    result["vision"] = 0.0
  align = config.adapt.align
  mllm = MLLMConfig(vision=feature_extractor(image_tower), llm=llm, projector=align.projector,
                    num_visual_tokens=align.num_visual_tokens)
  align_step = flops.mllm_train_flops_per_step(mllm, batch_size=align.batch_size, seq_len=align.seq_len,
                                               trained=("proj",))
  result["align"] = _steps(align, counts["captions"]) * align_step
  sft = config.adapt.sft
  sft_step = flops.mllm_train_flops_per_step(mllm, batch_size=sft.batch_size, seq_len=sft.seq_len,
                                             trained=("proj", "llm"))
  result["sft"] = _steps(sft, counts["instruct"]) * sft_step
  if config.adapt.blind:
    result["blind"] = result["sft"]
  return CostEstimate(params=config_lib.decoder_params(llm), tokens=int(config.pretrain.token_budget), flops=result,
                      chip=chip, peak_flops=peak, mfu=mfu, assumptions=tuple(assumptions))


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
