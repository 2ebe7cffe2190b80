"""Prefix tuning / P-tuning v2 via PEFT: trainable key/value prefixes in every layer
(``--num-virtual-tokens``; ``--prefix-projection`` adds the reparameterising MLP of Li & Liang)."""

from peft import PrefixTuningConfig

from ..config import declare, opt
from . import METHODS
from .peft_common import PeftMethod, head_module_names


@declare("prefix", reads=("prefix",))
class PrefixOptions:
    prefix_projection: bool = opt(False, "prefix tuning: reparameterise prefixes with an MLP")


@METHODS.register("prefix")
class PrefixTuning(PeftMethod):
    """Prefix tuning (PEFT): trainable key/value prefixes in every layer; the head trains too."""

    name = "prefix"
    trains = "virtual_tokens"
    default_lr = 1e-2
    describe_keys = ("num_virtual_tokens", "prefix_projection", "encoder_hidden_size", "modules_to_save")

    def build_config(self, ctx):
        return PrefixTuningConfig(task_type=ctx.peft_task_type, num_virtual_tokens=ctx.cfg.num_virtual_tokens,
                                  prefix_projection=bool(ctx.cfg.prefix_projection),
                                  modules_to_save=head_module_names(ctx.layout) or None)
