"""Image classification with ViTs (fashion-mnist, mnist, image-folder): the tasks (``task``),
ImageFolder / IDX / hub readers (``data``), augmentations (``augment``), DISTL-style self-training
(``selftrain``), DINO (``dino``: its parts; ``pretrain``: ``tunelab pretrain dino``) and the offline ``vit-tiny``
model (``vit``)."""

from . import vit  # noqa: F401  (the vit-tiny alias, before vit-tiny-dino)
from . import pretrain, task  # noqa: F401,E402  (registers the tasks, metrics, head, alias, pretraining kind)
