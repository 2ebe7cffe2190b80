"""Keyphrase extraction as BIO token labelling (inspec, kdd, www, keyphrase): the tasks (``task``),
the docsutf8/ + keys/ reader and Porter-stem matching (``data``), ranking metrics (``metrics``),
YAKE / KeyBERT baselines (``baselines``), domain-adaptive MLM pretraining (``mlm``: ``tunelab
pretrain mlm``) and the report's marked examples (``report``)."""

from . import mlm, report, task  # noqa: F401  (registers the tasks, metrics, pretraining kind, report section)
