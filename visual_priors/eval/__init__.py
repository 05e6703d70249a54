"""Evaluation of trained models: the eval stage's suite (VQA in four groups, MLE-Bench, answer likelihood, the
reasoning probe; the LM's perplexity, zero-shot tasks and LM-vision alignment) and the benchmark registry."""
