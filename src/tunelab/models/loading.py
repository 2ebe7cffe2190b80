"""Load a backbone with the head a task asks for."""

import os

from ..errors import UserError
from .aliases import resolve_model
from .layout import find_layout


def _quiet_transformers():
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_backbone(name: str, head: str, num_labels: int = 2):
    """Return (model, tokenizer, layout, source). ``head`` is 'classification', 'regression', 'reward' or 'causal-lm'."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    source = resolve_model(name)
    if not os.path.isdir(source) and (source.startswith(("/", ".", "~")) or source.count("/") > 1):
        raise UserError(f"--model {name}: no such model folder (nor an alias or a hub id of the form owner/name)")
    try:
        tok = AutoTokenizer.from_pretrained(source)
        if head in ("classification", "regression"):
            kw = {"num_labels": 1, "problem_type": "regression"} if head == "regression" else {"num_labels": num_labels}
            model = AutoModelForSequenceClassification.from_pretrained(source, **kw)
        elif head == "reward":  # Bradley-Terry reward model: one score per sequence
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
        elif head == "causal-lm":
            model = AutoModelForCausalLM.from_pretrained(source)
        else:
            raise ValueError(f"unknown head {head!r}")
    except OSError as e:
        where = "folder" if os.path.isdir(source) else "hub id (no internet?)"
        raise UserError(f"--model {name}: cannot load {where} {source}: {str(e).splitlines()[0]}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    layout = find_layout(model)
    if head == "causal-lm":
        layout.head_paths = []  # the LM head is pretrained (often tied to the embeddings): not a head that always trains
    return model, tok, layout, source
