"""Analysis of finished runs: the results store, perception-vs-reasoning correlations, plots and the HTML report.

Reads result files only; it imports nothing from train, models or eval.
"""
