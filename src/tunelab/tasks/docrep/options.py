"""The docrep family's options (bbc-docrep, docrep)."""

from ...config import declare, opt

DOCREP_BASELINES = ("tfidf", "doc2vec", "encoder-trunc-128", "encoder-trunc-512", "encoder-chunks")


@declare("docrep", "task family", reads=("family:docrep",))
class DocrepOptions:
    docrep_objective: str = opt("declutr", "docrep: positives = two different chunks of one document (declutr) or one "
                                           "chunk seen twice with dropout (simcse); negatives = the batch's other "
                                           "documents", choices=("declutr", "simcse"))
    docrep_temperature: float = opt(0.05, "docrep: InfoNCE temperature on cosine similarities", above=0)
    docrep_chunk_length: int = opt(128, "docrep: tokens per chunk, special tokens included (capped at the model's "
                                        "input length): the training views and the document vectors (mean over all "
                                        "chunks)",
                                   min=8)
    docrep_pooling: str = opt("mean", "docrep: chunk vector = mean of its token states (mean) or its first token's "
                                      "(cls); a document vector is always the mean of its chunk vectors",
                              choices=("mean", "cls"))
    docrep_baseline: str = opt(None, "docrep: train nothing, evaluate this representation on the same split with the "
                                     "same classifier: " + " | ".join(DOCREP_BASELINES) + " (with --method full)",
                               choices=(None,) + DOCREP_BASELINES)
    docrep_split_seed: int = opt(0, "docrep: seed of the stratified train/test document split (and of "
                                    "--docrep-max-docs)", min=0)
    docrep_test_fraction: float = opt(0.2, "docrep: share of documents in the test split", above=0, below=1)
    docrep_max_docs: int = opt(None, "docrep: a stratified seeded subset of the corpus, taken before the split (bounds "
                                     "training and the evaluation's embedding on CPU)", min=4)
    # label_column: a common option (config.py), read through DocrepTask.shared_options
