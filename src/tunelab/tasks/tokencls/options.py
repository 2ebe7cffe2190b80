"""The token-classification family's options (``--doc-stride`` is shared with keyphrase: tasks/tagging.py)."""

from ...config import declare, opt
from .. import tagging  # noqa: F401  (declares --doc-stride)


@declare("token-classification", "task family", reads=("family:token-classification",))
class TokenClassificationOptions:
    label_list: str = opt(None, "token-classification: the names of integer tags (ids 0, 1, ...), comma-separated or "
                                "a JSON file with the list (labels.json); default: the dataset's ClassLabel names, "
                                "else a labels.json beside the data file")

