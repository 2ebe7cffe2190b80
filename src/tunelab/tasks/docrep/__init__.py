"""Self-supervised document representation: the tasks (``task``: bbc-docrep, docrep): read labelled document corpora (``news``),
cut documents into model-length chunks (``chunks``), a contrastive objective over whole documents
(``objective``), frozen document vectors (``embed``), baselines (``baselines``) and the extrinsic
evaluation by news-category classification (``evaluate``)."""

from . import task  # noqa: F401,E402  (registers the tasks)
