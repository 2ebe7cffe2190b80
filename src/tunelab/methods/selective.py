"""Selective-layer fine-tuning: only a chosen set of layers (any set) plus the head trains.

``--layers`` takes ``9-11``, ``0,5,9``, ``top:3``, ``bottom:2`` or ``top:25%``. Embeddings stay
frozen unless ``--train-embeddings``. Because embeddings and every layer below the lowest chosen
one are frozen, autograd does no backward computation below that layer.
"""

from ..errors import UserError
from . import METHODS
from .base import Method, group_params, set_head_trainable
from .layers import parse_layers


@METHODS.register("selective")
class SelectiveLayers(Method):
    name = "selective"
    default_lr = 2e-4

    def validate(self, cfg):
        if not cfg.layers:
            raise UserError("--method selective needs --layers (e.g. top:2, 9-11, 0,5,9)")

    def prepare(self, model, ctx):
        self.layers = parse_layers(ctx.cfg.layers, ctx.layout)
        for p in model.parameters():
            p.requires_grad_(False)
        groups = group_params(model, ctx.layout)
        for i in self.layers:
            for _, p in groups.layers[i]:
                p.requires_grad_(True)
        if ctx.cfg.train_embeddings:
            for _, p in groups.embeddings:
                p.requires_grad_(True)
        set_head_trainable(model, ctx.layout)
        return model

    def describe(self):
        return {"layers": self.layers}
