"""``SupervisedTask``: the contract's ``fit`` for every family trained with tunelab's loop.

A family implements four hooks and gets batching (optionally length-grouped), evaluation on every
eval split after every epoch, early stopping in the main metric's direction and the run summary:

- ``encode(examples, processor, cfg) -> rows`` (dicts of lists/arrays, with ``labels``);
- ``collator(processor)`` -> a callable turning rows into a batch of tensors (``input_ids``,
  ``input_features`` or ``pixel_values`` ... the model's keyword arguments, plus ``labels``);
- ``decode(outputs, batch) -> predictions`` (argmax, span decoding; a family that decodes with
  ``generate`` overrides ``predict``);
- ``metrics(predictions, references)`` (registered metrics by default).

``loss(model, batch)`` is the model's own loss unless the family overrides it. ``length(row)``
(tokens) lets ``--group-by-length`` (on by default for these families) batch similar lengths;
return None where it means nothing: such rows keep plain shuffled batches.

``caches_activations = True`` lets the frozen-prefix activation cache (train/activation_cache.py)
replay this family's batches: set it only when a row's model inputs are a deterministic function of
the row (no random augmentation), the collated batch has an ``attention_mask`` marking exactly
``length(row)`` positions per row, and ``loss`` / ``predict`` call the model once per batch with
keyword arguments. Default off: a family that does not say so never uses the cache.
"""

from abc import abstractmethod
from dataclasses import dataclass

import torch

from .base import FitSummary, Task


@dataclass
class Prediction:
    """One split's predictions as the default writer prints them."""

    predictions: list
    references: list
    examples: list


class SupervisedTask(Task):
    caches_activations = False  # see the module docstring
    resumable = True  # train.loop.train checkpoints and resumes
    data_parallel = True  # build_data shards batches and evaluation; a family with its own batching says False

    def validate(self, cfg) -> None:
        """``--precision`` against ``--device`` (fp16 needs CUDA, bf16 a device that has it)."""
        from ..train.precision import resolve_precision

        resolve_precision(cfg.precision, cfg.device)

    def option_defaults(self, method) -> dict:
        """Length-grouped batches by default (``--no-group-by-length`` for plain shuffled ones): the
        same examples with less padding. A family overriding this should start from ``super()``'s."""
        return {"group_by_length": True, **super().option_defaults(method)}

    # ------------------------------------------------------------ hooks
    @abstractmethod
    def encode(self, examples: list, processor, cfg) -> list:
        """Examples -> model-input rows (one per example, in order), each with ``labels``."""

    @abstractmethod
    def collator(self, processor):
        """rows -> batch (dict of tensors)."""

    @abstractmethod
    def decode(self, outputs, batch) -> list:
        """Model outputs of one batch -> one prediction per example."""

    def length(self, row) -> int | None:
        ids = row.get("input_ids") if isinstance(row, dict) else None
        return None if ids is None else len(ids)

    def loss(self, model, batch):
        return model(**batch).loss

    def references(self, batch) -> list:
        return batch["labels"].tolist()

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self, model, loader, device) -> tuple:
        """(predictions, references) over one eval loader."""
        model.eval()
        preds, refs = [], []
        for batch in loader:
            labels = batch.pop("labels")
            out = model(**{k: v.to(device, non_blocking=True) for k, v in batch.items()})
            preds.extend(self.decode(out, batch))
            refs.extend(self.references({"labels": labels}))
        return preds, refs

    def split_prefix(self, index: int, split) -> str:
        """Metric-key prefix of an eval split: none for the first (reported) one."""
        return "" if index == 0 else split.name.replace("validation_", "") + "_"

    # ------------------------------------------------------------ the contract
    def build_data(self, ctx):
        """(train loader, evaluate(model) -> (metrics, predictions)). The train loader is a
        ``CachedLoader``: with the activation cache off it is the plain ``DataLoader`` inside."""
        from ..train import distributed
        from ..train.activation_cache import ActivationCache, CachedLoader, IndexedCollate, IndexedRows, log, plan
        from ..train.batching import LengthGroupedBatches, length_order, unsort

        cfg = ctx.cfg
        collate = self.collator(ctx.processor)
        gen = torch.Generator().manual_seed(cfg.seed)
        pin = torch.device(ctx.device).type == "cuda"  # page-locked batches: asynchronous host-to-GPU copies
        train_rows = self.encode(ctx.train_examples, ctx.processor, cfg)
        lengths = [self.length(r) for r in train_rows]
        by_length = cfg.group_by_length and None not in lengths
        p = plan(ctx.model, ctx.method, ctx.layout, cfg, self.caches_activations)
        if p.on and None in lengths:
            p.on, p.why = False, "the task's rows have no length"
        if p.on and distributed.is_distributed():
            p.on, p.why = False, "data-parallel run: each process holds a shard of every batch"
            if distributed.is_main():
                log(f"off ({p.why})")
        cache = ActivationCache(ctx.model, ctx.layout, p, cfg, ctx.device, ctx.out_dir)
        if p.follows_method:
            cache.follow(ctx.method.frozen_for_good)
        indexed = cache.on
        data, batch_collate = (IndexedRows(train_rows), IndexedCollate(collate)) if indexed else (train_rows, collate)
        if by_length:  # train/batching.py: same examples, less padding
            sampler = LengthGroupedBatches(lengths, cfg.batch_size, gen)
            base = torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=batch_collate, pin_memory=pin)
        else:
            base = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                                               collate_fn=batch_collate, pin_memory=pin)
        base = distributed.shard_train_loader(base, len(train_rows), cfg.batch_size)  # data-parallel: this rank's share
        if indexed:
            cache.add_split("train", train_rows, collate, lengths, cfg.eval_batch_size)
        train_loader = CachedLoader(cache, "train", base, indexed=indexed)
        eval_loaders = []
        for s in ctx.eval_splits:
            rows = self.encode(s.examples, ctx.processor, cfg)
            order = length_order([self.length(r) for r in rows]) if by_length else None
            rows = [rows[i] for i in order] if order else rows
            if indexed:
                cache.add_split(s.name, rows, collate, [self.length(r) for r in rows], cfg.eval_batch_size)
                loader = CachedLoader(cache, s.name, torch.utils.data.DataLoader(
                    IndexedRows(rows), batch_size=cfg.eval_batch_size, collate_fn=IndexedCollate(collate), pin_memory=pin))
            else:
                loader = torch.utils.data.DataLoader(distributed.shard(rows), batch_size=cfg.eval_batch_size,
                                                     collate_fn=collate, pin_memory=pin)
            eval_loaders.append((s, loader, order))

        def evaluate(model):
            metrics, preds = {}, {}
            for i, (split, loader, order) in enumerate(eval_loaders):
                p, r = self.predict(model, loader, ctx.device)
                p, r = distributed.gather_shards(p), distributed.gather_shards(r)  # data-parallel: every rank, all rows
                if order:
                    p, r = unsort(p, order), unsort(r, order)
                prefix = self.split_prefix(i, split)
                metrics.update({prefix + k: v for k, v in self.metrics(p, r).items()})
                preds[split.name] = Prediction(p, r, split.examples)
            return metrics, preds

        return train_loader, evaluate

    def fit(self, ctx) -> FitSummary:
        """build_data -> ``before_fit`` -> ``train_model`` -> ``after_fit`` (tasks/base.py hooks)."""
        from ..train.activation_cache import CachedLoader

        train_loader, evaluate = self.build_data(ctx)
        cache = train_loader.cache if isinstance(train_loader, CachedLoader) else None
        try:
            before = self.before_fit(ctx, evaluate)
            summary = self.train_model(ctx, train_loader, evaluate)
        finally:
            if cache is not None:
                cache.close()
        summary.record["activation_cache"] = (cache.record() if cache is not None else
                                              {"on": False, "why": "the task builds its own batches (build_data)"})
        summary.record.update(self.after_fit(ctx, summary, before) or {})
        return summary

    def train_model(self, ctx, train_loader, evaluate) -> FitSummary:
        """Training proper: the loop with the family's ``loss`` (image self-training adds rounds)."""
        return self.train_loop(ctx, train_loader, evaluate, loss_fn=self.loss)

    def write_predictions(self, path: str, predictions: dict) -> None:
        name = self.prediction_text
        with open(path, "w", encoding="utf-8") as f:
            f.write("split\tindex\tline\tlabel\tprediction\n")
            for split, pr in predictions.items():
                for i, (pi, ri, ex) in enumerate(zip(pr.predictions, pr.references, pr.examples)):
                    f.write(f"{split}\t{i}\t{getattr(ex, 'line', 0)}\t{name(ri)}\t{name(pi)}\n")

    def prediction_text(self, value) -> str:
        """A label or prediction as predictions.tsv writes it (a family with label names maps them here)."""
        return str(value)


