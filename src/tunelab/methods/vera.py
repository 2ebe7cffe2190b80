"""VeRA (Kopiczko et al. 2024) via PEFT: frozen random low-rank matrices shared by every layer, with
trained scaling vectors per layer (``--vera-r``: the shared rank). All targets must have one shape
(query/value on BERT do)."""

from peft import VeraConfig

from ..config import declare, opt
from . import METHODS
from .peft_common import TunerMethod


@declare("vera", reads=("vera",))
class VeraOptions:
    vera_r: int = opt(256, "VeRA rank of the shared random matrices", min=1)


@METHODS.register("vera")
class VeRA(TunerMethod):
    """VeRA (PEFT): shared frozen random matrices, trained per-layer scaling vectors; the head trains too."""

    name = "vera"
    config_cls = VeraConfig
    mapping = "TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 2e-2 -> 0.667 (one lr measured; the VeRA paper's GLUE range)
    default_lr = 2e-2
    fields = {"r": "vera_r"}
    describe_keys = ("projection_prng_key",)
