"""Adaptation methods (how parameters adapt), registered by name. One module per method: its class
(traits on ``base.Method``) and its options (``config.declare``)."""

from ..registry import Registry

METHODS = Registry("method")


def get_method(name: str):
    _load_all()
    return METHODS.get(name)


def method_names() -> list:
    _load_all()
    return METHODS.names()


def methods_training(*kinds) -> str:
    """"a, b or c": the registered methods whose ``trains`` trait is one of ``kinds`` (for messages)."""
    names = [n for n in method_names() if get_method(n).trains in kinds]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def _load_all():
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in ("base", "layers"):
            importlib.import_module(f"{__name__}.{mod.name}")
