"""Token classification (NER and any BIO / IOB tagging) on the user's CoNLL / JSON-lines files or a
dataset: the task ``token-classification`` (``task``), the readers and tag schemes (``data``)."""

from . import task  # noqa: F401  (registers the task)
