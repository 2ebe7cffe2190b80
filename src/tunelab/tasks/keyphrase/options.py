"""The keyphrase family's options: ``--doc-stride`` (the sliding windows' overlap) is shared with the
token-classification family and declared in tasks/tagging.py."""

from .. import tagging  # noqa: F401  (declares --doc-stride)
