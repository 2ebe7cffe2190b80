"""P-tuning (Liu et al. 2021) via PEFT: ``--num-virtual-tokens`` virtual token embeddings produced by a
trained prompt encoder (an MLP, ``--ptuning-encoder-hidden-size`` wide) and prepended to the input."""

from peft import PromptEncoderConfig

from ..config import declare, opt
from . import METHODS
from .peft_common import PeftMethod, head_module_names


@declare("p-tuning", reads=("p-tuning",))
class PTuningOptions:
    ptuning_encoder_hidden_size: int = opt(128, "p-tuning: hidden size of the prompt encoder MLP", min=1)


@METHODS.register("p-tuning")
class PTuning(PeftMethod):
    """P-tuning (PEFT): virtual tokens from a trained MLP prompt encoder; the head trains too."""

    name = "p-tuning"
    trains = "virtual_tokens"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 1e-2 -> 0.683 (one lr measured)
    default_lr = 1e-2
    describe_keys = ("num_virtual_tokens", "encoder_reparameterization_type", "encoder_hidden_size")

    def build_config(self, ctx):
        return PromptEncoderConfig(task_type=ctx.peft_task_type, num_virtual_tokens=ctx.cfg.num_virtual_tokens,
                                   encoder_hidden_size=ctx.cfg.ptuning_encoder_hidden_size,
                                   modules_to_save=head_module_names(ctx.layout) or None)
