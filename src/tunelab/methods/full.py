"""Full fine-tuning: every parameter trains."""

from . import METHODS
from .base import Method


@METHODS.register("full")
class FullFineTuning(Method):
    name = "full"
    # On all-MiniLM-L6-v2, 2e-5 stays at chance on SST-2 after 2k examples; 1e-4 learns (README).
    default_lr = 1e-4

    def prepare(self, model, ctx):
        for p in model.parameters():
            p.requires_grad_(True)
        return model
