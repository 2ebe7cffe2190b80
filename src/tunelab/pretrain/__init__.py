"""``tunelab pretrain KIND``: self-supervised (continued) pretraining that makes new base models for
``tunelab run --model DIR``. The kinds live in their task families (``tasks.PRETRAINING``): ``mlm``
(domain-adaptive masked-LM pretraining of an encoder, tasks/keyphrase/mlm.py) and ``dino`` (DINO for
vision transformers, tasks/image/pretrain.py)."""
