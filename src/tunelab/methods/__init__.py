"""Adaptation methods (how parameters adapt), registered by name. One module per method."""

from ..registry import Registry

METHODS = Registry("method")


def get_method(name: str):
    _load_all()
    return METHODS.get(name)


def method_names() -> list:
    _load_all()
    return METHODS.names()


def _load_all():
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in ("base", "layers"):
            importlib.import_module(f"{__name__}.{mod.name}")
