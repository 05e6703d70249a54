"""AdamW with linear warm-up and cosine decay, global-norm clipping and a regex for what decays."""

from __future__ import annotations

import dataclasses
from typing import Any

import optax

from visual_priors.train import partition


@dataclasses.dataclass(frozen=True)
class AdamWSettings:
  """Optimizer hyper-parameters.

  Peak LR 3e-4 with 1024 linear warm-up steps and cosine decay are the paper's (docs/paper.md, section 1).
  The paper does not state betas, eps, weight decay, clipping or the final LR; the defaults here are the
  common Llama-style choices (betas 0.9/0.95, eps 1e-8, decay 0.1 on matrices only, clip 1.0, decay to
  10% of peak).
  """

  peak_lr: float = 3e-4
  warmup_steps: int = 1024
  final_lr_fraction: float = 0.1
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.1
  # Fully matched against '/'-joined parameter paths; by default the 2-D weights, not norms or biases.
  decay_regex: str = r".*(kernel|embedding|weight)"
  clip_norm: float = 1.0

  def validate(self, total_steps: int) -> None:
    if not self.peak_lr > 0:
      raise ValueError(f"optimizer.peak_lr must be > 0, got {self.peak_lr}.")
    if self.warmup_steps < 0:
      raise ValueError(f"optimizer.warmup_steps must be >= 0, got {self.warmup_steps}.")
    if self.warmup_steps >= total_steps:
      raise ValueError(
          f"optimizer.warmup_steps ({self.warmup_steps}) must be smaller than the run's {total_steps} steps; "
          "lower optimizer.warmup_steps or train longer."
      )
    if not 0 <= self.final_lr_fraction <= 1:
      raise ValueError(f"optimizer.final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}.")
    for name in ("b1", "b2"):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f"optimizer.{name} must be in [0, 1), got {getattr(self, name)}.")
    if not self.eps > 0:
      raise ValueError(f"optimizer.eps must be > 0, got {self.eps}.")
    if self.weight_decay < 0:
      raise ValueError(f"optimizer.weight_decay must be >= 0, got {self.weight_decay}.")
    if self.clip_norm < 0:
      raise ValueError(f"optimizer.clip_norm must be >= 0 (0 disables clipping), got {self.clip_norm}.")
    partition.compile_regex(self.decay_regex, "optimizer.decay_regex")


def short_run_warmup(warmup_steps: int, total_steps: int) -> int:
  """The warm-up a run of `total_steps` uses when the user did not choose one: `warmup_steps` (the paper's
  1024) where that is at most 10% of the run, else 10% of the run, so short runs keep most of their steps."""
  return min(int(warmup_steps), int(total_steps) // 10)


def learning_rate_schedule(settings: AdamWSettings, total_steps: int) -> optax.Schedule:
  """0 -> peak linearly over the warm-up, then cosine from peak to peak * final_lr_fraction at `total_steps`."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=settings.peak_lr,
      warmup_steps=settings.warmup_steps,
      decay_steps=total_steps,
      end_value=settings.peak_lr * settings.final_lr_fraction,
  )


def make_optimizer(settings: AdamWSettings, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The AdamW transformation (clipping first) and its learning-rate schedule."""
  settings.validate(total_steps)
  schedule = learning_rate_schedule(settings, total_steps)

  def decay_mask(params: Any) -> Any:
    return partition.path_mask(params, settings.decay_regex, "optimizer.decay_regex")

  adamw = optax.adamw(
      schedule, b1=settings.b1, b2=settings.b2, eps=settings.eps,
      weight_decay=settings.weight_decay, mask=decay_mask,
  )
  if settings.clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(settings.clip_norm), adamw), schedule
  return adamw, schedule
