"""The fake family's one task: label 1 when a generated text contains the word 'good'. It implements
the SupervisedTask hooks (encode, collate, decode), a lower-is-better metric, its own prediction file
and the fit hooks ``before_fit`` / ``after_fit`` (extra run.json keys), never ``fit`` itself."""

import random

import torch

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

    # the fit hooks: an evaluation before training, run.json keys after it
    def before_fit(self, ctx, evaluate):
        metrics, _ = evaluate(ctx.model)
        return metrics

    def after_fit(self, ctx, summary, before):
        return {"toy": {"before_training": before, "positive_share": sum(e.label for e in ctx.train_examples)
                        / len(ctx.train_examples)}}

    def write_predictions(self, path, predictions):
        with open(path, "w", encoding="utf-8") as f:
            f.write("split\ttext\tlabel\tprediction\n")
            for split, pr in predictions.items():
                for ex, r, p in zip(pr.examples, pr.references, pr.predictions):
                    f.write(f"{split}\t{ex.texts[0]}\t{r}\t{p}\n")
