"""Selective-layer fine-tuning: only a chosen set of layers (any set) plus the head trains.

``--layers`` takes ``9-11``, ``0,5,9``, ``top:3``, ``bottom:2`` or ``top:25%``. Embeddings stay
frozen unless ``--train-embeddings``. Because embeddings and every layer below the lowest chosen
one are frozen, autograd does no backward computation below that layer.

``--layer-budget SHARE`` instead of ``--layers``: the top layers that fit in SHARE of the backbone's
non-head parameters (``methods/budget.py``). Either way run.json ``params.trainable_fraction_mean``
records the share of those parameters that trained (static: the same at every step).
"""

from ..config import declare, opt
from ..errors import UserError
from . import METHODS
from .base import Method, group_params, set_head_trainable
from .budget import refuse_changed, top_layers_in_budget
from .layers import parse_layers


@declare("selective", reads=("selective",))
class SelectiveOptions:
    layers: str = opt(None, "layers to train: 9-11 | 0,5,9 | top:3 | bottom:2 | top:25% ; per stack on encoder-decoder "
                            "models: encoder:top:2,decoder:0-1 (docs/architecture.md)", reads=("selective", "lora"))
    train_embeddings: bool = opt(False, "selective: also train the embeddings")


@METHODS.register("selective")
class SelectiveLayers(Method):
    """Selective-layer FT: a fixed set of layers (--layers or --layer-budget) plus the head trains."""

    name = "selective"
    selects_layers = True
    default_lr = 2e-4

    @classmethod
    def apply_layer_budget(cls, cfg):
        """The budget picks the top layers that fit: --layers and --train-embeddings are refused."""
        refuse_changed(cfg, "layers", "the budget trains the top layers that fit")
        refuse_changed(cfg, "train_embeddings", "the budget counts layers only")

    def validate(self, cfg):
        if not cfg.layers and cfg.layer_budget is None:
            raise UserError("--method selective needs --layers (e.g. top:2, 9-11, 0,5,9) or --layer-budget")

    def prepare(self, model, ctx):
        groups = group_params(model, ctx.layout)
        sizes = {i: sum(p.numel() for _, p in ps) for i, ps in groups.layers.items()}
        emb = sum(p.numel() for _, p in groups.embeddings)
        # the budget's denominator (methods/dynamic.py): every non-head parameter
        self.denominator = sum(sizes.values()) + emb + sum(p.numel() for _, p in groups.other)
        self.budget = ctx.cfg.layer_budget
        if self.budget is not None:
            self.layers = top_layers_in_budget(ctx.layout, sizes, self.denominator, self.budget)
        else:
            self.layers = parse_layers(ctx.cfg.layers, ctx.layout)
        self.share = (sum(sizes[i] for i in self.layers) + (emb if ctx.cfg.train_embeddings else 0)) / self.denominator
        for p in model.parameters():
            p.requires_grad_(False)
        for i in self.layers:
            for _, p in groups.layers[i]:
                p.requires_grad_(True)
        if ctx.cfg.train_embeddings:
            for _, p in groups.embeddings:
                p.requires_grad_(True)
        set_head_trainable(model, ctx.layout)
        return model

    def describe(self):
        return {"layers": self.layers, "layer_budget": getattr(self, "budget", None)}

    def params_extras(self):
        share = round(self.share, 6)
        return {"trainable_fraction_mean": share, "trainable_fraction_max": share,
                "trainable_fraction_of": "non-head backbone parameters (embeddings + layers)",
                "layer_budget": self.budget}
