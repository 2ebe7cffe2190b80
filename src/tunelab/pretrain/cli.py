"""``tunelab pretrain KIND ...``: one subcommand per pretraining kind.

A kind is registered by its task family (``tasks.PRETRAINING``: a module defining ``HELP``,
``add_arguments(parser)`` and ``main(namespace)``; ``mlm`` in tasks/keyphrase/mlm.py, ``dino`` in
tasks/image/pretrain.py), so adding a kind is adding it to its family, with no list to edit here.
"""

from ..tasks import PRETRAINING, load_families


def kinds() -> dict:
    """KIND -> module, for every registered pretraining kind."""
    load_families()
    return {name: PRETRAINING.get(name) for name in PRETRAINING.names()}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="self-supervised pretraining -> a model folder for --model")
    sub = p.add_subparsers(dest="pretrain_kind")
    for kind, mod in kinds().items():
        k = sub.add_parser(kind, help=mod.HELP, description=(mod.__doc__ or "").split("\n\n")[0])
        mod.add_arguments(k)
        k.set_defaults(func=mod.main)
    p.set_defaults(func=lambda ns: (p.print_help(), 2)[1])
