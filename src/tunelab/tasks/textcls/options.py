"""The text-classification family's options (the data options, --text-column and --label-column are
common: config.py)."""

from ...config import declare, opt


@declare("textcls", "task family", reads=("family:textcls",))
class TextClsOptions:
    text_pair_column: str = opt(None, "text-classification: the second text of a sentence pair (default: detected with "
                                      "the first: sentence1+sentence2, question1+question2, premise+hypothesis, "
                                      "question+sentence, text+text_pair; none: single sentences)")
