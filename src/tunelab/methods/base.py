"""The method protocol and exact parameter accounting.

A method decides which parameters train. ``prepare(model, ctx)`` returns the model to train (maybe a
PEFT wrapper) with ``requires_grad`` set; dynamic methods also implement ``on_step(state)``.
The head (classifier + pooler, see ``Layout.head_paths``) always trains.
"""

from dataclasses import dataclass, field

from torch import nn


@dataclass
class PrepareContext:
    """What a method may know about the run: the options, the model layout and the head type."""

    cfg: object  # RunConfig
    layout: object  # models.Layout
    peft_task_type: str  # "SEQ_CLS" | "CAUSAL_LM"


class Method:
    name = ""
    default_lr = 1e-4
    default_head_lr = None  # None: the head trains at the method's lr
    dynamic = False  # True when on_step changes what trains
    uses_peft = False
    options: tuple = ()  # RunConfig fields this method reads (recorded in run.json)

    def validate(self, cfg) -> None:
        """Raise UserError for invalid options (called before any model is loaded)."""

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> nn.Module:
        raise NotImplementedError

    def optimizer_params(self, model: nn.Module) -> list:
        """(name, param) pairs the optimizer holds. Static methods: what requires grad now;
        dynamic methods return every parameter they may ever activate."""
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def on_train_start(self, state) -> None:
        """Called once before the first step."""

    def on_step(self, state) -> None:
        """Called after every optimizer step (dynamic methods only)."""

    def on_train_end(self, state) -> None:
        """Called once after the last step."""

    def describe(self) -> dict:
        return {}

    def record_extras(self) -> dict:
        """Extra top-level run.json entries (e.g. a dynamic method's layer timeline)."""
        return {}

    def params_extras(self) -> dict:
        """Extra entries merged into run.json ``params`` after training (e.g. trainable_fraction_mean)."""
        return {}

    def save(self, model: nn.Module, out_dir: str) -> list:
        """Write weights (HF format, safetensors). Returns the files written."""
        model.save_pretrained(out_dir, safe_serialization=True)
        return ["model.safetensors", "config.json"]


def set_head_trainable(model: nn.Module, layout) -> None:
    for n, p in model.named_parameters():
        if layout.classify(n) == "head":
            p.requires_grad_(True)


def count_params(model: nn.Module, layout) -> dict:
    """Exact counts over unique parameter tensors; trainable = requires_grad."""
    seen = set()
    total = trainable = head = 0
    layers = set()
    for n, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        k = p.numel()
        total += k
        if p.requires_grad:
            trainable += k
            kind = layout.classify(n)
            if kind == "head":
                head += k
            elif isinstance(kind, tuple):
                layers.add(kind[1])
    return {
        "trainable": trainable,
        "total": total,
        "trainable_pct": round(100.0 * trainable / total, 4) if total else 0.0,
        "trainable_without_head": trainable - head,
        "head": head,
        "trainable_layers": sorted(layers),
    }


@dataclass
class ParamGroups:
    """Parameters by where they live: embeddings, each layer, head, other."""

    layers: dict = field(default_factory=dict)  # i -> [(name, param)]
    embeddings: list = field(default_factory=list)
    head: list = field(default_factory=list)
    other: list = field(default_factory=list)


def group_params(model: nn.Module, layout) -> ParamGroups:
    g = ParamGroups()
    for n, p in model.named_parameters():
        kind = layout.classify(n)
        if isinstance(kind, tuple):
            g.layers.setdefault(kind[1], []).append((n, p))
        elif kind == "head":
            g.head.append((n, p))
        elif kind == "embeddings":
            g.embeddings.append((n, p))
        else:
            g.other.append((n, p))
    return g
