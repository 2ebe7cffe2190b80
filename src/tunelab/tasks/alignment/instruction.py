"""Instruction data in the Stanford Alpaca format: a JSON list (or JSON Lines) of
``{instruction, input, output}``; the prompt is Alpaca's own template, the response is ``output``.

Sources: ``--data-dir`` holding ``alpaca/`` or the Alpaca file(s) themselves
(``alpaca_5000.json``, ``alpaca_data.json``, ``*.jsonl``), or the hub (``tatsu-lab/alpaca``).
The held-out split is a fixed-seed share (``--eval-fraction``), the same for every run seed.
"""

import json
import os

from ...errors import UserError
from ...textio import read_text
from .preference import PairExample, seeded_split, sha256_file

PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
                   "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
FILE_NAMES = ("alpaca_data.json", "alpaca_5000.json", "alpaca.json", "alpaca.jsonl", "train.jsonl", "train.json")


def alpaca_prompt(instruction: str, inp: str = "") -> str:
    return (PROMPT_INPUT if inp.strip() else PROMPT_NO_INPUT).format(instruction=instruction, input=inp)


def find_file(data_dir: str) -> str:
    for folder in (os.path.join(data_dir, "alpaca"), data_dir):
        for name in FILE_NAMES:
            p = os.path.join(folder, name)
            if os.path.isfile(p):
                return p
    raise UserError(f"--data-dir {data_dir}: no Alpaca file (looked for alpaca/ or {', '.join(FILE_NAMES)})")


def read_alpaca(path: str) -> list:
    text = read_text(path, what="Alpaca file")
    rows = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        rows = [(i + 1, r) for i, r in enumerate(data)]  # "line" = 1-based position in the list
    else:
        for i, raw in enumerate(text.split("\n"), start=1):
            if raw.strip():
                try:
                    rows.append((i, json.loads(raw)))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{i}: invalid JSON ({e.msg})") from None
    return rows_to_examples(rows, path)


def rows_to_examples(rows, where: str) -> list:
    out = []
    for line, r in rows:
        if not isinstance(r, dict) or not isinstance(r.get("instruction"), str) or not isinstance(r.get("output"), str):
            raise UserError(f"{where}:{line}: expected an object with string fields 'instruction', 'output' (and 'input')")
        if not r["output"].strip():
            continue
        out.append(PairExample(prompt=alpaca_prompt(r["instruction"], r.get("input") or ""), chosen=r["output"],
                               rejected=None, line=line))
    return out


def load_instructions(split: str, data_dir: str | None, eval_fraction: float):
    """-> (examples, files, info) for split 'train' or 'validation'."""
    if split not in ("train", "validation"):
        raise UserError(f"Alpaca data has no split {split!r} (train, validation)")
    if data_dir:
        path = find_file(data_dir)
        examples, files = read_alpaca(path), {os.path.abspath(path): sha256_file(path)}
    else:
        try:
            import datasets

            datasets.logging.set_verbosity_error()
            ds = datasets.load_dataset("tatsu-lab/alpaca", split="train")
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot load tatsu-lab/alpaca from the hub ({type(e).__name__}); "
                            "pass --data-dir with a local copy (e.g. ../shared/data/alpaca)") from e
        examples = rows_to_examples(((0, r) for r in ds), "hub:tatsu-lab/alpaca")
        files = {"hub:tatsu-lab/alpaca/train": getattr(ds, "_fingerprint", "")}
    tr, ev = seeded_split(len(examples), eval_fraction)
    chosen = [examples[i] for i in (tr if split == "train" else ev)]
    if not chosen:
        raise UserError(f"{next(iter(files))}: no usable instructions for the {split} split")
    return chosen, files, {"split": f"fixed-seed split: {len(tr)} train / {len(ev)} validation ({eval_fraction:g} held out)"}
