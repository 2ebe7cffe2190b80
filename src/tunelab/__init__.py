"""tunelab: fine-tune pretrained transformers with many adaptation methods and compare them honestly."""

__version__ = "0.1.0"
