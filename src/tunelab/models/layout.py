"""Where the transformer layers, embeddings and task head live in any HF model.

Layer discovery is structural, not by attribute name: a *layer stack* is an ``nn.ModuleList`` whose
members all have the same class and contain sub-modules with parameters (``bert.encoder.layer``,
``model.layers``, ``vit.encoder.layer``; an encoder-decoder such as Whisper or T5 has two:
``model.encoder.layers`` and ``model.decoder.layers``). Lists nested inside a stack's blocks are
part of that stack. Every stack with at least half as many layers as the longest one counts (short
lists of identical blocks elsewhere, e.g. a 2-layer adapter list, do not).

Layers are numbered globally in module order: with an encoder of 4 and a decoder of 4 layers,
0-3 are the encoder's and 4-7 the decoder's. ``--layers`` can address one stack by its name
(``encoder:top:2,decoder:0-1``; see ``methods/layers.py``); budgets and shares count all stacks.

The head is every parameter outside the backbone (``base_model_prefix``) plus any pooler module
inside it: BERT's pooler feeds the classifier and is randomly useful only when trained (see README,
"what counts as the head").
"""

import re
from dataclasses import dataclass, field

from torch import nn

_PEFT_NOISE = re.compile(r"(modules_to_save\.default\.|original_module\.|base_layer\.)")


@dataclass
class Stack:
    name: str  # e.g. "encoder", "decoder"
    path: str  # e.g. "model.encoder.layers"
    num_layers: int
    offset: int  # global index of its layer 0


@dataclass
class Layout:
    stacks: list  # [Stack], in module order
    embeddings_path: str | None  # e.g. "bert.embeddings"
    head_paths: list = field(default_factory=list)  # e.g. ["classifier", "bert.pooler"]

    @property
    def num_layers(self) -> int:
        return sum(s.num_layers for s in self.stacks)

    @property
    def layers_path(self) -> str:
        """The first stack's path (the only one in encoder-only and decoder-only models)."""
        return self.stacks[0].path

    @property
    def layers_pattern(self) -> str:
        """Last component of the layer list path (what PEFT calls ``layers_pattern``)."""
        return self.layers_path.split(".")[-1]

    def stack_of(self, layer: int) -> Stack:
        for s in self.stacks:
            if s.offset <= layer < s.offset + s.num_layers:
                return s
        raise IndexError(layer)

    def classify(self, param_name: str):
        """Map a parameter name (plain or PEFT-wrapped) to 'head', ('layer', i) with i the global
        layer index, 'embeddings', 'prompt' (PEFT virtual tokens) or 'other' (e.g. a final norm)."""
        name = _PEFT_NOISE.sub("", param_name)
        if name.startswith("prompt_encoder."):
            return "prompt"
        for s in self.stacks:
            m = re.search(r"(?:^|\.)" + re.escape(s.path) + r"\.(\d+)\.", name)
            if m:
                return ("layer", s.offset + int(m.group(1)))
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
            "stacks": [{"name": s.name, "path": s.path, "num_layers": s.num_layers, "first_layer": s.offset}
                       for s in self.stacks],
            "embeddings_path": self.embeddings_path,
            "head_modules": list(self.head_paths),
        }


def _is_stack(mod: nn.Module) -> bool:
    if not isinstance(mod, nn.ModuleList) or len(mod) == 0 or len({type(m) for m in mod}) != 1:
        return False
    first = mod[0]
    return any(True for _ in first.children()) and any(True for _ in first.parameters())


def find_stacks(model: nn.Module) -> list:
    """[(path, ModuleList)] of the outermost layer stacks, in module order."""
    found = []
    for name, mod in model.named_modules():
        if any(name.startswith(p + ".") for p, _ in found):
            continue  # inside a stack already found
        if _is_stack(mod):
            found.append((name, mod))
    if not found:
        raise ValueError(f"no transformer layer list found in {type(model).__name__}")
    longest = max(len(m) for _, m in found)
    return [(p, m) for p, m in found if 2 * len(m) >= longest]


def _stack_names(paths: list) -> list:
    """A short name per stack: the path component before the list's own name (``encoder``,
    ``decoder``, ``model``), made unique with the full path when two would collide."""
    names = []
    for p in paths:
        parts = p.split(".")
        names.append(parts[-2] if len(parts) > 1 else parts[-1])
    if len(set(names)) < len(names):
        names = [p.replace(".", "_") for p in paths]
    return names


def find_layout(model: nn.Module) -> Layout:
    found = find_stacks(model)
    paths = [p for p, _ in found]
    stacks, offset = [], 0
    for name, (path, mod) in zip(_stack_names(paths), found):
        stacks.append(Stack(name=name, path=path, num_layers=len(mod), offset=offset))
        offset += len(mod)
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
    return Layout(stacks=stacks, embeddings_path=emb_path, head_paths=heads)
