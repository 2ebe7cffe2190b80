"""Opt-in length-grouped batching: every example once per epoch, batches of similar length, seeded,
and evaluation in length order gives the same predictions in dataset order."""

import torch

from tunelab.train.batching import LengthGroupedBatches, length_order, unsort


def test_length_grouped_batches_cover_every_example_once_per_epoch():
    lengths = [(i * 37) % 61 + 3 for i in range(203)]
    s = LengthGroupedBatches(lengths, 16, torch.Generator().manual_seed(0))
    epochs = [list(s) for _ in range(3)]
    for batches in epochs:
        assert len(batches) == len(s)
        assert sorted(i for b in batches for i in b) == list(range(203))
        assert all(1 <= len(b) <= 16 for b in batches)
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    again = [list(b) for b in LengthGroupedBatches(lengths, 16, torch.Generator().manual_seed(0))]
    assert again == epochs[0]  # seeded
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epochs[0]) / len(epochs[0])
    assert spread < 20  # random batches of these lengths spread over ~55 tokens


def test_padding_drops_and_unsort_restores_order():
    lengths = [(i * 37) % 61 + 3 for i in range(256)]
    grouped = sum(max(lengths[i] for i in b) * len(b) for b in LengthGroupedBatches(lengths, 16, torch.Generator().manual_seed(1)))
    plain = sum(max(lengths[k:k + 16]) * len(lengths[k:k + 16]) for k in range(0, 256, 16))
    assert grouped < 0.75 * plain
    order = length_order(lengths)
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    assert unsort([lengths[i] for i in order], order) == lengths
