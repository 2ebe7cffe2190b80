"""Unpaired preference data for ``--task kto``: TRL's unpaired preference format, one JSON object
per line (plain or gzipped) with string fields ``prompt`` and ``completion`` and a boolean ``label``
(true: desirable). Held-out evaluation stays on the hh-rlhf pairs (the same pairs as ``dpo``).

Pairs turn into the same format with ``unpair``: the chosen response desirable, the rejected one
undesirable (what TRL's ``unpair_preference_dataset`` does)."""

import os
from dataclasses import dataclass

from ...errors import UserError
from ...textio import read_jsonl
from ..base import sha256_file


@dataclass
class UnpairedExample:
    """A prompt and one completion with its label; ``chosen`` holds the completion so that the
    family's tokeniser (data.py) truncates it like any response."""

    prompt: str
    chosen: str
    label: bool
    line: int = 0
    rejected: None = None


def read_unpaired(path: str) -> list:
    out = []
    for line, row in read_jsonl(path, what="unpaired preference file"):
        if not isinstance(row, dict):
            raise UserError(f"{path}:{line}: expected a JSON object with prompt, completion, label")
        for k in ("prompt", "completion"):
            if not isinstance(row.get(k), str):
                raise UserError(f"{path}:{line}: field '{k}' must be a string (TRL's unpaired preference format: "
                                "prompt, completion, label)")
        if not isinstance(row.get("label"), bool):
            raise UserError(f"{path}:{line}: field 'label' must be true or false (got {row.get('label')!r})")
        out.append(UnpairedExample(row["prompt"], row["completion"], row["label"], line))
    return out


def load_unpaired(path: str):
    """-> (examples, files, info) like the pair readers, for the train split."""
    examples = read_unpaired(path)
    n_pos = sum(e.label for e in examples)
    if not n_pos or n_pos == len(examples):
        raise UserError(f"{path}: KTO needs both desirable (label true) and undesirable (label false) examples "
                        f"(found {n_pos} true, {len(examples) - n_pos} false)")
    info = {"split": f"{os.path.basename(path)} as given (unpaired)", "desirable": n_pos,
            "undesirable": len(examples) - n_pos}
    return examples, {os.path.abspath(path): sha256_file(path)}, info


def unpair(tok_pairs, labels=None) -> list:
    """Tokenised items -> TRL unpaired rows (prompt, completion, label). Pairs give two rows each
    (chosen: true, rejected: false); unpaired items (rejected None) one row with their label."""
    rows = []
    for i, p in enumerate(tok_pairs):
        if p.rejected is None:
            rows.append({"prompt": p.prompt, "completion": p.chosen, "label": bool(labels[i])})
        else:
            rows.append({"prompt": p.prompt, "completion": p.chosen, "label": True})
            rows.append({"prompt": p.prompt, "completion": p.rejected, "label": False})
    return rows
