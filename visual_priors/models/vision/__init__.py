"""Vision and text towers (SigLIP-style ViT, text transformer, two towers), their registry and loader."""

from visual_priors.models.vision.checkpoint import load_big_vision_npz
from visual_priors.models.vision.flops import forward_flops_per_image, train_flops_per_image
from visual_priors.models.vision.registry import (ENCODERS, TEXT_TOWERS, build_two_tower, get_encoder,
                                                  get_text_tower, register_encoder)
from visual_priors.models.vision.text import TextConfig, TextTransformer
from visual_priors.models.vision.two_tower import TwoTower, contrastive_loss, sigmoid_loss
from visual_priors.models.vision.vit import ViT, ViTConfig

__all__ = [
    "ENCODERS", "TEXT_TOWERS", "TextConfig", "TextTransformer", "TwoTower", "ViT", "ViTConfig",
    "build_two_tower", "contrastive_loss", "forward_flops_per_image", "get_encoder", "get_text_tower",
    "load_big_vision_npz", "register_encoder", "sigmoid_loss", "train_flops_per_image",
]
