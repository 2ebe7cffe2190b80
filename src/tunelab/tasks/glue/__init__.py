"""GLUE: the 9 sentence / sentence-pair tasks of the benchmark, read from the GLUE download layout
or the hub (``task``)."""

from . import task  # noqa: F401  (registers the tasks)
