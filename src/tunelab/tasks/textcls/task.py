"""``text-classification``: the user's own sentence / sentence-pair data, as HF's ``run_glue.py`` reads it.

- data: ``--train-file`` / ``--validation-file`` / ``--test-file`` (CSV, TSV, JSON / JSONL, Parquet) or
  ``--dataset`` (a save_to_disk folder, a folder of data files, a hub id) with split names
  (tasks/datafiles.py). No validation data: a seeded (0) ``--eval-fraction`` of train, stratified by
  label where every class has two rows, recorded in run.json ``data_notes``. Validation decides the
  best epoch and early stopping; a test split is evaluated alongside as ``test_*`` and never decides.
- columns: ``--text-column`` [``--text-pair-column``] ``--label-column``, else detected: the pairs
  sentence1+sentence2, question1+question2, premise+hypothesis, question+sentence, text+text_pair, then
  a single text, sentence, content, review, document or question column; label, labels, score, target,
  class, category or topic.
- labels: strings, integers or ``ClassLabel`` ids -> single-label classification; the classes are the
  ``ClassLabel`` names, else the train split's distinct values sorted (integers numerically), mapped
  once, stored as ``id2label`` / ``label2id`` in the model config (config.json; written beside a PEFT
  adapter too) and run.json, and named in predictions.tsv. Float labels -> regression (one output, MSE;
  Pearson / Spearman). List labels (or a ``Sequence(ClassLabel)``) -> multi-label (one sigmoid per
  class, BCE; micro / macro F1, exact-match accuracy; a class is predicted at p > 0.5).
- metrics (scikit-learn / scipy, metrics/classification.py): binary ``accuracy, f1, mcc`` (f1 of class
  id 1, the second class in sorted order; run.json says which), multi-class ``accuracy, macro_f1, mcc``,
  regression ``pearson, spearman``, multi-label ``micro_f1, macro_f1, accuracy``; the first decides.
- encoding, collation and decoding are ``TextClassificationTask``'s (tasks/supervised.py, as GLUE's).
"""

import copy
import os
import sys

import numpy as np

from ...errors import UserError
from ...metrics import Metric, register
from ...models.heads import Head, register_head
from .. import TASKS
from ..base import Example, Split
from ..datafiles import DATA_OPTIONS, EXTENSIONS, check_options, hold_out, load_user_splits
from ..supervised import TextClassificationTask

PAIRS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"), ("question", "sentence"),
         ("text", "text_pair"))
SINGLES = ("text", "sentence", "content", "review", "document", "question")
LABELS = ("label", "labels", "score", "target", "class", "category", "topic")


def _micro_f1(p, r):
    from sklearn.metrics import f1_score

    return float(f1_score(np.asarray(r), np.asarray(p), average="micro"))


register(Metric("micro_f1", _micro_f1, True, True, "F1 over all (example, class) decisions (multi-label)"))
register_head(Head("multi-label", "AutoModelForSequenceClassification", "SEQ_CLS",
                   lambda n: {"num_labels": n, "problem_type": "multi_label_classification"},
                   description="one sigmoid per class (BCE loss): multi-label classification"))


class _FromData:
    """An attribute ``_read`` sets from the run's data, read on first use: a configured task reads its
    files when the run first needs them (``load``, the head, the metrics ...); a finished run's task
    (``tunelab predict`` / ``export``) gets them from run.json (``restore``) and never reads the data
    files (which may be gone or large). Unconfigured (the registry's prototype): the class default."""

    def __init__(self, default):
        self.default = default

    def __set_name__(self, owner, name):
        self.key = "_data_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.default
        d = obj.__dict__
        if self.key not in d:
            if getattr(obj, "cfg", None) is None:
                return self.default
            obj._read(obj.cfg)
        return d[self.key]

    def __set__(self, obj, value):
        obj.__dict__[self.key] = value


DATA_ATTRS = ("splits", "kind", "id2label", "record", "eval_splits", "head", "num_labels", "metric_names")


