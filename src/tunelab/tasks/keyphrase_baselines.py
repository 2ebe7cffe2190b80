"""Unsupervised keyphrase baselines for the report's reference rows, scored by the same metric code.

YAKE (Campos et al. 2020; PyPI `yake`), the statistical extractor whose authors publish the
Inspec / KDD / WWW copies used here. Not a re-implementation: the package's KeywordExtractor.
"""


def yake_keyphrases(text: str, n: int = 10, max_ngram: int = 3) -> list:
    """Top-`n` keyphrases of `text` by YAKE, best first (YAKE's score: lower is better).

    Settings: English stop words, n-grams up to `max_ngram` words (the package default, 3), the package's
    default deduplication (dedup_func 'seqm', threshold 0.9), window size 1."""
    import yake

    extractor = yake.KeywordExtractor(lan="en", n=max_ngram, top=n)
    ranked = sorted(extractor.extract_keywords(text), key=lambda kv: kv[1])
    return [phrase for phrase, _score in ranked][:n]
