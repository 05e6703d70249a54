"""Evaluation of trained models: multiple-choice scoring of an MLLM by log-likelihood."""
