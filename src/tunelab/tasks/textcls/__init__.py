"""Text classification on the user's own data (``task``: text-classification): single sentences or pairs,
string / integer / ClassLabel labels (single-label), float labels (regression) or lists (multi-label),
read through the shared data options (tasks/datafiles.py)."""

from . import options  # noqa: F401  (declares --text-pair-column)
from . import task  # noqa: F401,E402  (registers the task, its multi-label head and micro_f1)
