"""A task family defined only here plugs into tunelab through the Task contract and trains end to
end: its own data, encoding, collation, decoding, a lower-is-better metric and a prediction file."""

import json
import random

import pytest
import torch

from tunelab.cli import main
from tunelab.metrics import METRICS, Metric, register
from tunelab.tasks import TASKS
from tunelab.tasks.base import Example, Split
from tunelab.tasks.supervised import SupervisedTask

WORDS = ["good", "fine", "film", "plot", "slow", "dull", "actor", "scene", "music", "long"]


def error_rate(preds, refs):
    return sum(p != r for p, r in zip(preds, refs)) / len(refs)


class ContainsGood(SupervisedTask):
    """Label 1 when the text contains the word 'good'."""

    name = "toy-contains-good"
    family = "toy"
    head = "classification"
    num_labels = 2
    metric_names = ("toy_error_rate",)

    def load(self, split, data_dir):
        rng = random.Random({"train": 0, "validation": 1}[split])
        examples = []
        for i in range(64 if split == "train" else 32):
            words = rng.choices(WORDS, k=rng.randint(2, 9))
            examples.append(Example(texts=(" ".join(words),), label=int("good" in words), line=i + 1))
        return Split(split, examples, {f"generated:{split}": "seeded"})

    def encode(self, examples, processor, cfg):
        enc = processor([e.texts[0] for e in examples], truncation=True, max_length=32)
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": e.label}
                for i, e in enumerate(examples)]

    def collator(self, processor):
        def collate(rows):
            n = max(len(r["input_ids"]) for r in rows)
            pad = processor.pad_token_id
            return {"input_ids": torch.tensor([r["input_ids"] + [pad] * (n - len(r["input_ids"])) for r in rows]),
                    "attention_mask": torch.tensor([r["attention_mask"] + [0] * (n - len(r["attention_mask"]))
                                                    for r in rows]),
                    "labels": torch.tensor([r["labels"] for r in rows])}
        return collate

    def decode(self, outputs, batch):
        return outputs.logits.argmax(-1).tolist()

    def write_predictions(self, path, predictions):
        with open(path, "w", encoding="utf-8") as f:
            f.write("split\ttext\tlabel\tprediction\n")
            for split, pr in predictions.items():
                for ex, r, p in zip(pr.examples, pr.references, pr.predictions):
                    f.write(f"{split}\t{ex.texts[0]}\t{r}\t{p}\n")


@pytest.fixture()
def toy_family():
    register(Metric("toy_error_rate", error_rate, higher_is_better=False))
    TASKS.add(ContainsGood.name, ContainsGood())
    yield ContainsGood.name
    TASKS._items.pop(ContainsGood.name)
    METRICS._items.pop("toy_error_rate")


def test_fake_family_trains_end_to_end_through_the_contract(tmp_path, toy_family, capsys):
    out = tmp_path / "toy"
    rc = main(["run", "--task", toy_family, "--method", "lora", "--model", "minilm", "--output-dir", str(out),
               "--epochs", "3", "--batch-size", "16", "--threads", "1", "--group-by-length"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["main_metric"] == "toy_error_rate"
    errors = [h["metrics"]["toy_error_rate"] for h in rec["history"]]
    assert len(errors) == 3 and rec["metrics"]["toy_error_rate"] == errors[-1]
    assert rec["best_epoch"] == 1 + errors.index(min(errors))  # lower is better: the minimum is best
    assert rec["time"]["samples_seen"] == 3 * 64 and rec["data_sizes"] == {"train": 64, "validation": 32}
    lines = (out / "predictions.tsv").read_text().splitlines()
    assert lines[0] == "split\ttext\tlabel\tprediction" and len(lines) == 1 + 32
    labels = [int(line.split("\t")[2]) for line in lines[1:]]
    preds = [int(line.split("\t")[3]) for line in lines[1:]]
    assert error_rate(preds, labels) == pytest.approx(rec["metrics"]["toy_error_rate"])  # an independent count


def test_options_of_other_families_are_rejected_for_the_fake_family(tmp_path, toy_family, capsys):
    rc = main(["run", "--task", toy_family, "--max-seq-length", "64", "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--max-seq-length does not apply" in err and len(err.splitlines()) == 1
