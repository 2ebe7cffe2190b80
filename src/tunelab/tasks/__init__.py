"""Tasks: data + objective + metrics, registered by name. One package per task family.

A family is a sub-package ``tasks/<family>/`` (found like methods: importing it registers its
tasks, metrics, heads, model aliases, options, pretraining kinds and report sections). Adding a
family is adding a package; nothing here names one. ``tunelab.tasks.extra_families`` (a list of
package names) lets a test or a plugin add a family that lives outside this package.
"""

import importlib
import pkgutil

from .. import config
from ..registry import Registry

TASKS = Registry("task")
# ``tunelab pretrain KIND``: KIND -> a module with ``HELP``, ``add_arguments(parser)``, ``main(ns)``
PRETRAINING = Registry("pretraining kind")
# the report asks every family for its extra blocks: name -> fn(done_rows) -> (heading, blocks)
REPORT_SECTIONS = Registry("report section")

SHARED = ("base", "supervised", "splits")  # the contract's modules, not families
extra_families: list = []  # package names of families outside tunelab.tasks (tests, plugins)


def get_task(name: str):
    load_families()
    return TASKS.get(name)


def task_names() -> list:
    load_families()
    return TASKS.names()


def family_packages() -> list:
    """Every family package's name, in a stable order (this package's, then the extra ones)."""
    found = [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if m.ispkg and m.name not in SHARED]
    return sorted(found) + list(extra_families)


def load_families() -> None:
    for name in family_packages():
        importlib.import_module(name)


_load_families = load_families  # the name older callers use


def load_all() -> None:
    """Import every method and task family: the modules that declare options (``config.FIELDS``)."""
    from .. import methods

    methods.method_names()
    load_families()


config.add_loader(load_all)
