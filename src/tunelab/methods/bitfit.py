"""BitFit (Ben Zaken et al. 2022): only the bias terms of the backbone train (tunelab's own: PEFT has
no BitFit tuner), plus the head. Saved as the whole model (HF format), like full fine-tuning."""

from . import METHODS
from .base import Method, set_head_trainable


@METHODS.register("bitfit")
class BitFit(Method):
    """BitFit: only the backbone's bias terms train; the head trains too."""

    name = "bitfit"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 3e-3 -> 0.700 (one lr measured)
    default_lr = 3e-3

    def prepare(self, model, ctx):
        for n, p in model.named_parameters():
            p.requires_grad_(n.endswith(".bias"))
        set_head_trainable(model, ctx.layout)
        return model

    def describe(self):
        return {"trains": "bias terms of the backbone"}
