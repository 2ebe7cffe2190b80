"""``--gradient-checkpointing``: keep fewer activations, recompute them in the backward pass.

Applied the way HF ``Trainer`` does it: ``model.gradient_checkpointing_enable`` with
``use_reentrant=False``, on the loaded backbone before the method adapts it. Non-reentrant
checkpointing needs no input that requires grad, so it works under PEFT wrappers (LoRA, prompt /
prefix tuning) without ``enable_input_require_grads`` and with tunelab's layer methods, whose
frozen bottom layers get no backward (their checkpointed forward then saves nothing to recompute).
torch's checkpoint restores the RNG state before recomputing (``preserve_rng_state``), so dropout
draws the same masks: a run with it trains the same as one without (tests/test_gradient_checkpointing.py).
HF models checkpoint only in train mode: evaluation is unchanged. In transformers 5 the layer's
``forward`` is checkpointed and module hooks stay outside it, so the activation cache's feed hook
(train/activation_cache.py) runs once per step, not again in the recomputation.
"""

from ..errors import UserError

HOW = "model.gradient_checkpointing_enable(use_reentrant=False), as HF Trainer"


def apply_gradient_checkpointing(model, cfg) -> dict:
    """Enable it on ``model`` when ``cfg.gradient_checkpointing``; return run.json's entry. A model
    that does not support it is a one-line ``UserError``."""
    if not cfg.gradient_checkpointing:
        return {"requested": False, "applied": False}
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise UserError(f"--gradient-checkpointing: model {cfg.model} ({type(model).__name__}) does not support "
                        "gradient checkpointing")
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5's name (the old one warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "config"):
        model.config.use_cache = False  # a KV cache is useless in training and HF warns about it under checkpointing
    return {"requested": True, "applied": True, "how": HOW}
