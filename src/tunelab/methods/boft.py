"""BOFT (Liu et al. 2024) via PEFT: orthogonal fine-tuning with butterfly factorisation
(``--boft-block-size``, ``--boft-n-butterfly-factor``)."""

from peft import BOFTConfig

from ..config import declare, opt
from . import METHODS
from .peft_common import TunerMethod


@declare("boft", reads=("boft",))
class BoftOptions:
    boft_block_size: int = opt(4, "BOFT block size (divides the target layers' width)", min=1)
    boft_n_butterfly_factor: int = opt(1, "BOFT butterfly factors", min=1)


@METHODS.register("boft")
class BOFT(TunerMethod):
    """BOFT (PEFT): butterfly-factorised orthogonal rotations of the attention weights; the head trains too."""

    name = "boft"
    config_cls = BOFTConfig
    mapping = "TRANSFORMERS_MODELS_TO_BOFT_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 3e-3 -> 0.717 (one lr measured)
    default_lr = 3e-3
    fields = {"boft_block_size": "boft_block_size", "boft_n_butterfly_factor": "boft_n_butterfly_factor"}
