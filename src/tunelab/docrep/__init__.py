"""Self-supervised document representation (issue 11): read labelled document corpora (``news``),
cut documents into model-length chunks (``chunks``), a contrastive objective over whole documents
(``objective``), frozen document vectors (``embed``), baselines (``baselines``) and the extrinsic
evaluation by news-category classification (``evaluate``)."""
