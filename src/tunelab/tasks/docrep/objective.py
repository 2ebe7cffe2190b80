"""The self-supervised objective: contrastive learning over whole documents, in plain torch over a
Hugging Face encoder. No labels anywhere.

- A pair = two views of one document. ``objective="declutr"`` (default, after DeCLUTR, Giorgi et al.
  2021): two different chunks of the document, drawn at random, so the encoder learns that distant parts
  of one article belong together; a document with a single chunk falls back to two dropout views of that
  chunk. ``objective="simcse"`` (Gao et al. 2021): always one chunk seen twice; the two views differ only
  by dropout (the model must be in train mode).
- Negatives = the other documents' views in the batch; a batch holds at most one pair per document, so
  no negative is ever a chunk of the anchor's own document.
- Chunk vector = mean over the non-padding tokens of the last hidden layer (special tokens included,
  as sentence-transformers' mean pooling does; ``pooling="mean"``, the default), see :func:`mean_pool`;
  or the first token's state (``pooling="cls"``). Virtual tokens that prompt tuning prepends are not
  pooled (they only act through attention).
- Loss = symmetric InfoNCE on cosine similarities divided by a temperature (default 0.05, SimCSE's value):
  for B pairs (a_i, b_i), S_ij = cos(a_i, b_j) / t, loss = (CE(S, diag) + CE(S^T, diag)) / 2.

For a generic training loop: :func:`pair_batches` yields dicts of tensors (move them to the device as
they are) and :func:`contrastive_loss` ``(model, batch) -> scalar loss``.
"""

import torch
import torch.nn.functional as F

from ...train.batching import right_pad

OBJECTIVES = ("declutr", "simcse")
POOLINGS = ("mean", "cls")
TEMPERATURE = 0.05


def mean_pool(hidden, attention_mask):
    """[N, L, H] token states, [N, L] mask -> [N, H]: mean over the positions where the mask is 1."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def encode(model, input_ids, attention_mask, pooling: str = "mean"):
    """Pooled last-layer vectors of a batch of token id rows (``pooling``: "mean" over the non-padding
    tokens, or "cls": the first token). ``model``: an encoder (AutoModel), or any HF model (a PEFT
    wrapper, a model with a head) whose ``hidden_states[-1]`` is the last layer. A PEFT prompt-tuning
    wrapper returns its virtual tokens' states first: only the last ``L`` positions (the input's) count."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        hidden = out.hidden_states[-1]
    hidden = hidden[:, -input_ids.shape[1]:]
    if pooling == "cls":
        return hidden[:, 0]
    if pooling != "mean":
        raise ValueError(f"unknown pooling {pooling!r} (choose from {', '.join(POOLINGS)})")
    return mean_pool(hidden, attention_mask)


