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
