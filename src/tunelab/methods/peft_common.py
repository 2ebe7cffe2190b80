"""Shared PEFT plumbing: head modules kept trainable and saved, default targets where PEFT's mapping
lacks the architecture, a clear error where a tuner cannot apply to a model, PEFT's own parameter
count. ``TunerMethod``: a PEFT tuner given by its config class and the options it reads (the
``methods/<tuner>.py`` modules: ia3, loha, lokr, vera, oft, boft, fourierft, hra, ln-tuning, adalora)."""

from peft import get_peft_model

from ..errors import UserError
from .base import Method

# Architectures PEFT's mappings lack: the usual recipe's targets (HF "fine-tune Whisper" + PEFT: q/v)
EXTRA_TARGETS = {"whisper": ["q_proj", "v_proj"]}


def head_module_names(layout) -> list:
    """PEFT ``modules_to_save`` entries for our head (classifier + pooler)."""
    return [h.split(".")[-1] for h in layout.head_paths]


def mapped_targets(mapping: str | None, model_type) -> list | None:
    """``target_modules`` for a tuner whose PEFT default mapping is ``mapping`` (a name in
    ``peft.utils.constants``): None (PEFT's own choice) where the mapping has the model type, else
    ``EXTRA_TARGETS``' (Whisper: q/v), else None (PEFT then refuses the model: ``PeftMethod.prepare``)."""
    from peft.utils import constants

    table = getattr(constants, mapping, {}) if mapping else {}
    if model_type in table:
        return None
    return list(EXTRA_TARGETS[model_type]) if model_type in EXTRA_TARGETS else None


def plain(v):
    """A config value as JSON has it (sets sorted, enums by value)."""
    if isinstance(v, set):
        return sorted(v)
    return getattr(v, "value", v)


class PeftMethod(Method):
    uses_peft = True
    trains = "adapters"
    describe_keys: tuple = ()  # the config's fields run.json method_details shows (besides type, targets, head)

    def build_config(self, ctx):
        raise NotImplementedError

    def prepare(self, model, ctx):
        self.head_paths = list(ctx.layout.head_paths)
        config = self.build_config(ctx)
        self.peft_config = config
        try:
            self.peft_model = get_peft_model(model, config)
            return self.peft_model
        except (ValueError, TypeError, KeyError, NotImplementedError) as e:  # targets absent, layer type unsupported
            raise UserError(self.prepare_error(e, ctx)) from e

    def prepare_error(self, e, ctx) -> str:
        """The one line a user sees when PEFT refuses to apply this method to the model."""
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return (f"--method {self.name}: PEFT cannot apply {self.peft_config.peft_type.value} to model "
                f"{ctx.cfg.model} (model type {ctx.model_type}): {first}")

    def save(self, model, out_dir):
        model.save_pretrained(out_dir, safe_serialization=True)
        return ["adapter_model.safetensors", "adapter_config.json"]

    def describe(self):
        d = self.peft_config.to_dict()
        keys = ("peft_type", "target_modules", *getattr(self, "fields", ()), *self.describe_keys, "modules_to_save")
        out = {k: plain(v) for k, v in d.items() if k in keys}
        if out.get("modules_to_save"):
            out["modules_to_save"] = list(dict.fromkeys(out["modules_to_save"]))
        # the head (classifier + pooler) trains whole and is saved whole (PEFT modules_to_save)
        out["head_modules"] = list(getattr(self, "head_paths", []))
        return out


class TunerMethod(PeftMethod):
    """A PEFT tuner from its config class: ``config_kwargs(cfg)`` maps the method's options onto the
    config's fields; targets default to PEFT's mapping ``mapping`` (else ``EXTRA_TARGETS``)."""

    config_cls = None
    mapping: str | None = None
    fields: dict = {}  # config field -> the option giving it (loha: {"r": "loha_r", "alpha": "loha_alpha"})

    def config_kwargs(self, cfg) -> dict:
        return {k: getattr(cfg, opt) for k, opt in self.fields.items()}

    def build_config(self, ctx):
        kw = self.config_kwargs(ctx.cfg)
        kw.setdefault("target_modules", mapped_targets(self.mapping, ctx.model_type))
        return self.config_cls(task_type=ctx.peft_task_type, modules_to_save=head_module_names(ctx.layout) or None,
                               **kw)
