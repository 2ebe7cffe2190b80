"""DoRA (Liu et al. 2024) via PEFT: LoRA with weight decomposition (``use_dora``): each target's weight
is split into a magnitude vector (trained) and a direction updated by the LoRA matrices. Reads the LoRA
options (``--lora-r``, ``--lora-alpha``, ``--lora-targets``, ``--layers``, ``--lora-init`` ...)."""

from . import METHODS
from .lora import LoRA


@METHODS.register("dora")
class DoRA(LoRA):
    """DoRA (PEFT): LoRA with a trained magnitude per output (weight decomposition); the head trains too."""

    name = "dora"
    use_dora = True
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 2e-3 -> 0.730 (LoRA's default, kept)
    default_lr = 2e-3
