"""LoRA via PEFT. ``--lora-targets`` defaults to PEFT's per-architecture mapping (query/value for
BERT/RoBERTa, query_proj/value_proj for DeBERTa-v2, q_proj/v_proj for Llama/OPT, c_attn for GPT-2).
With ``--layers`` only those layers get adapters (PEFT ``layers_to_transform``; on a model with
several layer stacks, e.g. Whisper's encoder and decoder, a ``target_modules`` regex over the
chosen layers of each stack)."""

from peft import LoraConfig

from ..config import declare, methods_with, opt
from ..errors import UserError
from . import METHODS
from .layers import parse_layers
from .peft_common import EXTRA_TARGETS, PeftMethod, head_module_names

LORA_FAMILY = methods_with("lora_family")  # LoRA and its variants (DoRA: methods/dora.py)


@declare("lora", reads=("alf", LORA_FAMILY))  # ALF reads the LoRA options with --adapter lora
class LoraOptions:
    lora_r: int = opt(8, "LoRA rank", min=1)
    lora_alpha: float = opt(16, "LoRA alpha", above=0)
    lora_dropout: float = opt(0.1, "LoRA dropout", min=0, below=1)
    lora_targets: str = opt(None, "comma-separated module names (default: PEFT's mapping for the architecture)")


@declare("lora", reads=(LORA_FAMILY,))  # not ALF's
class LoraVariantOptions:
    lora_init: str = opt("default", "LoRA initialisation (PEFT init_lora_weights): default (A Kaiming-uniform, B zero), "
                                    "gaussian, pissa (principal singular vectors), olora (QR)",
                         choices=("default", "gaussian", "pissa", "olora"))
    use_rslora: bool = opt(False, "rank-stabilised LoRA: scale by alpha/sqrt(r) instead of alpha/r")


LORA_INIT = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}  # -> init_lora_weights


def default_targets(model_type) -> list:
    """PEFT's per-architecture LoRA targets (what ``target_modules=None`` would pick), else ours."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAPPING

    if model_type in MAPPING:
        return list(MAPPING[model_type])
    if model_type in EXTRA_TARGETS:
        return list(EXTRA_TARGETS[model_type])
    raise UserError(f"--lora-targets: no default targets for model type {model_type!r}; name them")


def stack_targets_regex(layout, layers: list, targets: list) -> str:
    """A PEFT ``target_modules`` regex matching ``targets`` only inside the chosen global layers."""
    import re

    alts = []
    for s in layout.stacks:
        local = [i - s.offset for i in layers if s.offset <= i < s.offset + s.num_layers]
        if local:
            alts.append(re.escape(s.path) + r"\.(?:" + "|".join(map(str, local)) + r")")
    names = "|".join(re.escape(t) for t in targets)
    return r"(?:.*\.)?(?:" + "|".join(alts) + r")\..*(?:" + names + r")$"


@METHODS.register("lora")
class LoRA(PeftMethod):
    """LoRA (PEFT): low-rank adapters on the attention projections; the head trains too."""

    name = "lora"
    trains = "adapters"
    lora_family = True  # reads the LoRA options
    use_dora = False
    # minilm, SST-2 2k examples, 1 epoch, r 8 on query,value, pooler trained: 1e-3 -> 0.745, 2e-3 -> 0.765
    default_lr = 2e-3
    describe_keys = ("r", "lora_alpha", "lora_dropout", "layers_to_transform", "init_lora_weights", "use_rslora",
                     "use_dora")

    def build_config(self, ctx):
        cfg, layout = ctx.cfg, ctx.layout
        targets = cfg.lora_targets
        if isinstance(targets, str):
            targets = [t for t in targets.split(",") if t]
        if not targets and ctx.model_type in EXTRA_TARGETS:
            targets = list(EXTRA_TARGETS[ctx.model_type])
        kw = {}
        if cfg.layers:
            chosen = parse_layers(cfg.layers, layout)
            if len(layout.stacks) == 1:
                kw = {"layers_to_transform": chosen, "layers_pattern": layout.layers_pattern}
            else:  # PEFT's layers_to_transform cannot tell two stacks apart: a regex over full names
                targets = stack_targets_regex(layout, chosen, targets or default_targets(ctx.model_type))
        return LoraConfig(task_type=ctx.peft_task_type, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                          lora_dropout=cfg.lora_dropout, target_modules=targets or None,
                          modules_to_save=head_module_names(layout) or None,
                          init_lora_weights=LORA_INIT[cfg.lora_init], use_rslora=bool(cfg.use_rslora),
                          use_dora=self.use_dora, **kw)

    def prepare(self, model, ctx):
        model = super().prepare(model, ctx)
        self.initial_dir = None
        if ctx.cfg.lora_init in ("pissa", "olora"):
            # PiSSA / OLoRA move the principal part out of the base weights: keep the initial adapter, so
            # that save() writes a plain LoRA (rank 2r) that loads onto the unchanged base model (PEFT's
            # path_initial_model_for_weight_conversion)
            import tempfile

            self.initial_dir = tempfile.mkdtemp(prefix="tunelab-lora-init-")
            init = self.peft_config.init_lora_weights
            self.peft_config.init_lora_weights = True  # PEFT's recipe: the saved initial adapter is plain LoRA
            model.save_pretrained(self.initial_dir, safe_serialization=True)
            self.peft_config.init_lora_weights = init
        return model

    def save(self, model, out_dir):
        if not getattr(self, "initial_dir", None):
            return super().save(model, out_dir)
        import shutil

        import os

        from peft import get_peft_model_state_dict
        from safetensors.torch import load_file, save_file

        try:
            model.save_pretrained(out_dir, safe_serialization=True,
                                  path_initial_model_for_weight_conversion=self.initial_dir)
        finally:
            shutil.rmtree(self.initial_dir, ignore_errors=True)
        # PEFT 0.21's conversion keeps the LoRA tensors only: put the head (modules_to_save) back
        path = os.path.join(out_dir, "adapter_model.safetensors")
        converted = load_file(path)
        head = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()
                if "lora_" not in k and k not in converted}
        save_file({**converted, **head}, path, metadata={"format": "pt"})
        return ["adapter_model.safetensors", "adapter_config.json"]

    def prepare_error(self, e, ctx):
        if ctx.cfg.lora_targets:  # PEFT: the named target modules not found
            return f"--lora-targets: {str(e).splitlines()[0]}"
        return super().prepare_error(e, ctx)
