"""Load a backbone with the head a task asks for (``models/heads.py``)."""

import os

from ..errors import UserError
from .aliases import resolve_model
from .heads import HEADS
from .layout import find_layout


def _quiet_transformers():
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_no_pickle(name: str, folder: str) -> None:
    """No code from data: a local model folder must hold safetensors weights; pickle files (which
    can run code when loaded) need ``--allow-pickle``."""
    files = os.listdir(folder)
    if any(f.endswith(".safetensors") for f in files):
        return
    pickles = sorted(f for f in files if f.endswith(PICKLE_WEIGHTS))
    if pickles:
        raise UserError(f"--model {name}: {folder} holds only pickle weights ({', '.join(pickles[:3])}), which can "
                        "run code when loaded; convert them to safetensors or pass --allow-pickle if you trust them")


def load_backbone(name: str, head: str, num_labels: int = 2, allow_pickle: bool = False):
    """Return (model, processor, layout, source). ``head`` names a registered ``Head``; the
    processor is what the head's ``load_processor`` gives (a tokenizer for text models). Weights
    load from safetensors only unless ``allow_pickle``; remote code is never trusted."""
    _quiet_transformers()
    spec = HEADS.get(head)
    source = resolve_model(name)
    if not os.path.isdir(source) and (source.startswith(("/", ".", "~")) or source.count("/") > 1):
        raise UserError(f"--model {name}: no such model folder (nor an alias or a hub id of the form owner/name)")
    if os.path.isdir(source) and not allow_pickle:
        check_no_pickle(name, source)
    try:
        processor = spec.load_processor(source)
        model = spec.model_class().from_pretrained(source, use_safetensors=None if allow_pickle else True,
                                                   trust_remote_code=False, **spec.kwargs(num_labels))
    except OSError as e:
        where = "folder" if os.path.isdir(source) else "hub id (no internet?)"
        raise UserError(f"--model {name}: cannot load {where} {source}: {str(e).splitlines()[0]}") from e
    tok = getattr(processor, "tokenizer", processor)
    if getattr(model.config, "pad_token_id", None) is None and getattr(tok, "pad_token_id", None) is not None:
        model.config.pad_token_id = tok.pad_token_id
    layout = find_layout(model)
    if not spec.trains:
        layout.head_paths = []
    return model, processor, layout, source


def load_plain(name: str, auto_class: str, allow_pickle: bool = False):
    """(model, tokenizer, source) for tools outside a run (baselines, pretraining) that need a bare
    auto class: the same alias resolution, safetensors-only rule and one-line errors as a run."""
    import transformers

    _quiet_transformers()
    source = resolve_model(name)
    if os.path.isdir(source) and not allow_pickle:
        check_no_pickle(name, source)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(source)
        model = getattr(transformers, auto_class).from_pretrained(
            source, use_safetensors=None if allow_pickle else True, trust_remote_code=False)
    except OSError as e:
        raise UserError(f"--model {name}: cannot load {source}: {str(e).splitlines()[0]}") from e
    return model, tok, source
