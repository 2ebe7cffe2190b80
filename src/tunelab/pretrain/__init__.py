"""Self-supervised pretraining (``tunelab pretrain KIND``): each kind is a module here defining
``KIND``, ``HELP``, ``add_arguments(parser)`` and ``main(namespace) -> exit code`` (pretrain/cli.py
finds them). ``dino``: DINO for vision transformers."""
