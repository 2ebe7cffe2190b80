"""Full fine-tuning: every parameter trains."""

from . import METHODS
from .base import Method


@METHODS.register("full")
class FullFineTuning(Method):
    name = "full"
    # On all-MiniLM-L6-v2, SST-2 2k examples, batch 32 (BENCHMARKS.md): 1 epoch: 2e-5 stays at chance,
    # 1e-4 -> 0.77, 3e-4 -> 0.81; 3 epochs: 1e-4 -> 0.819, 2e-4 -> 0.819, 3e-4 -> 0.794; CoLA (quick preset
    # sizes): 3e-4 stays at the majority class, 1e-4 learns. Use 2e-5 for BERT-base-sized models (paper preset).
    default_lr = 1e-4

    def prepare(self, model, ctx):
        for p in model.parameters():
            p.requires_grad_(True)
        return model