def info_nce(a, b, temperature: float = TEMPERATURE):
    """Symmetric InfoNCE: row i of ``a`` and of ``b`` are positives, every other row of the other side is
    a negative. Cosine similarity / temperature, cross-entropy both ways, averaged."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def contrastive_loss(model, batch, temperature: float = TEMPERATURE, pooling: str = "mean"):
    """(model, batch from :func:`pair_batches`) -> scalar loss. One forward over both views (rows
    0..B-1 are the first views, B..2B-1 the second); dropout draws independent masks per row, which is
    what makes two copies of one chunk two different views. Data-parallel (``ShardedPairs``): the
    ranks' vectors are all-gathered (differentiably) and every rank computes the InfoNCE of the whole
    global batch, so the negatives are the global batch's as in one process (row order differs:
    InfoNCE does not depend on it)."""
    from ...train import distributed

    z = encode(model, batch["input_ids"], batch["attention_mask"], pooling)
    b = len(z) // 2
    if "global_docs" not in batch:
        return info_nce(z[:b], z[b:], temperature)
    n, w = int(batch["global_docs"]), distributed.world_size()
    share = -(-n // w)  # ranks hold ceil / floor of n / W documents: pad to the larger, drop the padding
    pad = z.new_zeros(share - b, z.shape[1])
    both = distributed.all_gather_with_grad(torch.cat([z[:b], pad, z[b:], pad]))  # [W, 2 * share, H]
    sizes = [len(range(r, n, w)) for r in range(w)]
    a = torch.cat([both[r, :k] for r, k in enumerate(sizes)])
    p = torch.cat([both[r, share:share + k] for r, k in enumerate(sizes)])
    return info_nce(a, p, temperature)


def pick_pair(n_chunks: int, objective: str, generator) -> tuple:
    """Chunk indices (i, j) of one document's two views: distinct when the objective is declutr and the
    document has two or more chunks; otherwise i == j (a dropout pair)."""
    i = int(torch.randint(n_chunks, (1,), generator=generator))
    if objective == "declutr" and n_chunks >= 2:
        j = int(torch.randint(n_chunks - 1, (1,), generator=generator))
        return i, j + (j >= i)  # uniform over the other chunks
    return i, i


def pair_batches(docs_chunks, batch_size: int, generator, objective: str = "declutr", pad_id: int = 0):
    """One epoch of contrastive batches. ``docs_chunks``: per document, its chunks (token id lists with
    special tokens, from ``chunks.chunk_documents``). Documents are visited once, in an order drawn from
    ``generator`` (a seeded ``torch.Generator``), ``batch_size`` documents per batch, one pair each; a
    last batch with a single document (no negative) is dropped.

    Yields {"doc_index": [B], "input_ids": [2B, L], "attention_mask": [2B, L], "chunk_index": [B, 2]}
    (``doc_index`` first: tunelab's loop counts a batch's samples from its first tensor, so samples =
    documents). ``doc_index`` is the position in ``docs_chunks``; no label is involved anywhere."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r} (choose from {', '.join(OBJECTIVES)})")
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2 (in-batch negatives)")
    order = torch.randperm(len(docs_chunks), generator=generator).tolist()
    for start in range(0, len(order), batch_size):
        docs = order[start:start + batch_size]
        if len(docs) < 2:
            break
        picks = [pick_pair(len(docs_chunks[d]), objective, generator) for d in docs]
        rows = [docs_chunks[d][i] for d, (i, _) in zip(docs, picks)] + \
               [docs_chunks[d][j] for d, (_, j) in zip(docs, picks)]
        ids, mask = right_pad(rows, pad_id)
        yield {"doc_index": torch.tensor(docs, dtype=torch.long), "input_ids": ids, "attention_mask": mask,
               "chunk_index": torch.tensor(picks, dtype=torch.long)}


class PairLoader:
    """:func:`pair_batches` as a re-iterable loader with a length (what tunelab's loop needs): each
    iteration is one epoch, drawn from the same seeded ``generator``, so epochs differ but a run is
    reproducible."""

    def __init__(self, docs_chunks, batch_size: int, generator, objective: str = "declutr", pad_id: int = 0):
        self.docs_chunks, self.batch_size, self.generator = docs_chunks, batch_size, generator
        self.objective, self.pad_id = objective, pad_id

    def __len__(self):
        return batches_per_epoch(len(self.docs_chunks), self.batch_size)

    def __iter__(self):
        return pair_batches(self.docs_chunks, self.batch_size, self.generator, self.objective, self.pad_id)


def batches_per_epoch(n_docs: int, batch_size: int) -> int:
    """How many batches :func:`pair_batches` yields (for a learning-rate schedule)."""
    return n_docs // batch_size + (1 if n_docs % batch_size >= 2 else 0)


def pairing_stats(docs_chunks, objective: str = "declutr") -> dict:
    """How many documents give a two-chunk pair and how many a dropout pair (for run.json)."""
    multi = sum(len(c) >= 2 for c in docs_chunks) if objective == "declutr" else 0
    return {"objective": objective, "documents": len(docs_chunks), "two_chunk_pairs": multi,
            "dropout_pairs": len(docs_chunks) - multi}


class ShardedPairs:
    """Data-parallel: this rank's documents r, r+W, ... of every global batch of ``loader`` (a
    ``PairLoader``: every rank draws the same seeded batches), with ``global_docs`` (the global batch's
    size) for :func:`contrastive_loss`'s gather. A global batch with fewer documents than ranks is
    skipped (only a short last one can be). ``generator`` is the loader's (the loop reseeds it per epoch)."""

    def __init__(self, loader, rank: int, world: int):
        self.loader, self.rank, self.world = loader, rank, world
        self.generator = loader.generator

    def __len__(self):
        n, bs = len(self.loader.docs_chunks), self.loader.batch_size
        last = n % bs
        return len(self.loader) - (1 if 2 <= last < self.world else 0)

    def __iter__(self):
        for batch in self.loader:
            n = len(batch["doc_index"])
            if n < self.world:
                continue
            keep = list(range(self.rank, n, self.world))
            rows = keep + [n + i for i in keep]
            mask = batch["attention_mask"][rows]
            width = int(mask.sum(1).max())
            yield {"doc_index": batch["doc_index"][keep], "input_ids": batch["input_ids"][rows, :width],
                   "attention_mask": mask[:, :width], "chunk_index": batch["chunk_index"][keep],
                   "global_docs": torch.tensor(n)}
