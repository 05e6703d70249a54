"""Segment labellers (lexicon, LLM endpoint), the label bit masks, and their hand-labelled evaluation set."""

from visual_priors.data.labelling import lexicon, llm  # noqa: F401  (registers the labeller kinds)
from visual_priors.data.labelling.base import (Labeller, labeller_kinds, labels_to_mask, make_labeller,
                                               mask_to_labels)

__all__ = ["Labeller", "labeller_kinds", "labels_to_mask", "make_labeller", "mask_to_labels"]
