"""The task protocol the runner relies on."""

from dataclasses import dataclass, field


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


class Task:
    """A task knows its data, its head and its metrics.

    name: registry name; head: 'classification' | 'regression' | 'causal-lm';
    num_labels; metric_names (first = main metric); eval_splits (first = the one reported).
    """

    name = ""
    head = "classification"
    num_labels = 2
    metric_names: tuple = ("accuracy",)
    eval_splits: tuple = ("validation",)

    @property
    def main_metric(self) -> str:
        return self.metric_names[0]

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
