"""LoRA via PEFT. ``--lora-targets`` defaults to PEFT's per-architecture mapping (query/value for
BERT/RoBERTa, query_proj/value_proj for DeBERTa-v2, q_proj/v_proj for Llama/OPT, c_attn for GPT-2).
With ``--layers`` only those layers get adapters (PEFT ``layers_to_transform``)."""

from peft import LoraConfig

from ..errors import UserError
from . import METHODS
from .layers import parse_layers
from .peft_common import PeftMethod, head_module_names


@METHODS.register("lora")
class LoRA(PeftMethod):
    name = "lora"
    # minilm, SST-2 2k examples, 1 epoch, r 8 on query,value, pooler trained: 1e-3 -> 0.745, 2e-3 -> 0.765
    default_lr = 2e-3
    options = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "layers")
    describe_keys = ("r", "lora_alpha", "lora_dropout", "target_modules", "layers_to_transform", "modules_to_save")

    def validate(self, cfg):
        if cfg.lora_r < 1:
            raise UserError(f"--lora-r {cfg.lora_r}: must be a positive integer")
        if cfg.lora_alpha <= 0:
            raise UserError(f"--lora-alpha {cfg.lora_alpha}: must be positive")
        if not 0 <= cfg.lora_dropout < 1:
            raise UserError(f"--lora-dropout {cfg.lora_dropout}: must be in [0, 1)")

    def build_config(self, ctx):
        cfg, layout = ctx.cfg, ctx.layout
        targets = cfg.lora_targets
        if isinstance(targets, str):
            targets = [t for t in targets.split(",") if t]
        kw = {}
        if cfg.layers:
            kw = {"layers_to_transform": parse_layers(cfg.layers, layout.num_layers),
                  "layers_pattern": layout.layers_pattern}
        return LoraConfig(task_type=ctx.peft_task_type, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                          lora_dropout=cfg.lora_dropout, target_modules=targets or None,
                          modules_to_save=head_module_names(layout) or None, **kw)

    def prepare(self, model, ctx):
        try:
            return super().prepare(model, ctx)
        except ValueError as e:  # PEFT: target modules not found
            raise UserError(f"--lora-targets: {str(e).splitlines()[0]}") from e
