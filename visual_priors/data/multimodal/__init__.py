"""Multimodal data: the chat template, loaders for users' image-text data, the grain pipeline, SFT-data splits."""
