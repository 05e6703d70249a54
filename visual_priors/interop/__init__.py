"""Interoperability with the rest of the field: Hugging Face export, and lm-evaluation-harness on exports."""