class UserTextClassification(TextClassificationTask):
    """Any sentence / sentence-pair classification (or regression, or multi-label) data of the user's."""

    name = "text-classification"
    family = "textcls"
    description = "your own sentence / pair classification data (--train-file ... or --dataset)"
    shared_options = ("max_seq_length", "eval_fraction", "text_column", "label_column") + DATA_OPTIONS
    # set by _read from the data (or by restore from run.json): see _FromData
    metric_names = _FromData(("accuracy", "macro_f1", "mcc"))
    eval_splits = _FromData(("validation",))
    head = _FromData("classification")
    num_labels = _FromData(2)
    kind = _FromData("single")  # single | regression | multi
    id2label = _FromData([])
    splits = _FromData({})  # split -> Split
    record = _FromData({})

    def __init__(self):
        self.cfg = None

    def configure(self, cfg) -> "UserTextClassification":
        t = copy.copy(self)
        t.cfg = cfg
        for a in DATA_ATTRS:
            t.__dict__.pop("_data_" + a, None)
        return t

    def validate(self, cfg) -> None:
        """The data options (before anything is read); not on a finished run's reload (predict / export)."""
        super().validate(cfg)
        check_options(cfg, self.name)

    # ------------------------------------------------------------ data
    def _read(self, cfg) -> None:
        self.splits = {}
        data = load_user_splits(cfg)
        train = data.splits["train"]
        cols = train.column_names
        text, pair, label = self._columns(cfg, cols, data.sources["train"])
        need = [c for c in (text, pair, label) if c]
        data.require_columns(need, {text: "text_column", label: "label_column", **({pair: "text_pair_column"} if pair else {})})
        feature = train.features[label]
        kind, names = self._label_space(feature, train[label], data, label)
        held = None
        if "validation" not in data.splits:
            stratify = (lambda r: _key(r[label])) if kind == "single" else None
            held = hold_out(data, cfg.eval_fraction, seed=0, label=stratify)
        label2id = {n: i for i, n in enumerate(names)}
        for split, ds in data.splits.items():
            examples = []
            texts = ds[text]
            ids = _classlabel_names(ds.features[label])
            seconds = ds[pair] if pair else None
            lines = data.lines.get(split) or [0] * len(ds)
            for i, (t1, y) in enumerate(zip(texts, ds[label])):
                where = _At(data, split, i)  # file:line, formatted only in an error
                parts = (t1,) if seconds is None else (t1, seconds[i])
                for c, v in zip((text, pair), parts):
                    if not isinstance(v, str) or not v.strip():
                        raise UserError(f"{where}: empty text in column {c!r}")
                examples.append(Example(texts=parts, label=self._encode_label(y, kind, label2id, names, where, label, ids),
                                        line=lines[i]))
            self.splits[split] = Split(split, examples, data.files_of(split),
                                       {**data.info_of(split), "columns": {"text": text, "text_pair": pair, "label": label}})
        if kind == "single" and len(names) < 2:
            raise UserError(f"{data.sources['train']}: column {label!r} has one class ({names[0]!r}); "
                            "classification needs at least 2")
        self._set_space(kind, names)
        self.eval_splits = ("validation", "test") if "test" in self.splits else ("validation",)
        self.record = {"kind": {"single": "single-label", "regression": "regression", "multi": "multi-label"}[kind],
                       "columns": {"text": text, "text_pair": pair, "label": label},
                       "id2label": {str(i): n for i, n in enumerate(names)} if kind != "regression" else None}
        if kind == "single" and len(names) == 2:
            self.record["f1_positive_class"] = names[1]
        if held is not None:
            self.record["validation_held_out"] = held
            hint = " (--validation-split test to validate on the test split)" if "test" in data.splits else ""
            print(f"[text-classification] no validation data: {held['sizes']['validation']} of {len(train)} train rows "
                  f"held out (seed 0, {'stratified' if held['stratified'] else 'not stratified'}){hint}", file=sys.stderr)

    def _set_space(self, kind: str, names: list) -> None:
        """kind, class names and what follows from them: the head, its outputs, the metrics."""
        self.kind, self.id2label = kind, list(names)
        if kind == "regression":
            self.head, self.num_labels, self.metric_names = "regression", 1, ("pearson", "spearman")
        elif kind == "multi":
            self.head, self.num_labels, self.metric_names = "multi-label", len(names), ("micro_f1", "macro_f1", "accuracy")
        else:
            self.head, self.num_labels = "classification", len(names)
            self.metric_names = ("accuracy", "f1", "mcc") if len(names) == 2 else ("accuracy", "macro_f1", "mcc")

    def _columns(self, cfg, cols, source):
        text, pair, label = cfg.text_column, getattr(cfg, "text_pair_column", None), cfg.label_column
        if text is None:
            found = next(((a, b) for a, b in PAIRS if a in cols and b in cols), None)
            if found and pair is None:
                text, pair = found
            else:
                text = next((c for c in SINGLES if c in cols), None)
            if text is None:
                raise UserError(f"{source}: no text column found (looked for {', '.join(SINGLES)}); name it with "
                                f"--text-column (columns: {', '.join(cols)})")
        if label is None:
            label = next((c for c in LABELS if c in cols), None)
            if label is None:
                raise UserError(f"{source}: no label column found (looked for {', '.join(LABELS)}); name it with "
                                f"--label-column (columns: {', '.join(cols)})")
        return text, pair, label

    @staticmethod
    def _label_space(feature, values, data, col):
        """(kind, class names) from the train split's label feature and values."""
        import datasets

        if isinstance(feature, datasets.ClassLabel):
            return "single", list(feature.names)
        inner = feature[0] if isinstance(feature, list) and feature else getattr(feature, "feature", None)
        if inner is not None:  # a list feature (List / Sequence / [feature]): multi-label
            if isinstance(inner, datasets.ClassLabel):
                return "multi", list(inner.names)
            seen = set()
            for i, v in enumerate(values):
                if v is None:
                    raise UserError(f"{data.where('train', i)}: empty label list in column {col!r}")
                seen.update(_key(x) for x in v)
            return "multi", _sorted_names(seen)
        dtype = getattr(feature, "dtype", "")
        if str(dtype).startswith("float"):
            return "regression", []
        seen = set()
        for i, v in enumerate(values):
            if v is None or (isinstance(v, str) and not v.strip()):
                raise UserError(f"{data.where('train', i)}: empty label in column {col!r}")
            seen.add(_key(v))
        return "single", _sorted_names(seen)

    @staticmethod
    def _encode_label(y, kind, label2id, names, where, col, ids=None):
        """One row's label as the model's target; ``ids``: the split's ClassLabel names (its values are ids)."""
        if kind == "regression":
            try:
                v = float(y)
            except (TypeError, ValueError):
                raise UserError(f"{where}: label {y!r} in column {col!r} is not a number") from None
            if not np.isfinite(v):
                raise UserError(f"{where}: label {y!r} in column {col!r} is not a finite number")
            return v
        if kind == "multi":
            if not isinstance(y, (list, tuple)):
                raise UserError(f"{where}: expected a list of labels in column {col!r}, found {y!r}")
            hot = [0.0] * len(names)
            for x in y:
                name = _key(x if ids is None else _id_name(x, ids, where, col))
                if name not in label2id:
                    raise UserError(f"{where}: label {x!r} in column {col!r} is not one of the train split's labels "
                                    f"({', '.join(names)})")
                hot[label2id[name]] = 1.0
            return hot
        if y is None or (isinstance(y, str) and not y.strip()):
            raise UserError(f"{where}: empty label in column {col!r}")
        name = _key(y if ids is None else _id_name(y, ids, where, col))
        if name not in label2id:
            raise UserError(f"{where}: label {y!r} in column {col!r} does not occur in the train split (labels: "
                            f"{', '.join(names)})")
        return label2id[name]

    def load(self, split: str, data_dir: str | None) -> Split:
        if split not in self.splits:
            raise UserError(f"task {self.name} has no split {split!r}")
        return self.splits[split]

    # ------------------------------------------------------------ model, decoding, output
    def load_model(self, name: str, allow_pickle: bool = False):
        model, processor, layout, source = super().load_model(name, allow_pickle)
        if self.kind != "regression":
            model.config.id2label = {i: n for i, n in enumerate(self.id2label)}
            model.config.label2id = {n: i for i, n in enumerate(self.id2label)}
        return model, processor, layout, source

    def decode(self, outputs, batch) -> list:
        if self.kind != "multi":
            return super().decode(outputs, batch)
        return (outputs.logits.float().cpu() > 0).int().tolist()  # sigmoid(z) > 0.5

    def references(self, batch) -> list:
        refs = batch["labels"]
        return refs.int().tolist() if self.kind == "multi" else refs.tolist()

    def after_fit(self, ctx, summary, before) -> dict:
        from ...train import distributed

        model = ctx.model
        if hasattr(model, "peft_config") and ctx.out_dir and distributed.is_main():
            model.config.save_pretrained(ctx.out_dir)  # a PEFT adapter has no config.json: id2label goes beside it
        return {"text_classification": self.record}

    def prediction_text(self, v) -> str:
        if self.kind == "regression":
            return f"{v:.6g}"
        if self.kind == "multi":
            return ",".join(n for n, on in zip(self.id2label, v) if on)
        return self.id2label[v]

    # ------------------------------------------------------------ tunelab predict / export (predict.py)
    def restore(self, record: dict) -> None:
        """The label space and columns from run.json's ``text_classification``: predict and export need
        neither the training files nor a pass over them. An older run.json without it: read on use."""
        tc = record.get("text_classification") or {}
        kinds = {"single-label": "single", "regression": "regression", "multi-label": "multi"}
        if tc.get("kind") not in kinds or not tc.get("columns"):
            return
        kind = kinds[tc["kind"]]
        id2label = tc.get("id2label") or {}
        self.splits = {}
        self._set_space(kind, [id2label[k] for k in sorted(id2label, key=int)])
        self.eval_splits = ("validation",)
        self.record = dict(tc)

    def label_names(self) -> list | None:
        return None if self.kind == "regression" else list(self.id2label)

    @property
    def text_fields(self) -> int:
        """Strings per input: 2 when the run trained on pairs (``--text "FIRST<TAB>SECOND"``)."""
        return 2 if (self.record.get("columns") or {}).get("text_pair") else 1

    def read_inputs(self, path: str, cfg) -> list:
        """A data file of the kinds the run trains on (CSV / TSV / JSON / JSONL / Parquet) with the run's
        text column(s) (run.json ``text_classification.columns``); its label column, if any, is ignored."""
        from ..datafiles import _quiet, read_file

        if os.path.isdir(path):
            raise UserError(f"--input {path}: a folder; task {self.name} reads one data file "
                            f"({', '.join(sorted(EXTENSIONS))})")
        cols = self.record.get("columns") or {}
        text, pair = cols.get("text"), cols.get("text_pair")
        _quiet()  # no progress bars from datasets: stdout may be the JSONL
        ds, lines = read_file(path, "input")
        for c in (text, pair):
            if c and c not in ds.column_names:
                wanted = f"{text!r}" + (f" and {pair!r}" if pair else "")
                raise UserError(f"--input {path}: no column {c!r} (the run trained on column(s) {wanted}); "
                                f"columns: {', '.join(ds.column_names)}")
        firsts = ds[text]
        seconds = ds[pair] if pair else None
        out = []
        for i, t1 in enumerate(firsts):
            parts = (t1,) if seconds is None else (t1, seconds[i])
            where = f"{path}:{lines[i]}" if lines else f"{path} row {i}"
            for c, v in zip((text, pair), parts):
                if not isinstance(v, str) or not v.strip():
                    raise UserError(f"{where}: empty text in column {c!r}")
            out.append(Example(texts=parts, label=None, line=lines[i] if lines else 0))
        return out

    def predict_inputs(self, model, processor, inputs, cfg, device, batch_size, progress=None):
        """single-label: label, label_id, every label's probability (softmax); regression: score;
        multi-label: labels (those with sigmoid > 0.5, as predictions.tsv) and every label's probability."""
        if self.kind != "multi":
            yield from super().predict_inputs(model, processor, inputs, cfg, device, batch_size, progress)
            return
        import torch

        from ..base import progress_bar

        collate, names = self.collator(processor), list(self.id2label)
        bar = progress_bar(len(inputs), f"predict {self.name}", progress)
        for b in range(0, len(inputs), batch_size):
            chunk = [Example(texts=e.texts, label=0, line=e.line) for e in inputs[b:b + batch_size]]
            rows = self.encode(chunk, processor, cfg)
            for r in rows:
                r.pop("labels", None)
            batch = collate(rows)
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
            for z, p in zip(logits.tolist(), torch.sigmoid(logits).tolist()):
                yield {"labels": [n for n, v in zip(names, z) if v > 0], "probabilities": dict(zip(names, p))}
            bar.update(len(chunk))
        bar.close()


class _At:
    """Where row ``i`` of ``split`` is (``UserData.where``), computed when an error message formats it."""

    def __init__(self, data, split, i):
        self.data, self.split, self.i = data, split, i

    def __str__(self):
        return self.data.where(self.split, self.i)


def _key(v):
    """A label value as the class name it stands for (strings stripped, integral numbers as ints)."""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _sorted_names(seen) -> list:
    """Class names in a stable order: numerically when they are all integers, else as strings."""
    try:
        return sorted(seen, key=int)
    except ValueError:
        return sorted(seen)


def _classlabel_names(feature):
    """The names of a ClassLabel (or a sequence of ClassLabel) feature; None for plain values."""
    import datasets

    inner = feature if isinstance(feature, datasets.ClassLabel) else getattr(feature, "feature", None)
    if isinstance(feature, list) and feature:
        inner = feature[0]
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _id_name(x, names, where, col) -> str:
    if not isinstance(x, (int, np.integer)) or not 0 <= x < len(names):
        raise UserError(f"{where}: label {x!r} in column {col!r} is not a ClassLabel id (0..{len(names) - 1})")
    return names[x]


TASKS.add("text-classification", UserTextClassification())
