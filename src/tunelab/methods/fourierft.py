"""FourierFT (Gao et al. 2024) via PEFT: trains ``--fourierft-n-frequency`` spectral coefficients per
target at random frequencies; the weight update is their inverse 2-D Fourier transform x
``--fourierft-scaling``."""

from peft import FourierFTConfig

from ..config import declare, opt
from . import METHODS
from .peft_common import TunerMethod


@declare("fourierft", reads=("fourierft",))
class FourierOptions:
    fourierft_n_frequency: int = opt(1000, "FourierFT trained spectral coefficients per target", min=1)
    fourierft_scaling: float = opt(150.0, "FourierFT scaling of the update (PEFT's default for classification)", above=0)


@METHODS.register("fourierft")
class FourierFT(TunerMethod):
    """FourierFT (PEFT): a few trained Fourier coefficients per attention weight; the head trains too."""

    name = "fourierft"
    config_cls = FourierFTConfig
    mapping = "TRANSFORMERS_MODELS_TO_FOURIERFT_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 5e-3 -> 0.653, 3e-2 -> 0.563 (loss rose: too high with scaling 150)
    default_lr = 5e-3
    fields = {"n_frequency": "fourierft_n_frequency", "scaling": "fourierft_scaling"}
