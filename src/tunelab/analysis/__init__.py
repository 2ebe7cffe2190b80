"""Analyses of finished runs: attention (``tunelab analyze attention``). The figures drawn from a run
record itself (layer activity) are in results/figures.py."""
