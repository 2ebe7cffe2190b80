"""HRA (Yuan et al. 2024) via PEFT: the weight is multiplied by a chain of ``--hra-r`` trained
Householder reflections."""

from peft import HRAConfig

from ..config import declare, opt
from . import METHODS
from .peft_common import TunerMethod


@declare("hra", reads=("hra",))
class HraOptions:
    hra_r: int = opt(8, "HRA: Householder reflections per target", min=1)


@METHODS.register("hra")
class HRA(TunerMethod):
    """HRA (PEFT): chains of trained Householder reflections on the attention weights; the head trains too."""

    name = "hra"
    config_cls = HRAConfig
    mapping = "TRANSFORMERS_MODELS_TO_HRA_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 5e-3 -> 0.743 (one lr measured)
    default_lr = 5e-3
    fields = {"r": "hra_r"}
