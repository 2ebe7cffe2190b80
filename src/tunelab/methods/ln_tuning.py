"""LayerNorm tuning (Zhao et al. 2023) via PEFT LN_TUNING: trained copies of the LayerNorm layers
(gain and bias), everything else frozen. Targets: PEFT's mapping where it has the architecture, else
every normalisation layer of the backbone (``*Norm`` modules outside the head)."""

from peft import LNTuningConfig

from . import METHODS
from .peft_common import TunerMethod


def norm_module_names(model, layout) -> list:
    """The backbone's normalisation layers (LayerNorm, RMSNorm ...): full module names."""
    return [n for n, m in model.named_modules()
            if n and type(m).__name__.endswith("Norm") and layout.classify(n + ".weight") != "head"]


@METHODS.register("ln-tuning")
class LNTuning(TunerMethod):
    """LN tuning (PEFT): only the LayerNorm gains and biases train; the head trains too."""

    name = "ln-tuning"
    config_cls = LNTuningConfig
    mapping = "TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 1e-2 -> 0.747 (one lr measured)
    default_lr = 1e-2

    def prepare(self, model, ctx):
        self.norms = norm_module_names(model, ctx.layout)
        return super().prepare(model, ctx)

    def config_kwargs(self, cfg):
        return {"target_modules": None}

    def build_config(self, ctx):
        config = super().build_config(ctx)
        from peft.utils import constants

        if ctx.model_type not in getattr(constants, self.mapping):
            config.target_modules = self.norms or None
        return config
