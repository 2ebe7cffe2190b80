"""``tunelab pretrain KIND ...``: one subcommand per pretraining kind.

A kind is any module ``tunelab.pretrain.<name>`` that defines ``KIND``, ``HELP``,
``add_arguments(parser)`` and ``main(namespace)``; this dispatcher finds them, so adding a kind
(``mlm``, ``dino``...) is adding a module, with no list to edit here.
"""

import importlib
import pkgutil


def kinds() -> dict:
    """KIND -> module, for every module of this package that defines a pretraining kind."""
    from .. import pretrain

    found = {}
    for info in pkgutil.iter_modules(pretrain.__path__):
        if info.name in ("cli",) or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{pretrain.__name__}.{info.name}")
        if all(hasattr(mod, a) for a in ("KIND", "HELP", "add_arguments", "main")):
            found[mod.KIND] = mod
    return dict(sorted(found.items()))


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="self-supervised pretraining -> a model folder for --model")
    sub = p.add_subparsers(dest="pretrain_kind")
    for kind, mod in kinds().items():
        k = sub.add_parser(kind, help=mod.HELP, description=(mod.__doc__ or "").split("\n\n")[0])
        mod.add_arguments(k)
        k.set_defaults(func=mod.main)
    p.set_defaults(func=lambda ns: (p.print_help(), 2)[1])
