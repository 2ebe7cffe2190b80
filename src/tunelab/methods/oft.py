"""OFT (Qiu et al. 2023) via PEFT: an orthogonal block-diagonal rotation of each target's weight
(``--oft-block-size``: the size of each block; it must divide the layer's width)."""

from peft import OFTConfig

from ..config import declare, opt
from . import METHODS
from .peft_common import TunerMethod


@declare("oft", reads=("oft",))
class OftOptions:
    oft_block_size: int = opt(32, "OFT block size (divides the target layers' width; PEFT's default)", min=1)


@METHODS.register("oft")
class OFT(TunerMethod):
    """OFT (PEFT): orthogonal block-diagonal rotations of the attention weights; the head trains too."""

    name = "oft"
    config_cls = OFTConfig
    mapping = "TRANSFORMERS_MODELS_TO_OFT_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 5e-3 -> 0.793 (one lr measured)
    default_lr = 5e-3
    fields = {"oft_block_size": "oft_block_size"}
