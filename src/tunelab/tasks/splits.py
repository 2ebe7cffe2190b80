"""Seeded (optionally stratified) splits of a family's examples: one helper for every family that
holds out a share of its data (a validation split carved from train, a labelled subset, a 70/15/15
document split), so that the same seed always gives the same split and run.json says how it was made.

``seeded_split(items, held, seed, ...) -> (parts, record)``: ``parts`` maps each part's name to a
sorted list of indices into ``items`` (the examples keep their order), ``record`` describes the
split for run.json. Two procedures, both with ``random.Random(seed)``:

- **not stratified** (``label=None``): the indices 0..n-1 are shuffled once; the held-out parts take
  consecutive runs of that order (first, or after the rest with ``rest_first``), each
  ``max(min_held, round(fraction * n))`` indices (an int: that many), the rest what is left;
- **stratified** (``label(item) -> class``; one held-out part): per class, in sorted class order,
  ``rng.sample`` of the class's indices: ``min(size - 1, max(min_held, round(fraction * size)))``
  of them (at least one stays), or with an int exactly that many per class (``per class``).
  A class too small raises ``UserError(too_small(class, size))``.

Docrep's train/test split stays scikit-learn's ``train_test_split(stratify=...)`` (docrep/news.py):
its allocation is not a per-class sample and other code (and published numbers) follows it.
"""

import random

from ..errors import UserError


def seeded_split(items, held: dict, seed: int, *, label=None, rest: str = "train", rest_first: bool = False,
                 min_held: int = 1, too_small=None) -> tuple:
    """(parts: {name: sorted indices}, record: dict) -- see the module docstring. ``held``: part name
    -> fraction (float) or count (int; per class when stratified); ``rest``: the name of what is
    left. Not stratified, several held-out parts are allowed (in ``held``'s order)."""
    n = len(items)
    rng = random.Random(seed)
    if label is None:
        order = list(range(n))
        rng.shuffle(order)
        sizes = {name: _count(v, n, min_held) for name, v in held.items()}
        n_rest = n - sum(sizes.values())
        pos = n_rest if rest_first else 0
        parts = {}
        for name, k in sizes.items():
            parts[name] = sorted(order[pos:pos + k])
            pos += k
        parts[rest] = sorted(order[:n_rest] if rest_first else order[pos:])
    else:
        if len(held) != 1:
            raise ValueError("a stratified split holds out one part")
        (name, v), = held.items()
        by_class = {}
        for i, item in enumerate(items):
            by_class.setdefault(label(item), []).append(i)
        chosen = set()
        for c in sorted(by_class):
            idx = by_class[c]
            if isinstance(v, float):
                if len(idx) < 2:
                    raise UserError(too_small(c, len(idx)) if too_small else
                                    f"class {c!r} has {len(idx)} example(s): a stratified split needs 2")
                k = min(len(idx) - 1, _count(v, len(idx), min_held))
            else:
                if len(idx) < v:
                    raise UserError(too_small(c, len(idx)) if too_small else
                                    f"class {c!r} has {len(idx)} example(s), fewer than {v}")
                k = v
            chosen.update(rng.sample(idx, k))
        parts = {name: sorted(chosen), rest: [i for i in range(n) if i not in chosen]}
    record = {"seed": seed, "stratified": label is not None,
              "held_out": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in held.items()},
              "sizes": {k: len(v) for k, v in parts.items()},
              "procedure": ("per class (sorted), random.Random(seed).sample" if label is not None else
                            "random.Random(seed).shuffle of the indices, consecutive runs"
                            + (" (the rest first)" if rest_first else " (held-out parts first)"))}
    return parts, record


def _count(v, n: int, min_held: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else max(min_held, round(v * n))


def take(items, indices) -> list:
    """``[items[i] for i in indices]``."""
    return [items[i] for i in indices]


SELECTION_SEED = 0  # the selection split is one fixed split of the train data, whatever the run's seed


def selection_split(examples, fraction: float, stratify: bool) -> tuple:
    """(rest, held, record): ``fraction`` of ``examples`` held out as a selection (validation) split,
    stratified by ``example.label`` when ``stratify``, seeded by ``SELECTION_SEED`` (the same for
    every method and seed); ``record`` says how (run.json's ``data_notes``)."""
    parts, record = seeded_split(examples, {"selection": fraction}, SELECTION_SEED,
                                 label=(lambda e: e.label) if stratify else None, rest="train")
    record["carved_from"] = "train"
    return take(examples, parts["train"]), take(examples, parts["selection"]), record
