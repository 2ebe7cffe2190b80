"""Shared PEFT plumbing: head modules kept trainable and saved, PEFT's own parameter count."""

from peft import get_peft_model

from .base import Method


def head_module_names(layout) -> list:
    """PEFT ``modules_to_save`` entries for our head (classifier + pooler)."""
    return [h.split(".")[-1] for h in layout.head_paths]


class PeftMethod(Method):
    uses_peft = True

    def build_config(self, ctx):
        raise NotImplementedError

    def prepare(self, model, ctx):
        config = self.build_config(ctx)
        self.peft_config = config
        return get_peft_model(model, config)

    def save(self, model, out_dir):
        model.save_pretrained(out_dir, safe_serialization=True)
        return ["adapter_model.safetensors", "adapter_config.json"]

    def describe(self):
        d = self.peft_config.to_dict()
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in d.items()
                if k in self.describe_keys}

    describe_keys: tuple = ()
