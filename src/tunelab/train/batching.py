"""Length-grouped batching (``--group-by-length``: on by default for loop-trained tasks, any family whose rows have a length): less padding for the same examples.

Training: every epoch, shuffle the examples, cut them into chunks of ``chunk_batches`` batches, sort
each chunk by length and split it into batches, then shuffle the batch order (the scheme of HF
``group_by_length``, with small chunks so batch composition still changes between epochs). On GLUE
subsets this cuts padded tokens per epoch by 1.3-2x (SST-2 2.6 -> 1.3 tokens per real token).
Evaluation: predict in length order and put the predictions back in dataset order.
"""

import math

import torch


class LengthGroupedBatches:
    """A ``batch_sampler`` for ``DataLoader``: lists of indices, reshuffled each epoch from ``generator``."""

    def __init__(self, lengths: list, batch_size: int, generator: torch.Generator, chunk_batches: int = 8):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.chunk_batches = chunk_batches
        self.chunk = chunk_batches * batch_size

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.chunk)
        return full * self.chunk_batches + math.ceil(rest / self.batch_size)

    def __iter__(self):
        n = len(self.lengths)
        perm = torch.randperm(n, generator=self.generator).tolist()
        batches = []
        for i in range(0, n, self.chunk):
            part = sorted(perm[i:i + self.chunk], key=lambda j: -self.lengths[j])
            batches += [part[k:k + self.batch_size] for k in range(0, len(part), self.batch_size)]
        order = torch.randperm(len(batches), generator=self.generator).tolist()
        return iter([batches[o] for o in order])


def length_order(lengths: list) -> list:
    """Indices of ``lengths`` from longest to shortest (stable)."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def unsort(values: list, order: list) -> list:
    """Inverse of taking ``values[k] = original[order[k]]``."""
    out = [None] * len(values)
    for k, i in enumerate(order):
        out[i] = values[k]
    return out


def right_pad(seqs: list, pad_id: int):
    """Token-id lists -> (ids, attention_mask) long tensors, right-padded to the longest."""
    width = max(len(r) for r in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, r in enumerate(seqs):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def epoch_seed(seed: int, epoch: int) -> int:
    """The data-order seed of one epoch: ``seed`` itself for epoch 0, a SeedSequence mix of
    (seed, epoch) after it. The order of epoch e depends on nothing else (not on how many random
    numbers earlier epochs drew), so a resumed run can rebuild it (train/checkpoint.py)."""
    if epoch == 0:
        return int(seed)
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0] >> 1)


def loader_generators(loader) -> list:
    """The ``torch.Generator`` objects that order a loader's batches: the DataLoader's own, its
    sampler's and batch sampler's (``LengthGroupedBatches``), a wrapper's (``CachedLoader.base``) or
    a custom loader's ``generator`` attribute (docrep's ``PairLoader``)."""
    found, seen, todo = [], set(), [loader]
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Generator):
            found.append(obj)
            continue
        for attr in ("generator", "sampler", "batch_sampler", "base"):
            todo.append(getattr(obj, attr, None))
    return found


def set_epoch(loader, seed: int, epoch: int) -> None:
    """Reseed every generator of ``loader`` for ``epoch``: its batch order is a function of (seed, epoch)."""
    for g in loader_generators(loader):
        g.manual_seed(epoch_seed(seed, epoch))
