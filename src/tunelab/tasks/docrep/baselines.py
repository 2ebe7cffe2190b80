"""Baseline document vectors, for the same split and the same evaluation as the fine-tuned encoder.

Unsupervised representations are fitted on the train documents only (never on test text):

- ``tfidf``: scikit-learn ``TfidfVectorizer(sublinear_tf=True, min_df=2)`` (lower-cased word unigrams,
  vocabulary and idf from the train documents), sparse.
- ``doc2vec``: gensim PV-DBOW (``dm=0``), 100 dimensions, 20 epochs, min_count=2, window 5, seed, one
  worker thread (deterministic); gensim's ``simple_preprocess`` tokens. Train documents get their trained
  vectors, test documents ``infer_vector`` (20 epochs). gensim seeds each inferred vector with Python's
  salted ``hash``; we swap in a fixed hash (crc32) so the vectors are the same in every process.
- ``encoder-trunc-N``: the untouched encoder on the first N tokens (special tokens included).
- ``encoder-chunks``: the untouched encoder's mean over all chunks (window = the model's length,
  ``chunks.model_length``; ``encoder-chunks-N`` for window N).
"""

import contextlib
import zlib

import numpy as np

from ...errors import UserError

BASELINES = ("tfidf", "doc2vec", "encoder-trunc-128", "encoder-trunc-512", "encoder-chunks")
DOC2VEC = {"dm": 0, "vector_size": 100, "epochs": 20, "min_count": 2, "window": 5}


def tfidf_vectors(train_texts, test_texts):
    """-> (train [n, V] sparse, test [m, V] sparse); vocabulary and idf from the train texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(sublinear_tf=True, min_df=2)
    return vec.fit_transform(train_texts), vec.transform(test_texts)


@contextlib.contextmanager
def _stable_infer_seed():
    """gensim's infer_vector seeds its start vector with ``hash(" ".join(words))``, salted per process
    (PYTHONHASHSEED): use crc32 instead while inferring."""
    import gensim.models.doc2vec as d2v
    from gensim.models.keyedvectors import pseudorandom_weak_vector

    d2v.pseudorandom_weak_vector = lambda size, seed_string=None: pseudorandom_weak_vector(
        size, seed_string, hashfxn=lambda s: zlib.crc32(s.encode("utf-8")))
    try:
        yield
    finally:
        d2v.pseudorandom_weak_vector = pseudorandom_weak_vector


def doc2vec_vectors(train_texts, test_texts, seed: int = 0, **params):
    """-> (train [n, 100], test [m, 100]) float32; see the module docstring for the settings."""
    try:
        from gensim.models.doc2vec import Doc2Vec, TaggedDocument
        from gensim.utils import simple_preprocess
    except ImportError:
        raise UserError("the doc2vec baseline needs gensim (pip install gensim)") from None
    cfg = {**DOC2VEC, **params}
    train_tok = [simple_preprocess(t) for t in train_texts]
    model = Doc2Vec([TaggedDocument(w, [i]) for i, w in enumerate(train_tok)], seed=seed, workers=1, **cfg)
    train_x = np.stack([model.dv[i] for i in range(len(train_tok))])
    with _stable_infer_seed():
        test_x = np.stack([model.infer_vector(simple_preprocess(t)) for t in test_texts])
    return train_x, test_x


def load_encoder(name: str = "minilm"):
    """An untouched encoder (``AutoModel``, eval mode) and its tokenizer, by tunelab alias or path."""
    from ...models.loading import load_plain

    model, tok, _ = load_plain(name, "AutoModel")
    return model.eval(), tok


def baseline_vectors(name: str, train_texts, test_texts, model=None, tokenizer=None, seed: int = 0,
                     batch_size: int = 32, pooling: str = "mean"):
    """One row of the baseline table: ``name`` in :data:`BASELINES` (or ``encoder-trunc-N`` /
    ``encoder-chunks-N``) -> (train vectors, test vectors). Encoder baselines need ``model`` (untouched
    AutoModel) and ``tokenizer``; a length above the model's input length is capped at it."""
    from .chunks import chunk_documents, model_length, tokenize_documents
    from .embed import document_vectors, truncated_vectors

    if name == "tfidf":
        return tfidf_vectors(train_texts, test_texts)
    if name == "doc2vec":
        return doc2vec_vectors(train_texts, test_texts, seed=seed)
    if name.startswith(("encoder-trunc-", "encoder-chunks")):
        if model is None or tokenizer is None:
            raise ValueError(f"baseline {name} needs the encoder and its tokenizer")
        tail = name.rsplit("-", 1)[1]
        limit = model_length(tokenizer, model.config)
        length = min(int(tail), limit) if tail.isdigit() else limit
        if name.startswith("encoder-trunc-"):
            return tuple(truncated_vectors(model, tokenizer, tokenize_documents(tokenizer, texts), length, batch_size,
                                           pooling) for texts in (train_texts, test_texts))
        pad = tokenizer.pad_token_id or 0
        return tuple(document_vectors(model, chunk_documents(tokenizer, texts, length), batch_size, pad, pooling)
                     for texts in (train_texts, test_texts))
    raise UserError(f"unknown docrep baseline {name!r} (choose from {', '.join(BASELINES)}, "
                    f"encoder-trunc-N, encoder-chunks-N)")
