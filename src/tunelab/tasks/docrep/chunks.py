"""Cut long documents into windows the encoder can read, using every token.

A document is tokenized once without special tokens; its n word pieces are split into
k = ceil(n / body) contiguous windows, body = window length minus the model's special tokens
(2 for BERT: [CLS] ... [SEP]). The windows have near-equal sizes (they differ by at most one token),
so there is no short last chunk: a 600-piece document at window 512 gives two chunks of 300 pieces,
not 510 + 90. Every token lands in exactly one chunk, in order. Each chunk then gets the model's
special tokens, so it looks to the encoder like an ordinary input of at most ``max_length`` tokens.
"""

import math


def model_length(tokenizer, config=None) -> int:
    """The longest input the model takes: min(tokenizer.model_max_length, config.max_position_embeddings),
    ignoring the huge placeholder tokenizers use when they have no limit. minilm: 512 (positions);
    note sentence-transformers caps all-MiniLM-L6-v2 at 256 and it was trained on 128-token inputs."""
    limits = [tokenizer.model_max_length] if tokenizer.model_max_length < 1_000_000 else []
    if config is not None and getattr(config, "max_position_embeddings", None):
        limits.append(config.max_position_embeddings)
    if not limits:
        raise ValueError("cannot tell the model's input length: pass max_length")
    return min(limits)


def special_tokens(tokenizer):
    """(prefix ids, suffix ids) the tokenizer wraps around a single text, found by encoding a word with
    and without special tokens (works for BERT, RoBERTa, Llama, ...). BERT: ([CLS], [SEP])."""
    word = "hello"
    bare = tokenizer(word, add_special_tokens=False)["input_ids"]
    full = tokenizer(word)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return list(full[:i]), list(full[i + len(bare):])
    raise ValueError(f"cannot locate the text inside the special tokens of {type(tokenizer).__name__}")


def tokenize_documents(tokenizer, texts, batch_size: int = 256) -> list:
    """Texts -> lists of token ids without special tokens (whole documents, no truncation)."""
    import transformers

    out = []
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "sequence longer than 512" is expected: we chunk
    try:
        for i in range(0, len(texts), batch_size):
            out.extend(tokenizer(list(texts[i:i + batch_size]), add_special_tokens=False,
                                 truncation=False)["input_ids"])
    finally:
        transformers.logging.set_verbosity(verbosity)
    return [list(ids) for ids in out]


def chunk_ids(ids, max_length: int, prefix=(), suffix=()) -> list:
    """One document's token ids (no special tokens) -> list of chunks, each ``prefix + window + suffix``
    with at most ``max_length`` tokens; near-equal contiguous windows covering every id exactly once.
    An empty document gives one chunk holding only the special tokens (so it still gets a vector)."""
    body = max_length - len(prefix) - len(suffix)
    if body < 1:
        raise ValueError(f"max_length {max_length} leaves no room next to {len(prefix) + len(suffix)} special tokens")
    n = len(ids)
    k = max(1, math.ceil(n / body))
    bounds = [j * n // k for j in range(k + 1)]  # sizes differ by at most 1, all <= body
    return [list(prefix) + list(ids[bounds[j]:bounds[j + 1]]) + list(suffix) for j in range(k)]


def chunk_documents(tokenizer, texts, max_length: int) -> list:
    """Texts -> per document, its list of chunks (token id lists with special tokens)."""
    prefix, suffix = special_tokens(tokenizer)
    return [chunk_ids(ids, max_length, prefix, suffix) for ids in tokenize_documents(tokenizer, texts)]


def truncate_ids(ids, max_length: int, prefix=(), suffix=()) -> list:
    """The usual truncation: the first ``max_length - specials`` ids, wrapped in the special tokens."""
    return list(prefix) + list(ids[:max_length - len(prefix) - len(suffix)]) + list(suffix)


def length_report(token_counts, limits=(128, 512), num_special: int = 2) -> dict:
    """How many documents do not fit in ``limit`` tokens (word pieces + special tokens > limit, i.e.
    truncation at that length drops some of their text), and the length distribution."""
    import numpy as np

    n = np.asarray(list(token_counts))
    out = {"documents": int(len(n)), "mean_word_pieces": float(n.mean()), "median_word_pieces": float(np.median(n)),
           "max_word_pieces": int(n.max())}
    for lim in limits:
        out[f"over_{lim}"] = int((n + num_special > lim).sum())
    return out
