"""The adaptation stages' defaults: the paper's where it states them, LLaVA's, Cambrian-1's and SigLIP's where not.

The training library's stage configs (`train/adaptation.py`) and the experiment schema's adapt.* and
vision.contrastive defaults both read them from here, so a default is written once. No jax: the schema
(listing and hashing experiments) imports this module.
"""

from __future__ import annotations

import dataclasses

BATCH_SIZE = 512  # global batch of every adaptation stage (docs/paper.md, section 4)
EPOCHS = 1.0  # one pass over the stage's data
PROJECTOR = "mlp2x_gelu"  # LLaVA-1.5's two-layer MLP
NUM_VISUAL_TOKENS = 576  # a 24 x 24 grid: SigLIP/CLIP-L at 336 pixels, as Cambrian-1 and LLaVA-1.5


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A stage's defaults."""

  trainable: str
  peak_lr: float
  warmup_fraction: float
  weight_decay: float
  b2: float
  seq_len: int  # instruction rows in tokens; caption length for contrastive
  upstream: tuple[str, ...]  # the config.upstream keys the stage reads


RECIPES: dict[str, Recipe] = {
    # SigLIP (Zhai et al. 2023): LR 1e-3, weight decay 1e-4; captions of at most 64 tokens.
    "contrastive": Recipe(".*", 1e-3, 0.05, 1e-4, 0.95, 64, ()),
    "align": Recipe("proj/.*", 1e-3, 0.06, 0.0, 0.999, 2048, ("lm", "vision")),
    "sft": Recipe("(proj|llm)/.*", 4e-5, 0.03, 0.0, 0.999, 2048, ("init",)),
    "blind": Recipe("llm/.*", 4e-5, 0.03, 0.0, 0.999, 2048, ("init",)),
}
