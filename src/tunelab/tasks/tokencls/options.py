"""The token-classification family's options (``--doc-stride`` is shared with keyphrase: tasks/tagging.py)."""

from ...config import declare, opt
from .. import tagging  # noqa: F401  (declares --doc-stride)


@declare("token-classification", "task family", reads=("family:token-classification",))
class TokenClassificationOptions:
    label_list: str = opt(None, "token-classification: the names of integer tags (ids 0, 1, ...), comma-separated or "
                                "a JSON file with the list (labels.json); default: the dataset's ClassLabel names, "
                                "else a labels.json beside the data file")


@declare("token-classification-data", "task family", reads=("family:token-classification",),
         title="task family token-classification (data files)")
class DataFileOptions:  # until the shared data options (--train-file ...) are common ones
    train_file: str = opt(None, "token-classification: train data, a CoNLL file or JSON lines with tokens + ner_tags")
    validation_file: str = opt(None, "token-classification: validation data (decides the best epoch); default: a seeded "
                                     "--eval-fraction of the train file")
    test_file: str = opt(None, "token-classification: test data, evaluated alongside as test_* (never decides)")
