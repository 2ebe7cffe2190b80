"""Preference pairs in the Anthropic HH-RLHF format: one JSON object per line with the full
dialogues ``chosen`` and ``rejected`` (``\\n\\nHuman: ... \\n\\nAssistant: ...``), plain or gzipped.

The prompt is the common prefix of the two dialogues up to (and including) its last
``"\\n\\nAssistant:"``; the responses are what follows. Sources:

- ``--data-dir`` holding ``<subset>/`` folders (``../shared/data/hh-rlhf``), the data root holding
  ``hh-rlhf/<subset>/``, or a subset folder itself; inside, ``train.jsonl[.gz]`` and/or
  ``test.jsonl[.gz]``;
- no data dir: the hub, ``Anthropic/hh-rlhf`` with ``data_dir=<subset>``.

Splits are deterministic: a ``train`` + ``test`` pair of files gives train / validation as they
are; a single file is split with a fixed seed (``--eval-fraction`` held out), the same for every
run seed so that all runs are evaluated on the same pairs.
"""

import os
from dataclasses import dataclass

from ...errors import UserError
from ...textio import read_jsonl
from ..base import sha256_file
from ..splits import seeded_split as seeded_split_of

ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"
DEFAULT_SUBSET = "helpful-base"
SPLIT_SEED = 1234  # fixed: the train/eval split must not depend on the run seed


@dataclass
class PairExample:
    """A prompt with a preferred and (for preference data) a dispreferred response."""

    prompt: str
    chosen: str
    rejected: str | None = None
    line: int = 0  # 1-based line in the source file (0 for hub rows)
    messages: dict | None = None  # message lists (prompt, chosen, rejected) until rendered (formats.py)


def split_dialogues(chosen: str, rejected: str):
    """(prompt, chosen_response, rejected_response), or None when the two dialogues share no
    ``Assistant:`` turn."""
    n = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        n += 1
    i = chosen.rfind(ASSISTANT, 0, n)
    if i < 0:
        return None
    cut = i + len(ASSISTANT)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def rows_to_pairs(rows, where: str):
    """[(line, dict)] -> ([PairExample], info). Malformed rows are errors; rows without a preference
    (identical responses, no shared Assistant turn) are skipped and counted."""
    pairs, skipped = [], {"identical_responses": 0, "no_shared_assistant_turn": 0}
    for line, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("chosen"), str) or not isinstance(row.get("rejected"), str):
            raise UserError(f"{where}:{line}: expected an object with string fields 'chosen' and 'rejected'")
        parts = split_dialogues(row["chosen"], row["rejected"])
        if parts is None:
            skipped["no_shared_assistant_turn"] += 1
            continue
        prompt, c, r = parts
        if c == r:
            skipped["identical_responses"] += 1
            continue
        pairs.append(PairExample(prompt=prompt, chosen=c, rejected=r, line=line))
    return pairs, skipped


def read_pairs_file(path: str):
    """A hh-rlhf JSON Lines file (plain or gzipped) -> ([PairExample], skipped counts)."""
    return rows_to_pairs(read_jsonl(path, what="hh-rlhf file"), path)


def _jsonl(folder: str, stem: str):
    for ext in (".jsonl", ".jsonl.gz"):
        p = os.path.join(folder, stem + ext)
        if os.path.isfile(p):
            return p
    return None


def _has_pairs(folder: str) -> bool:
    return bool(_jsonl(folder, "train") or _jsonl(folder, "test"))


def find_folder(data_dir: str, subset: str | None) -> str:
    name = subset or DEFAULT_SUBSET
    for cand in (os.path.join(data_dir, name), os.path.join(data_dir, "hh-rlhf", name)):
        if os.path.isdir(cand) and _has_pairs(cand):
            return cand
    if subset is None and _has_pairs(data_dir):
        return data_dir  # the subset folder itself
    known = []
    for root in (data_dir, os.path.join(data_dir, "hh-rlhf")):
        if os.path.isdir(root):
            known += [d for d in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, d)) and _has_pairs(os.path.join(root, d))]
    hint = f"; subsets there: {', '.join(known)}" if known else " (expected <subset>/train.jsonl[.gz] or test.jsonl[.gz])"
    raise UserError(f"--data-dir {data_dir}: no hh-rlhf subset '{name}'{hint}")


def seeded_split(n: int, eval_fraction: float):
    """(train_indices, eval_indices), sorted, from a fixed-seed shuffle (tasks/splits.py; at least one
    eval item, none of a single item)."""
    if n <= 1:
        return list(range(n)), []
    parts, _ = seeded_split_of(range(n), {"validation": float(eval_fraction)}, SPLIT_SEED)
    return parts["train"], parts["validation"]


def load_pairs(split: str, data_dir: str | None, subset: str | None, eval_fraction: float):
    """-> (examples, files, info) for split 'train' or 'validation'."""
    if split not in ("train", "validation"):
        raise UserError(f"hh-rlhf data has no split {split!r} (train, validation)")
    if not data_dir:
        return _load_hub(split, subset, eval_fraction)
    folder = find_folder(data_dir, subset)
    train_f, test_f = _jsonl(folder, "train"), _jsonl(folder, "test")
    if train_f and test_f:
        path = train_f if split == "train" else test_f
        pairs, skipped = read_pairs_file(path)
        info = {"split": f"{os.path.basename(path)} as given", "skipped": skipped}
    else:
        path = train_f or test_f
        pairs, skipped = read_pairs_file(path)
        tr, ev = seeded_split(len(pairs), eval_fraction)
        pairs = [pairs[i] for i in (tr if split == "train" else ev)]
        info = {"split": f"{os.path.basename(path)} split with seed {SPLIT_SEED}: "
                         f"{len(tr)} train / {len(ev)} validation pairs ({eval_fraction:g} held out)",
                "skipped": skipped}
    if not pairs:
        raise UserError(f"{path}: no usable preference pairs for the {split} split")
    return pairs, {os.path.abspath(path): sha256_file(path)}, info


def _load_hub(split: str, subset: str | None, eval_fraction: float):
    name = subset or DEFAULT_SUBSET
    try:
        import datasets

        datasets.logging.set_verbosity_error()
        ds = datasets.load_dataset("Anthropic/hh-rlhf", data_dir=name, split="train" if split == "train" else "test")
    except Exception as e:  # noqa: BLE001  (network / hub errors become one line)
        raise UserError(f"cannot load Anthropic/hh-rlhf ({name}) from the hub ({type(e).__name__}); "
                        "pass --data-dir with a local copy (e.g. ../shared/data/hh-rlhf)") from e
    pairs, skipped = rows_to_pairs(((0, r) for r in ds), f"hub:Anthropic/hh-rlhf/{name}")
    return pairs, {f"hub:Anthropic/hh-rlhf/{name}/{split}": getattr(ds, "_fingerprint", "")}, \
        {"split": "hub train / test splits", "skipped": skipped}
