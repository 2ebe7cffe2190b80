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


def load_backbone(name: str, head: str, num_labels: int = 2):
    """Return (model, processor, layout, source). ``head`` names a registered ``Head``; the
    processor is what the head's ``load_processor`` gives (a tokenizer for text models)."""
    _quiet_transformers()
    spec = HEADS.get(head)
    source = resolve_model(name)
    if not os.path.isdir(source) and (source.startswith(("/", ".", "~")) or source.count("/") > 1):
        raise UserError(f"--model {name}: no such model folder (nor an alias or a hub id of the form owner/name)")
    try:
        processor = spec.load_processor(source)
        model = spec.model_class().from_pretrained(source, **spec.kwargs(num_labels))
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
