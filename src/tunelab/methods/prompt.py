"""Soft prompt tuning via PEFT (Lester et al. 2021): ``--num-virtual-tokens`` trainable input
embeddings prepended to every input; the head (classifier + pooler) trains alongside.

``--prompt-init`` chooses PEFT's initialisation: ``random`` vectors, the embeddings of sampled
vocabulary tokens (``vocab``, PEFT's SAMPLE_VOCAB; the default) or the embeddings of ``--prompt-init-text``'s
tokens (``text``: the tokenizer's ids including [CLS]/[SEP], repeated or cut to the number of
virtual tokens; PEFT's TEXT). On a BERT-style classifier the pooler reads position 0, which is
the first virtual token, so the initialisation decides what the head sees at the start. PEFT's
random rows are N(0, 1), ~18x the norm of a real token embedding of all-MiniLM-L6-v2: from there
prompt tuning stayed at the majority class on SST-2 at the quick budget; from sampled vocabulary
rows it beats a head-only control (BENCHMARKS.md, "Prompt tuning").
"""

from peft import PromptTuningConfig

from ..config import declare, methods_with, opt
from ..errors import UserError
from . import METHODS
from .peft_common import PeftMethod, head_module_names


@declare("prompt", reads=("prompt",))
class PromptOptions:
    num_virtual_tokens: int = opt(20, "virtual tokens for prompt / prefix tuning", min=1, reads=methods_with("trains", "virtual_tokens"))
    prompt_init: str = opt("random", "prompt: initialise the virtual tokens with the embeddings of sampled vocabulary "
                                     "tokens (vocab, the method's default), of --prompt-init-text's tokens (text) or "
                                     "with PEFT's N(0, 1) vectors (random: stays at the majority class on minilm)",
                           choices=("random", "vocab", "text"))
    prompt_init_text: str = opt(None, "prompt: the text whose token embeddings (with [CLS]/[SEP], repeated or cut to "
                                      "--num-virtual-tokens) initialise the virtual tokens with --prompt-init text")


PEFT_INIT = {"random": "RANDOM", "vocab": "SAMPLE_VOCAB", "text": "TEXT"}


@METHODS.register("prompt")
class PromptTuning(PeftMethod):
    """Soft prompt tuning (PEFT): trainable input embeddings prepended to every input; the head trains too."""

    name = "prompt"
    trains = "virtual_tokens"
    default_lr = 3e-2
    describe_keys = ("num_virtual_tokens", "prompt_tuning_init", "prompt_tuning_init_text", "modules_to_save")

    @classmethod
    def option_defaults(cls, given=None) -> dict:
        # vocab, not the field's (PEFT's) random: see the module docstring
        return {**super().option_defaults(given), "prompt_init": "vocab"}

    def validate(self, cfg):
        if cfg.prompt_init == "text" and not (cfg.prompt_init_text or "").strip():
            raise UserError("--prompt-init text needs --prompt-init-text (e.g. \"Is this review positive or negative?\")")
        if cfg.prompt_init != "text" and cfg.prompt_init_text is not None:
            raise UserError(f"--prompt-init-text is only used with --prompt-init text (got --prompt-init {cfg.prompt_init})")

    def build_config(self, ctx, model=None):
        cfg = ctx.cfg
        text = {}
        if cfg.prompt_init == "text":
            # PEFT tokenizes the text with the model's own tokenizer (the folder the model came from)
            text = {"prompt_tuning_init_text": cfg.prompt_init_text, "tokenizer_name_or_path": model.name_or_path}
        return PromptTuningConfig(task_type=ctx.peft_task_type, num_virtual_tokens=cfg.num_virtual_tokens,
                                  prompt_tuning_init=PEFT_INIT[cfg.prompt_init], **text,
                                  modules_to_save=head_module_names(ctx.layout) or None)

    def prepare(self, model, ctx):
        from peft import get_peft_model

        self.peft_config = self.build_config(ctx, model)
        return get_peft_model(model, self.peft_config)
