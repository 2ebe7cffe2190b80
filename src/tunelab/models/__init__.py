"""Backbones: aliases, loading with a task head, and finding the transformer layers."""

from .aliases import ALIASES, resolve_model
from .layout import Layout, find_layout
from .loading import load_backbone

__all__ = ["ALIASES", "resolve_model", "Layout", "find_layout", "load_backbone"]
