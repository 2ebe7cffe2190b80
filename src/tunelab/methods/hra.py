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
    default_lr = 2e-3
    fields = {"r": "hra_r"}
