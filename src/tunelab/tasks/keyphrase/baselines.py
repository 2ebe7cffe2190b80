"""Unsupervised keyphrase baselines for the report's reference rows, scored by the same metric code.

Not re-implementations: the maintained packages' own extractors.
- YAKE (Campos et al. 2020; PyPI `yake`): statistical, single document. Its authors publish the
  Inspec / KDD / WWW copies used here.
- KeyBERT (Grootendorst 2020; PyPI `keybert`): candidate n-grams ranked by cosine similarity of their
  sentence embedding to the document's, here with the offline all-MiniLM-L6-v2 sentence-transformer
  (the `minilm` alias; the same encoder the supervised rows fine-tune).
"""

from functools import lru_cache


def yake_keyphrases(text: str, n: int = 10, max_ngram: int = 3) -> list:
    """Top-`n` keyphrases of `text` by YAKE, best first (YAKE's score: lower is better).

    Settings: English stop words, n-grams up to `max_ngram` words (the package default, 3), the package's
    default deduplication (dedup_func 'seqm', threshold 0.9), window size 1."""
    import yake

    extractor = yake.KeywordExtractor(lan="en", n=max_ngram, top=n)
    ranked = sorted(extractor.extract_keywords(text), key=lambda kv: kv[1])
    return [phrase for phrase, _score in ranked][:n]


@lru_cache(maxsize=2)
def _keybert(model: str):
    from keybert import KeyBERT
    from sentence_transformers import SentenceTransformer

    from ...models.aliases import resolve_model

    return KeyBERT(model=SentenceTransformer(resolve_model(model), device="cpu"))


def keybert_keyphrases(texts, n: int = 10, max_ngram: int = 3, model: str = "minilm") -> list:
    """Top-`n` keyphrases of each text by KeyBERT, best first: one list per text.

    Settings: the usage of KeyBERT's README for keyphrases: candidates = 1..`max_ngram`-grams of
    scikit-learn's CountVectorizer with English stop words removed, ranked by cosine similarity, no
    MMR/Max Sum diversification. About 0.45 s per Inspec abstract on one CPU thread with minilm."""
    texts = list(texts)
    if not texts:
        return []
    out = _keybert(model).extract_keywords(texts, keyphrase_ngram_range=(1, max_ngram), stop_words="english",
                                           top_n=n)
    if texts and out and isinstance(out[0], tuple):  # KeyBERT returns a flat list for a single text
        out = [out]
    return [[phrase for phrase, _score in doc][:n] for doc in out]
