"""Document vectors from an encoder, frozen (eval mode, no grad).

- :func:`document_vectors`: every chunk of a document -> mean-pooled chunk vector (mean over its
  non-padding tokens, see ``objective.mean_pool``); document vector = plain mean of its chunk vectors
  (each chunk counts once, whatever its length; chunks have near-equal lengths anyway, see ``chunks``).
  This uses all of the document's tokens.
- :func:`truncated_vectors`: the usual single-pass embedding: the first ``max_length`` tokens (with the
  special tokens), the rest of the document is ignored.
"""

import numpy as np
import torch

from .chunks import special_tokens, truncate_ids
from .objective import encode


def _device(model):
    return next(model.parameters()).device


@torch.no_grad()
def chunk_vectors(model, chunks, batch_size: int = 32, pad_id: int = 0, pooling: str = "mean") -> np.ndarray:
    """Token id lists (special tokens included) -> [N, H] float32 mean-pooled vectors, in input order.
    Chunks are batched longest first, so a batch holds chunks of similar length (little padding)."""
    was_training = model.training
    model.eval()
    device = _device(model)
    order = sorted(range(len(chunks)), key=lambda i: -len(chunks[i]))
    out = [None] * len(chunks)
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            width = max(len(chunks[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, :len(chunks[i])] = torch.tensor(chunks[i], dtype=torch.long)
                mask[r, :len(chunks[i])] = 1
            vecs = encode(model, ids.to(device), mask.to(device), pooling).float().cpu().numpy()
            for r, i in enumerate(idx):
                out[i] = vecs[r]
    finally:
        model.train(was_training)
    return np.stack(out)


def document_vectors(model, docs_chunks, batch_size: int = 32, pad_id: int = 0, pooling: str = "mean") -> np.ndarray:
    """Per document, its chunks -> [D, H]: the mean of the document's chunk vectors."""
    flat = [c for chunks in docs_chunks for c in chunks]
    vecs = chunk_vectors(model, flat, batch_size, pad_id, pooling)
    out, pos = [], 0
    for chunks in docs_chunks:
        out.append(vecs[pos:pos + len(chunks)].mean(0))
        pos += len(chunks)
    return np.stack(out)


def truncated_vectors(model, tokenizer, docs_ids, max_length: int, batch_size: int = 32,
                      pooling: str = "mean") -> np.ndarray:
    """Per document, its token ids (no special tokens) -> [D, H] vectors of the first ``max_length``
    tokens only (special tokens included in the count)."""
    prefix, suffix = special_tokens(tokenizer)
    chunks = [truncate_ids(ids, max_length, prefix, suffix) for ids in docs_ids]
    return chunk_vectors(model, chunks, batch_size, tokenizer.pad_token_id or 0, pooling)
