"""The task protocol the runner relies on."""

import hashlib
from dataclasses import dataclass, field


def sha256_file(path: str) -> str:
    """Hex sha256 of a data file (recorded in run.json ``data``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Example:
    texts: tuple  # one or two strings
    label: object  # int class id or float score
    line: int = 0  # 1-based line in the source file (0 for hub rows)


@dataclass
class Split:
    name: str  # e.g. "validation", "validation_mismatched"
    examples: list
    files: dict = field(default_factory=dict)  # path -> sha256 of files read
    info: dict = field(default_factory=dict)  # how the split was made, rows skipped, ...


@dataclass
class FitContext:
    """What a task that owns its training (``Task.fit``) gets from the runner: a loaded, prepared
    model (the method already decided what trains), the data, and the resolved options."""

    model: object
    tokenizer: object
    method: object  # methods.base.Method (duck-typed: tasks never import methods)
    cfg: object  # RunConfig
    lr: float
    device: object
    train_examples: list
    eval_splits: list  # [Split]
    model_source: str  # resolved folder / hub id of the base model
    out_dir: str
    on_epoch: object = None  # callable(epoch_record, predictions): the runner saves run.json
    train_all: list = field(default_factory=list)  # the whole train split (train_examples is the subsample)


class Task:
    """A task knows its data, its head and its metrics.

    name: registry name; head: 'classification' | 'regression' | 'reward' | 'causal-lm';
    num_labels; metric_names (first = main metric); eval_splits (first = the one reported).
    A task that trains itself (e.g. with TRL) defines ``fit(FitContext) -> summary`` (the same
    summary as ``train.loop.train`` plus optional ``record``: extra run.json keys) and
    ``write_predictions(path, predictions)``; ``defaults`` overrides RunConfig defaults.
    """

    name = ""
    head = "classification"
    num_labels = 2
    metric_names: tuple = ("accuracy",)
    eval_splits: tuple = ("validation",)

    @property
    def main_metric(self) -> str:
        return self.metric_names[0]

    def validate(self, cfg) -> None:
        """Task-specific option checks, run before any data, model or output is touched."""

    def load(self, split: str, data_dir: str | None) -> Split:
        raise NotImplementedError

    def metrics(self, predictions, references) -> dict:
        from .metrics import compute

        return compute(self.metric_names, predictions, references)


class TextClassificationTask(Task):
    """Sentence / sentence-pair tasks with a classification or regression head."""

    def encode(self, examples, tokenizer, max_len: int) -> list:
        firsts = [e.texts[0] for e in examples]
        seconds = [e.texts[1] for e in examples] if len(examples[0].texts) > 1 else None
        enc = tokenizer(firsts, seconds, truncation=True, max_length=max_len)
        rows = []
        for i, e in enumerate(examples):
            row = {k: enc[k][i] for k in enc.keys()}
            row["labels"] = e.label
            rows.append(row)
        return rows

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def predictions_from_logits(self, logits):
        return logits.squeeze(-1).tolist() if self.head == "regression" else logits.argmax(-1).tolist()
