"""The method protocol and exact parameter accounting.

A method decides which parameters train. ``prepare(model, ctx)`` returns the model to train (maybe a
PEFT wrapper) with ``requires_grad`` set; dynamic methods also implement ``on_step(state)``.
The head (classifier + pooler, see ``Layout.head_paths``) always trains.
"""

from dataclasses import dataclass, field

from torch import nn

from ..models.params import count_params  # noqa: F401  (methods count what they made trainable)


@dataclass
class PrepareContext:
    """What a method may know about the run: the options, the model layout and the head type."""

    cfg: object  # RunConfig
    layout: object  # models.Layout
    peft_task_type: str  # the head's PEFT task type: "SEQ_CLS", "CAUSAL_LM", ...
    model_type: str | None = None  # config.model_type (PEFT's default LoRA targets depend on it)


class Method:
    """A method's traits say what it is; task families (learning rates, capability checks) and option
    readers (``config.methods_with``) ask them, never its name, so a new method is its own module."""

    name = ""
    default_lr = 1e-4  # the method's default learning rate (level 2 of config.py's merge order)
    # --- traits ---
    trains = "weights"  # what it updates: "weights" (the model's own), "adapters" (new matrices beside
    #                     them, e.g. LoRA) or "virtual_tokens" (prompt / prefix vectors fed with the input)
    selects_layers = False  # trains a subset of the layers and reads --layer-budget (methods/budget.py)
    changes_trainable_set = False  # the trainable set changes during training (methods/dynamic.py)
    uses_peft = False  # wraps the model with PEFT (saves an adapter)
    # raise when results change at unchanged options (compare re-runs its cached cells, compare/grid.py)
    revision = 1

    @classmethod
    def option_defaults(cls, given: dict | None = None) -> dict:
        """This method's option defaults (merged over the field defaults, under the task's); ``given``:
        the options the user gave, for defaults that depend on them (ALF with --adapter lora)."""
        return {"lr": cls.default_lr}

    @classmethod
    def options(cls) -> tuple:
        """The RunConfig options whose readers name this method or one of its traits."""
        from ..config import FIELDS, Trait

        return tuple(k for k, f in FIELDS.items()
                     if any(r == cls.name or (isinstance(r, Trait) and r.kind == "method" and r.matches(cls))
                            for r in f.metadata["reads"]))

    @classmethod
    def apply_layer_budget(cls, cfg) -> None:
        """``--layer-budget`` given (resolve.build_config, methods/budget.py): map it onto this method's
        own options in ``cfg`` (recording ``cfg.sources``) and refuse contradicting ones with a
        UserError. Only the layer-selecting methods (trait ``selects_layers``) are given the option."""

    def frozen_for_good(self) -> int | None:
        """k when the embeddings and layers 0..k-1 are frozen now and will not train again in this run
        (the activation cache then computes them once); None when no such promise holds now. Only
        methods that override it are asked (``promises_frozen_prefix``)."""
        return None

    @property
    def promises_frozen_prefix(self) -> bool:
        """Does this method override ``frozen_for_good`` (train/activation_cache.py then follows it)?"""
        return type(self).frozen_for_good is not Method.frozen_for_good

    def validate(self, cfg) -> None:
        """Cross-option checks (ranges and choices are declared on the options); called before any
        model is loaded. Raise UserError."""

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

    def on_optimizer_step(self, state) -> None:
        """Called right after each optimizer step, before the gradients are zeroed (they are the global
        batch's in data-parallel runs); ``state.step`` counts the steps before this one. For tuners that
        read the step's gradients (AdaLoRA's ``update_and_allocate``)."""

    def on_train_end(self, state) -> None:
        """Called once after the last step."""

    def state_dict(self) -> dict:
        """What the method must keep across a checkpoint (``--save-every``) to resume exactly: tensors,
        numbers, strings, lists and dicts of them. Static methods keep nothing."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s output on a resumed run (called after ``on_train_start``, before
        the optimizer state is loaded)."""

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
