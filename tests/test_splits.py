"""tasks/splits.py gives every family the split its own code gave before (verbatim copies of the old
code below, as of commit 29227ac): the same seed puts the same examples on the same side."""

import random
from dataclasses import dataclass

import pytest

from tunelab.errors import UserError
from tunelab.tasks.alignment.preference import seeded_split as alignment_split
from tunelab.tasks.image.data import per_class_subset, stratified_split
from tunelab.tasks.keyphrase.data import split_docs
from tunelab.tasks.splits import seeded_split


# ---------------------------------------------------------------- the old code, verbatim
def old_image_stratified(examples, fraction, seed):
    by_class = {}
    for i, e in enumerate(examples):
        by_class.setdefault(e.label, []).append(i)
    rng = random.Random(seed)
    held = set()
    for label in sorted(by_class):
        idx = by_class[label]
        if len(idx) < 2:
            raise UserError("too small")
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        held.update(rng.sample(idx, k))
    kept = [e for i, e in enumerate(examples) if i not in held]
    return kept, [e for i, e in enumerate(examples) if i in held]


def old_per_class_subset(examples, n, seed):
    by_class = {}
    for i, e in enumerate(examples):
        by_class.setdefault(e.label, []).append(i)
    rng = random.Random(seed)
    chosen = set()
    for label in sorted(by_class):
        idx = by_class[label]
        if len(idx) < n:
            raise UserError("too small")
        chosen.update(rng.sample(idx, n))
    return ([e for i, e in enumerate(examples) if i in chosen],
            [e for i, e in enumerate(examples) if i not in chosen])


def old_alignment_split(n, eval_fraction, split_seed=1234):  # alignment SPLIT_SEED
    idx = list(range(n))
    random.Random(split_seed).shuffle(idx)
    k = max(1, round(eval_fraction * n)) if n > 1 else 0
    return sorted(idx[k:]), sorted(idx[:k])


def old_asr_holdout(examples, eval_fraction, split):
    idx = list(range(len(examples)))
    random.Random(0).shuffle(idx)
    n_eval = max(1, round(eval_fraction * len(idx)))
    if len(idx) - n_eval < 1:
        raise UserError("too few")
    held = set(idx[:n_eval])
    return [u for i, u in enumerate(examples) if (i in held) == (split == "validation")]


def old_keyphrase_split(docs, seed, ratios=(0.70, 0.15, 0.15)):
    docs = sorted(docs, key=lambda d: d.id)
    order = [d.id for d in docs]
    random.Random(seed).shuffle(order)
    n = len(order)
    n_val, n_test = round(n * ratios[1]), round(n * ratios[2])
    n_train = n - n_val - n_test
    where = {}
    for j, i in enumerate(order):
        where[i] = "train" if j < n_train else ("validation" if j < n_train + n_val else "test")
    out = {"train": [], "validation": [], "test": []}
    for d in docs:
        out[where[d.id]].append(d)
    return out


# ---------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class Item:
    id: str
    label: int


def items(n, classes, seed):
    rng = random.Random(1000 + seed)
    return [Item(f"{i:05d}", rng.randrange(classes)) for i in range(n)]


CASES = [(n, c, s) for n in (12, 57, 240, 1001) for c in (2, 3, 10) for s in (0, 1, 7)]


@pytest.mark.parametrize("n,classes,seed", CASES)
def test_image_validation_carve_and_labelled_subset_are_unchanged(n, classes, seed):
    ex = items(n, classes, seed)
    for fraction in (1 / 12, 0.2, 0.5):
        try:
            old = old_image_stratified(ex, fraction, seed)
        except UserError:
            with pytest.raises(UserError):
                stratified_split(ex, fraction, seed, "here")
            continue
        kept, held, record = stratified_split(ex, fraction, seed, "here")
        assert (kept, held) == old and record["sizes"] == {"validation": len(held), "train": len(kept)}
    for per_class in (1, 3):
        try:
            old = old_per_class_subset(ex, per_class, seed)
        except UserError:
            with pytest.raises(UserError):
                per_class_subset(ex, per_class, seed, "here")
            continue
        assert per_class_subset(ex, per_class, seed, "here") == old


@pytest.mark.parametrize("n", [0, 1, 2, 3, 9, 10, 11, 99, 1000, 2225])
def test_alignment_and_asr_held_out_shares_are_unchanged(n):
    for fraction in (0.05, 0.1, 0.2, 0.5):
        assert alignment_split(n, fraction) == old_alignment_split(n, fraction)
        ex = list(range(n))
        for split in ("train", "validation"):
            try:
                old = old_asr_holdout(ex, fraction, split)
            except UserError:
                parts, _ = seeded_split(ex, {"validation": fraction}, 0)
                assert not parts["train"]  # the ASR task raises on this
                continue
            parts, _ = seeded_split(ex, {"validation": fraction}, 0)
            assert [ex[i] for i in parts[split]] == old


@pytest.mark.parametrize("n", [20, 21, 100, 244, 1330])
@pytest.mark.parametrize("seed", [0, 3])
def test_keyphrase_document_split_is_unchanged(n, seed):
    @dataclass
    class Doc:
        id: str

    rng = random.Random(n)
    docs = [Doc(str(rng.randrange(10**6))) for _ in range(n)]
    docs = list({d.id: d for d in docs}.values())  # unique ids
    new, rule = split_docs(list(reversed(docs)), "kdd", seed)
    old = old_keyphrase_split(docs, seed)
    assert {k: [d.id for d in v] for k, v in new.items()} == {k: [d.id for d in v] for k, v in old.items()}
    assert rule["sizes"] == {k: len(v) for k, v in old.items()}


def test_the_record_describes_the_split():
    parts, record = seeded_split(list(range(10)), {"validation": 0.2, "test": 0.1}, 5, rest_first=True)
    assert sorted(sum(parts.values(), [])) == list(range(10))
    assert record["sizes"] == {"validation": 2, "test": 1, "train": 7} and record["seed"] == 5
    assert not record["stratified"] and record["held_out"] == {"validation": 0.2, "test": 0.1}
