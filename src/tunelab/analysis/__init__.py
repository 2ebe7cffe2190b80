"""Analyses of finished runs: attention (``tunelab analyze attention``) and the layer-activity plot
of dynamic layer methods."""
