"""The keyphrase family's options (inspec, kdd, www, keyphrase)."""

from ...config import declare, opt


@declare("keyphrase", "task family", reads=("family:keyphrase",))
class KeyphraseOptions:
    doc_stride: int = opt(128, "keyphrase: tokens shared by consecutive sliding windows of a long document (their "
                               "words' predictions are averaged); must be < --max-seq-length minus special tokens",
                          min=0)
