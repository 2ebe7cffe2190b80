"""Self-supervised (continued) pretraining that makes new base models for ``tunelab run --model DIR``
(``tunelab pretrain KIND``): each kind is a module here defining ``KIND``, ``HELP``,
``add_arguments(parser)`` and ``main(namespace) -> exit code`` (pretrain/cli.py finds them).
``mlm``: domain-adaptive masked-LM pretraining of an encoder; ``dino``: DINO for vision transformers."""
