"""LoKr (Yeh et al. 2024, LyCORIS) via PEFT: the weight update is a Kronecker product of a small
matrix and a low-rank one (``--lokr-r``, ``--lokr-alpha``) on PEFT's default targets."""

from peft import LoKrConfig

from ..config import declare, opt
from . import METHODS
from .peft_common import TunerMethod


@declare("lokr", reads=("lokr",))
class LokrOptions:
    lokr_r: int = opt(8, "LoKr rank", min=1)
    lokr_alpha: float = opt(8, "LoKr alpha (scaling alpha/r)", above=0)


@METHODS.register("lokr")
class LoKr(TunerMethod):
    """LoKr (PEFT): Kronecker-product weight updates on the attention projections; the head trains too."""

    name = "lokr"
    config_cls = LoKrConfig
    mapping = "TRANSFORMERS_MODELS_TO_LOKR_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 1e-2 -> 0.677 (one lr measured)
    default_lr = 1e-2
    fields = {"r": "lokr_r", "alpha": "lokr_alpha"}
