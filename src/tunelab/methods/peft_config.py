"""Any PEFT tuner from its config file: ``--method peft --peft-config FILE``, where FILE is an
``adapter_config.json`` as PEFT writes it or a YAML/JSON mapping of its fields (``peft_type`` required,
e.g. ``{"peft_type": "C3A", "block_size": 32}``). For the tuners without a method of their own.

tunelab sets what belongs to the run, not to the tuner: ``task_type`` (from the head),
``inference_mode`` (False) and ``modules_to_save`` (the file's entries plus the head's, which always
trains). Targets: the file's ``target_modules``, else PEFT's mapping for the architecture (Whisper: q/v).
run.json ``method_details.peft_type`` names the tuner."""

import os

from ..config import declare, opt
from ..errors import UserError
from . import METHODS
from .peft_common import PeftMethod, head_module_names, mapped_targets


@declare("peft", reads=("peft",))
class PeftConfigOptions:
    peft_config: str = opt(None, "--method peft: a PEFT config file (adapter_config.json or YAML of its fields)")


IGNORED = ("base_model_name_or_path", "revision", "auto_mapping", "peft_version", "task_type", "inference_mode")


def read_peft_config(path: str) -> dict:
    """The file's fields (JSON or YAML mapping); UserError naming the file when it is not one."""
    if not os.path.isfile(path):
        raise UserError(f"--peft-config {path}: no such file")
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)  # JSON is YAML
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise UserError(f"--peft-config {path}{where}: not JSON/YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(data, dict) or not data.get("peft_type"):
        raise UserError(f"--peft-config {path}: a mapping with a peft_type field (e.g. peft_type: C3A) expected")
    return data


@METHODS.register("peft")
class AnyPeft(PeftMethod):
    """Any PEFT tuner from --peft-config FILE (adapter_config.json or YAML); the head trains too."""

    name = "peft"
    default_lr = 2e-3  # LoRA's: the file's tuner is unknown until it is read; give --lr

    def validate(self, cfg):
        if not cfg.peft_config:
            raise UserError("--method peft needs --peft-config FILE (an adapter_config.json or YAML of its fields)")
        self.fields = read_peft_config(cfg.peft_config)

    def build_config(self, ctx):
        from peft import PEFT_TYPE_TO_CONFIG_MAPPING

        path, fields = ctx.cfg.peft_config, dict(self.fields)
        kind = str(fields.pop("peft_type")).upper()
        if kind not in PEFT_TYPE_TO_CONFIG_MAPPING:
            raise UserError(f"--peft-config {path}: peft_type {kind!r} unknown to PEFT; one of "
                            f"{', '.join(sorted(PEFT_TYPE_TO_CONFIG_MAPPING))}")
        cls = PEFT_TYPE_TO_CONFIG_MAPPING[kind]
        fields = {k: v for k, v in fields.items() if k not in IGNORED}
        head = head_module_names(ctx.layout)
        fields["modules_to_save"] = list(dict.fromkeys([*(fields.get("modules_to_save") or []), *head])) or None
        if fields.get("target_modules") is None and "target_modules" in cls.__dataclass_fields__:
            from peft.utils import constants

            mapping = f"TRANSFORMERS_MODELS_TO_{kind}_TARGET_MODULES_MAPPING"
            fields["target_modules"] = mapped_targets(mapping if hasattr(constants, mapping) else None,
                                                      ctx.model_type)
        try:
            return cls(task_type=ctx.peft_task_type, **fields)
        except (TypeError, ValueError) as e:
            raise UserError(f"--peft-config {path}: {kind}: {str(e).splitlines()[0]}") from e
