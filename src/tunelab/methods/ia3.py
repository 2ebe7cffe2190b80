"""(IA)^3 (Liu et al. 2022) via PEFT: learned vectors rescaling keys, values and the feed-forward
output (PEFT's per-architecture targets: key, value, output.dense on BERT)."""

from peft import IA3Config

from . import METHODS
from .peft_common import TunerMethod


@METHODS.register("ia3")
class IA3(TunerMethod):
    """(IA)^3 (PEFT): learned rescaling vectors on keys, values and feed-forward outputs; the head trains too."""

    name = "ia3"
    config_cls = IA3Config
    mapping = "TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 5e-3 -> 0.697, 1e-2 -> 0.703;
    # 800 x 2 (dev 500): 5e-3 -> 0.742, 1e-2 -> 0.726. 5e-3: the better one at the larger budget
    default_lr = 5e-3
    describe_keys = ("feedforward_modules",)

    def build_config(self, ctx):
        config = super().build_config(ctx)
        if config.target_modules is not None and config.feedforward_modules is None:
            config.feedforward_modules = []  # targets of our own (Whisper q/v): none is a feed-forward layer
        return config
