"""The image family's options (fashion-mnist, mnist, image-folder; DISTL self-training: selftrain.py)."""

from ...config import declare, opt


@declare("image", "task family", reads=("family:image",))
class ImageOptions:
    augment: str = opt("weak", "image: augmentation of labelled training images: none | weak (crop + flip) | strong "
                               "(+ jitter, blur, solarize, erasing)", choices=("none", "weak", "strong"))
    labelled_per_class: int = opt(None, "image: train on exactly N labelled images per class (seeded); with "
                                        "--semi-supervised the rest of the train split is the unlabelled pool",
                                  min=1)
    semi_supervised: bool = opt(False, "image: DISTL-style self-training after the supervised epochs: EMA teacher, soft "
                                       "pseudo-labels on weak views, student on strong views + DINO agreement loss")
    self_train_rounds: int = opt(3, "semi-supervised: rounds; round r uses r x --unlabelled-per-round unlabelled images",
                                 min=1)
    self_train_epochs: float = opt(1, "semi-supervised: epochs over the round's unlabelled images per round", above=0)
    unlabelled_per_round: int = opt(None, "semi-supervised: unlabelled images added each round (default: the pool / "
                                          "rounds, so the last round uses all of it)", min=1)
    self_train_lr: float = opt(None, "semi-supervised: peak learning rate of the rounds (default: --lr; warm-up and "
                                     "linear decay over all rounds)", above=0)
    pseudo_threshold: float = opt(0.0, "semi-supervised: distil only unlabelled images whose (sharpened) pseudo-label "
                                       "has max probability >= this (FixMatch-style; 0 = every image, DISTL's soft "
                                       "labels)", min=0, below=1)
    ema_momentum: float = opt(0.99, "semi-supervised: teacher = momentum x teacher + (1 - momentum) x student, every step",
                              min=0, below=1)
    distill_weight: float = opt(1.0, "semi-supervised: weight of the distillation loss (student vs the teacher's soft "
                                     "pseudo-labels)", min=0)
    ssl_weight: float = opt(0.1, "semi-supervised: weight of the DINO-style agreement loss across crops", min=0)
