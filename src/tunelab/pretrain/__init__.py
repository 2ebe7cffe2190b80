"""Self-supervised (continued) pretraining that makes new base models for ``tunelab run --model DIR``."""