class TextClassificationTask(SupervisedTask):
    """Sentence / sentence-pair tasks with a classification or regression head."""

    caches_activations = True  # tokenised once, padded by DataCollatorWithPadding, one model call per batch

    def encode(self, examples, processor, cfg) -> list:
        firsts = [e.texts[0] for e in examples]
        seconds = [e.texts[1] for e in examples] if len(examples[0].texts) > 1 else None
        enc = processor(firsts, seconds, truncation=True, max_length=cfg.max_seq_length)
        rows = []
        for i, e in enumerate(examples):
            row = {k: enc[k][i] for k in enc.keys()}
            row["labels"] = e.label
            rows.append(row)
        return rows

    def collator(self, processor):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(processor)

    def decode(self, outputs, batch) -> list:
        logits = outputs.logits.float().cpu()
        return logits.squeeze(-1).tolist() if self.head == "regression" else logits.argmax(-1).tolist()

    # ------------------------------------------------------------ tunelab predict
    text_fields = 1  # strings per example: 2 for sentence-pair tasks (--text "first<TAB>second")

    def text_inputs(self, texts, cfg) -> list:
        from ..errors import UserError
        from .base import Example

        out = []
        for i, t in enumerate(texts, 1):
            parts = tuple(t.split("\t")) if self.text_fields > 1 else (t,)
            if len(parts) != self.text_fields:
                raise UserError(f"--text #{i}: task {self.name} takes {self.text_fields} texts per input, "
                                f"separated by a TAB; found {len(parts)}")
            out.append(Example(texts=parts, label=None, line=0))
        return out

    def predict_inputs(self, model, processor, inputs, cfg, device, batch_size, progress=None):
        """Classification: label, label_id and the probability of every label; regression: score."""
        from dataclasses import replace

        from .base import progress_bar

        collate = self.collator(processor)
        names = self.label_names() or [str(i) for i in range(self.num_labels)]
        bar = progress_bar(len(inputs), f"predict {self.name}", progress)
        for b in range(0, len(inputs), batch_size):
            chunk = [replace(e, label=0) for e in inputs[b:b + batch_size]]
            rows = self.encode(chunk, processor, cfg)
            for r in rows:
                r.pop("labels", None)
            batch = collate(rows)
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
            if self.head == "regression":
                for v in logits.squeeze(-1).tolist():
                    yield {"score": v}
            else:
                probs = torch.softmax(logits, -1)
                for p in probs.tolist():
                    k = max(range(len(p)), key=p.__getitem__)
                    yield {"label": names[k], "label_id": k, "probabilities": dict(zip(names, p))}
            bar.update(len(chunk))
        bar.close()

