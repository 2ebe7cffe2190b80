"""Where the transformer layers, embeddings and task head live in any HF model.

Layer discovery is structural, not by attribute name: the transformer blocks are the longest
``nn.ModuleList`` whose members all have the same class (``bert.encoder.layer``,
``roberta.encoder.layer``, ``deberta.encoder.layer``, ``model.layers`` ...). The head is every
parameter outside the backbone (``base_model_prefix``) plus any pooler module inside it: BERT's
pooler feeds the classifier and is randomly useful only when trained (see README, "what counts as
the head").
"""

import re
from dataclasses import dataclass, field

from torch import nn

_PEFT_NOISE = re.compile(r"(modules_to_save\.default\.|original_module\.|base_layer\.)")


@dataclass
class Layout:
    layers_path: str  # e.g. "bert.encoder.layer"
    num_layers: int
    embeddings_path: str | None  # e.g. "bert.embeddings"
    head_paths: list = field(default_factory=list)  # e.g. ["classifier", "bert.pooler"]

    @property
    def layers_pattern(self) -> str:
        """Last component of the layer list path (what PEFT calls ``layers_pattern``)."""
        return self.layers_path.split(".")[-1]

    def classify(self, param_name: str):
        """Map a parameter name (plain or PEFT-wrapped) to 'head', ('layer', i), 'embeddings',
        'prompt' (PEFT virtual tokens) or 'other' (e.g. a final norm)."""
        name = _PEFT_NOISE.sub("", param_name)
        if name.startswith("prompt_encoder."):
            return "prompt"
        m = re.search(r"(?:^|\.)" + re.escape(self.layers_path) + r"\.(\d+)\.", name)
        if m:
            return ("layer", int(m.group(1)))
        for h in self.head_paths:
            if re.search(r"(?:^|\.)" + re.escape(h) + r"\.", name):
                return "head"
        if self.embeddings_path and re.search(r"(?:^|\.)" + re.escape(self.embeddings_path) + r"\.", name):
            return "embeddings"
        return "other"

    def as_dict(self) -> dict:
        return {
            "layers_path": self.layers_path,
            "num_layers": self.num_layers,
            "embeddings_path": self.embeddings_path,
            "head_modules": list(self.head_paths),
        }


def _layer_list(model: nn.Module):
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            kinds = {type(m) for m in mod}
            if len(kinds) == 1 and sum(p.numel() for p in mod.parameters()) > 0:
                if best is None or len(mod) > len(best[1]):
                    best = (name, mod)
    if best is None:
        raise ValueError(f"no transformer layer list found in {type(model).__name__}")
    return best


def find_layout(model: nn.Module) -> Layout:
    layers_path, layers = _layer_list(model)
    names = dict(model.named_modules())
    inv = {id(m): n for n, m in names.items()}
    emb_path = None
    try:
        emb = model.get_input_embeddings()
        emb_name = inv.get(id(emb), "")
        parent = emb_name.rsplit(".", 1)[0] if "." in emb_name else emb_name
        # BERT-style: word embeddings live inside an "embeddings" module holding positions + norm
        emb_path = parent if parent.split(".")[-1] in ("embeddings", "embed") else emb_name
    except (AttributeError, NotImplementedError):
        pass
    prefix = getattr(model, "base_model_prefix", "") or ""
    heads = []
    if prefix and prefix in names and names[prefix] is not model:
        for child, mod in model.named_children():
            if child != prefix and any(True for _ in mod.parameters()):
                heads.append(child)
        for n, _ in names[prefix].named_children():
            if "pooler" in n:
                heads.append(f"{prefix}.{n}")
    return Layout(layers_path=layers_path, num_layers=len(layers), embeddings_path=emb_path, head_paths=heads)
