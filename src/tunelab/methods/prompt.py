"""Soft prompt tuning via PEFT (Lester et al. 2021): ``--num-virtual-tokens`` trainable input
embeddings, initialised randomly; the head trains alongside."""

from peft import PromptTuningConfig

from . import METHODS
from .peft_common import PeftMethod, head_module_names


@METHODS.register("prompt")
class PromptTuning(PeftMethod):
    name = "prompt"
    default_lr = 3e-2
    describe_keys = ("num_virtual_tokens", "prompt_tuning_init", "modules_to_save")

    def build_config(self, ctx):
        return PromptTuningConfig(task_type=ctx.peft_task_type, num_virtual_tokens=ctx.cfg.num_virtual_tokens,
                                  modules_to_save=head_module_names(ctx.layout) or None)
