"""LoHa (Hyeon-Woo et al. 2022, LyCORIS) via PEFT: the weight update is the Hadamard product of two
low-rank products (``--loha-r``, ``--loha-alpha``) on PEFT's default targets (query/value on BERT)."""

from peft import LoHaConfig

from ..config import declare, opt
from . import METHODS
from .peft_common import TunerMethod


@declare("loha", reads=("loha",))
class LohaOptions:
    loha_r: int = opt(8, "LoHa rank", min=1)
    loha_alpha: float = opt(8, "LoHa alpha (scaling alpha/r)", above=0)


@METHODS.register("loha")
class LoHa(TunerMethod):
    """LoHa (PEFT): Hadamard product of two low-rank updates on the attention projections; the head trains too."""

    name = "loha"
    config_cls = LoHaConfig
    mapping = "TRANSFORMERS_MODELS_TO_LOHA_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 5e-3 -> 0.673 (one lr measured)
    default_lr = 5e-3
    fields = {"r": "loha_r", "alpha": "loha_alpha"}
