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
    # minilm, SST-2 1k x 2 epochs, seed 0 (BENCHMARKS.md "PEFT methods"): see the sweep there
    default_lr = 2e-3
