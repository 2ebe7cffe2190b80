"""Keyphrase extraction (issue 9; seed 001's "BERT vs SciBERT" system) as token classification.

Tasks: ``inspec``, ``kdd``, ``www`` (the LIAAD copies in ``--data-dir``, e.g. ../shared/data/keyphrase,
else the hub's midas/<name>) and ``keyphrase`` (any folder in the docsutf8/ + keys/ layout, given as
``--data-dir DIR``). One example = one document; the data, label and decoding rules live in
``keyphrase_data.py``, the metrics in ``keyphrase_metrics.py``:

- labels: gold keys matched in the text (lower-cased, Porter-stemmed words), B/I/O over words, the
  first sub-token of each word labelled, the others -100;
- long documents: sliding windows of ``--max-seq-length`` tokens overlapping by ``--doc-stride``;
  a word's label probabilities are averaged over the windows that contain it;
- prediction: argmax spans, scored by their mean P(B)+P(I), deduplicated after stemming, ranked (F1@M);
  the list F1@5 / F1@10 cut continues with the most probable other spans (``data.rank_candidates``), so a
  model that tags fewer than k phrases is still scored on k candidates;
- splits: train / validation / test. Inspec: Hulth's 1000 / 500 / 500; kdd, www and user folders:
  a document-level 70 / 15 / 15 split seeded with SPLIT_SEED (the same for every run, whatever
  ``--seed``); the rule, sizes and id digests are in run.json ``data_notes.train.split``;
- metrics: F1@10 (main, drives early stopping and the best epoch), F1@5, F1@M and P/R@5/10/M on
  validation every epoch; the test split is evaluated at the same time and its numbers carry the
  prefix ``test_`` (``test_f1@10``). run.json ``keyphrase.ceiling`` gives, per evaluated split, the
  share of gold keys absent from their document (no extractor can find them).

Every method applies unchanged. Prompt tuning prepends its virtual tokens to the sequence, so the
loss and the predictions read the last L logits (L = the window's tokens); the window shrinks by the
virtual tokens when the model's position embeddings would otherwise overflow (recorded).
"""

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...errors import UserError
from ...textio import read_tsv_by_split
from ...metrics import Metric, register
from .. import TASKS
from . import options  # noqa: F401  (declares the family's options)
from .. import tagging
from .data import (LABEL2ID, LABELS, decode_spans, encode_windows, find_dataset, load_hub,
                   presence_counts, rank_candidates, read_keyphrase_dir, split_docs)
from .metrics import KS, keyphrase_scores
from ..supervised import Prediction, SupervisedTask



def family_lr(method) -> float | None:
    """Learning rates, by the method's traits, where its own default does not learn this task at small
    budgets (Inspec, 300 abstracts x 2 epochs, validation F1@10; BENCHMARKS.md "Keyphrase extraction"):
    adapters (LoRA) 2e-3 0.000, 5e-3 0.024, 1e-2 0.246; a fixed layer subset (selective top:2) 2e-4
    0.091, 1e-3 0.149; all weights (full FT) 3e-4 0.279, 1e-4 0.126. Others (dynamic layer methods,
    virtual tokens): None, the method's own."""
    if method.trains == "adapters":
        return 1e-2
    if method.trains == "weights" and not method.changes_trainable_set:
        return 1e-3 if method.selects_layers else 3e-4
    return None
SPLIT_SEED = 0  # document-level split of kdd / www / user folders: fixed, so that runs are comparable
METRIC_ORDER = ("f1@10", "f1@5", "f1@M", "p@5", "r@5", "p@10", "r@10", "p@M", "r@M")  # main metric first


def _metric_fn(name):
    return lambda predictions, references: keyphrase_scores(predictions, references)[name]


for _name in METRIC_ORDER:
    _what, _k = _name.split("@")
    register(Metric(_name, _metric_fn(_name), higher_is_better=True, per_example=False,
                    description=f"keyphrase {dict(f1='F1', p='precision', r='recall')[_what]} at "
                                f"{'all predicted' if _k == 'M' else 'top ' + _k}, stemmed exact match, macro over documents"))


@dataclass
class KeyphrasePrediction(Prediction):
    """predictions[i]: ranked phrases of examples[i] (a Doc); references[i]: its gold keys."""

    scores: list = field(default_factory=list)  # scores[i][j]: score of predictions[i][j]
    ranked: list = field(default_factory=list)  # ranked[i]: the @5 / @10 list (argmax phrases, then other spans)
    ranked_scores: list = field(default_factory=list)


token_logits = tagging.token_logits  # the name older callers use


class KeyphraseTask(SupervisedTask):
    data_parallel = True  # train windows sharded per global batch; evaluation sharded by whole document, gathered
    family = "keyphrase"
    shared_options = ("max_seq_length",)  # common options it reads (the sliding window's size)
    head = "token-classification"
    num_labels = len(LABELS)
    metric_names = METRIC_ORDER
    eval_splits = ("validation", "test")
    report_metrics = ("f1@10", "f1@5", "f1@M", "test_f1@10", "test_f1@5", "test_f1@M")  # report/tables.py columns
    defaults = {"max_seq_length": 512, "doc_stride": 128, "batch_size": 16, "eval_batch_size": 32}
    revision = 2  # 2: F1@5 / F1@10 rank candidate spans after the argmax ones (cached compare cells re-run)

    def option_defaults(self, method) -> dict:
        out = super().option_defaults(method)  # the family's defaults + length-grouped batches
        lr = family_lr(method)
        if lr is not None:
            out["lr"] = lr
        return out

    def __init__(self, name: str, dataset: str | None, description: str):
        self.name, self.dataset, self.description = name, dataset, description
        self._data = None  # (data_dir, splits, notes, files) once loaded

    def configure(self, cfg) -> "KeyphraseTask":
        t = copy.copy(self)
        t._data = None
        return t

    def validate(self, cfg) -> None:
        tagging.check_stride(cfg.doc_stride, cfg.max_seq_length)
        if self.dataset is None and not cfg.data_dir:
            raise UserError("--task keyphrase needs --data-dir DIR (a folder with docsutf8/<id>.txt and keys/<id>.key)")

    # ------------------------------------------------------------ data
    def _folder(self, data_dir: str) -> Path:
        if self.dataset is None:
            d = Path(data_dir)
            if not ((d / "docsutf8").is_dir() and (d / "keys").is_dir()):
                raise UserError(f"--data-dir {d}: --task keyphrase needs a folder with docsutf8/<id>.txt and "
                                "keys/<id>.key inside")
            return d
        d = Path(data_dir)
        if not (d / "docsutf8").is_dir() and (d / "keyphrase").is_dir() and not any(
                c.name.lower() == self.dataset.lower() for c in d.iterdir() if c.is_dir()):
            d = d / "keyphrase"  # --data-dir ../shared/data
        return find_dataset(d, self.dataset)

    def _load_all(self, data_dir):
        if self._data is not None and self._data[0] == data_dir:
            return self._data
        split_name = self.dataset or "keyphrase"
        if data_dir:
            folder = self._folder(data_dir).resolve()
            docs, file_hashes = read_keyphrase_dir(folder)
            splits, rule = split_docs(docs, split_name, SPLIT_SEED)
            source = {"folder": str(folder)}
            files = {}
            for s, part in splits.items():
                h = hashlib.sha256()
                for d in part:
                    for p in (d.path, d.key_path):
                        h.update(f"{os.path.relpath(p, folder)}\t{file_hashes[p]}\n".encode())
                files[f"{folder}#{s}"] = h.hexdigest()
            source["files_digest"] = ("run.json data['<folder>#<split>'] = sha256 over the lines "
                                      "'docsutf8/<id>.txt<TAB>sha256' and 'keys/<id>.key<TAB>sha256' of that split")
        else:
            splits, src = load_hub(self.dataset)
            source, files = dict(src), {}
            if set(splits) == {"test"}:  # kdd / www: the whole collection, split here like the local copies
                splits, rule = split_docs(splits["test"], split_name, SPLIT_SEED)
            else:
                rule = {"rule": f"the hub's own train / validation / test files ({src['hub']})",
                        "sizes": {s: len(p) for s, p in splits.items()}}
            for s, part in splits.items():
                if not part:
                    raise UserError(f"{src['hub']}: the {s} split is empty")
                files[f"hf://datasets/{src['hub']}#{s}"] = hashlib.sha256(
                    "\n".join(d.id for d in part).encode()).hexdigest()
        notes = {s: {"documents": len(p), "gold_keys": presence_counts(p)} for s, p in splits.items()}
        notes["train"] = {"source": source, "split": rule, **notes["train"]}
        self._data = (data_dir, splits, notes, files)
        return self._data

    def load(self, split, data_dir):
        from ..base import Split

        _, splits, notes, files = self._load_all(data_dir)
        if split not in splits:
            raise UserError(f"task {self.name} has no split {split!r}")
        return Split(split, list(splits[split]), {k: v for k, v in files.items() if k.endswith("#" + split)},
                     notes[split])

    def load_model(self, name: str, allow_pickle: bool = False):
        out = super().load_model(name, allow_pickle=allow_pickle)
        model = out[0]
        model.config.id2label = dict(enumerate(LABELS))
        model.config.label2id = dict(LABEL2ID)
        return out

    # ------------------------------------------------------------ hooks (rows = windows)
    def encode(self, examples, processor, cfg, window: int | None = None) -> list:
        """Training rows: every window of every document, labels on first sub-tokens."""
        from .data import bio_labels

        tok = getattr(processor, "tokenizer", processor)
        rows = []
        for d in examples:
            labels, _, _ = bio_labels(d.words, d.keys)
            rows += encode_windows(d.words, labels, tok, window or cfg.max_seq_length, cfg.doc_stride)
        return rows

    def collator(self, processor):
        tok = getattr(processor, "tokenizer", processor)
        return tagging.collate(tok.pad_token_id)

    def decode(self, outputs, batch) -> list:
        return torch.softmax(outputs.float(), -1).cpu().numpy()

    def loss(self, model, batch):
        return tagging.token_loss(model, batch)

    def metrics(self, predictions, references, ranked=None) -> dict:
        scores = keyphrase_scores(predictions, references, ranked)
        return {n: scores[n] for n in self.metric_names}

    # ------------------------------------------------------------ windows in, documents out
    def window_tokens(self, model, tokenizer, cfg) -> int:
        return tagging.window_tokens(model, tokenizer, cfg.max_seq_length)

    def predict_docs(self, model, docs, windows_per_doc, collate, batch_size, device) -> KeyphrasePrediction:
        """Ranked phrases of every document from its windows' token probabilities."""
        word_probs = tagging.predict_word_probs(model, windows_per_doc, [len(d.words) for d in docs], collate,
                                                batch_size, device, len(LABELS), LABEL2ID["O"])
        preds, scores, ranked, ranked_scores = [], [], [], []
        for d, wp in zip(docs, word_probs):
            spans = decode_spans(d.words, wp)
            preds.append([s["phrase"] for s in spans])
            scores.append([round(s["score"], 4) for s in spans])
            cands = rank_candidates(d.words, wp, max(KS), spans)
            ranked.append([c["phrase"] for c in cands])
            ranked_scores.append([round(c["score"], 4) for c in cands])
        return KeyphrasePrediction(preds, [list(d.keys) for d in docs], list(docs), scores, ranked, ranked_scores)

    def build_data(self, ctx):
        from ...train import distributed
        from ...train.batching import LengthGroupedBatches

        cfg, tok = ctx.cfg, ctx.tokenizer
        window = self.window_tokens(ctx.model, tok, cfg)
        if window < cfg.max_seq_length:
            print(f"keyphrase: windows of {window} tokens (--max-seq-length {cfg.max_seq_length} + virtual tokens "
                  f"would exceed the model's positions)")
        self._window = window
        collate = self.collator(ctx.processor)
        train_rows = self.encode(ctx.train_examples, ctx.processor, cfg, window)
        gen = torch.Generator().manual_seed(cfg.seed)
        if cfg.group_by_length:
            sampler = LengthGroupedBatches([len(r["input_ids"]) for r in train_rows], cfg.batch_size, gen)
            train_loader = torch.utils.data.DataLoader(train_rows, batch_sampler=sampler, collate_fn=collate)
        else:
            train_loader = torch.utils.data.DataLoader(train_rows, batch_size=cfg.batch_size, shuffle=True,
                                                       generator=gen, collate_fn=collate)
        train_loader = distributed.shard_train_loader(train_loader, len(train_rows), cfg.batch_size)
        evals = []
        for s in ctx.eval_splits:
            wins = [encode_windows(d.words, None, tok, window, cfg.doc_stride) for d in s.examples]
            evals.append((s, wins))
        self._record = {"keyphrase": {
            "window_tokens": window, "doc_stride": cfg.doc_stride,
            "windows": {"train": len(train_rows), **{s.name: sum(map(len, w)) for s, w in evals}},
            "documents": {"train": len(ctx.train_examples), **{s.name: len(s.examples) for s, _ in evals}},
            "ceiling": {s.name: presence_counts(s.examples) for s, _ in evals},
            "labels": list(LABELS),
            "metrics_split": f"metrics without prefix: {ctx.eval_splits[0].name}; test_*: test",
        }}

        def evaluate(model):
            metrics, preds = {}, {}
            for i, (split, wins) in enumerate(evals):
                # data-parallel: each rank decodes whole documents (rows r, r+W, ...: a document's windows
                # stay together, the metric is per document), then every rank gathers them in order
                pr = self.predict_docs(model, distributed.shard(split.examples), distributed.shard(wins), collate,
                                       cfg.eval_batch_size, ctx.device)
                if distributed.is_distributed():
                    pr = KeyphrasePrediction(distributed.gather_shards(pr.predictions), [list(d.keys) for d in
                                             split.examples], list(split.examples), distributed.gather_shards(pr.scores),
                                             distributed.gather_shards(pr.ranked),
                                             distributed.gather_shards(pr.ranked_scores))
                prefix = self.split_prefix(i, split)
                metrics.update({prefix + k: v for k, v in
                                self.metrics(pr.predictions, pr.references, pr.ranked).items()})
                preds[split.name] = pr
            return metrics, preds

        return train_loader, evaluate

    def after_fit(self, ctx, summary, before) -> dict:
        return self._record  # windows, documents, the ceiling (set by build_data)

    # ------------------------------------------------------------ tunelab predict
    def label_names(self) -> list:
        return list(LABELS)

    def read_inputs(self, path, cfg) -> list:
        """Documents: a dataset folder (docsutf8/<id>.txt; keys/ not needed), a folder of .txt files
        or one .txt file; ids are the file names' stems, in sorted order."""
        from .data import Doc, _read_utf8, tokenize_words

        p = Path(path)
        files = [p] if p.is_file() else sorted((p / "docsutf8" if (p / "docsutf8").is_dir() else p).glob("*.txt"))
        if not files:
            raise UserError(f"--input {path}: no .txt documents (a docsutf8/ folder, a folder of .txt files or one file)")
        docs = []
        for f in files:
            text = _read_utf8(f)
            if not tokenize_words(text):
                raise UserError(f"{f}: empty document")
            docs.append(Doc(id=f.stem, text=text, keys=[], path=str(f), words=tokenize_words(text)))
        return docs

    def text_inputs(self, texts, cfg) -> list:
        from .data import Doc, tokenize_words

        for i, t in enumerate(texts, 1):
            if not tokenize_words(t):
                raise UserError(f"--text #{i}: no words in it")
        return [Doc(id=str(i), text=t, keys=[], words=tokenize_words(t)) for i, t in enumerate(texts)]

    def predict_inputs(self, model, processor, inputs, cfg, device, batch_size, progress=None):
        """Ranked keyphrases (best first) with their scores, per document: the evaluation's decoding
        (sliding windows of the run's size, word probabilities merged, spans ranked)."""
        from ..base import progress_bar

        tok = getattr(processor, "tokenizer", processor)
        window, collate = self.window_tokens(model, tok, cfg), self.collator(processor)
        bar = progress_bar(len(inputs), f"predict {self.name}", progress)
        group = 256  # documents decoded together (windows length-sorted across them, as in evaluation)
        for b in range(0, len(inputs), group):
            docs = inputs[b:b + group]
            wins = [encode_windows(d.words, None, tok, window, cfg.doc_stride) for d in docs]
            pr = self.predict_docs(model, docs, wins, collate, batch_size, device)
            for d, phrases, scores in zip(docs, pr.predictions, pr.scores):
                yield {"id": d.id, "keyphrases": phrases, "scores": scores}
            bar.update(len(docs))
        bar.close()

    def write_predictions(self, path: str, predictions: dict) -> None:
        """One row per document: split, doc_id, gold_keys, predicted_keys (the argmax phrases, ranked, best
        first: F1@M) and their scores, ranked_keys (the list F1@5 / F1@10 cut: those phrases, then the most
        probable other spans) and their scores; the lists as JSON arrays (keys may contain ';' or ',')."""
        with open(path, "w", encoding="utf-8") as f:
            f.write("split\tdoc_id\tgold_keys\tpredicted_keys\tscores\tranked_keys\tranked_scores\n")
            for split, pr in predictions.items():
                for doc, gold, pred, sc, rk, rs in zip(pr.examples, pr.references, pr.predictions, pr.scores,
                                                       pr.ranked, pr.ranked_scores):
                    f.write("\t".join([split, doc.id, json.dumps(gold, ensure_ascii=False),
                                       json.dumps(pred, ensure_ascii=False), json.dumps(sc),
                                       json.dumps(rk, ensure_ascii=False), json.dumps(rs)]) + "\n")


def read_predictions(path: str) -> dict:
    """predictions.tsv -> {split: [(doc_id, gold keys, ranked predicted keys)]} (for reports and checks)."""
    return read_tsv_by_split(path, ["doc_id", ("gold_keys", json.loads), ("predicted_keys", json.loads)])


def read_ranked(path: str) -> dict:
    """predictions.tsv -> {split: [the ranked list F1@5 / F1@10 cut, per document]} (files written before
    the ranked_keys column: the predicted keys, which were that list then)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            out.setdefault(row["split"], []).append(json.loads(row.get("ranked_keys", row["predicted_keys"])))
    return out


for _task in (KeyphraseTask("inspec", "inspec", "Inspec: 2000 CS journal abstracts (Hulth 2003), 1000/500/500"),
              KeyphraseTask("kdd", "kdd", "KDD: 755 ACM KDD abstracts, author keywords; seeded 70/15/15 split"),
              KeyphraseTask("www", "www", "WWW: 1330 WWW conference abstracts, author keywords; seeded 70/15/15 split"),
              KeyphraseTask("keyphrase", None, "any docsutf8/ + keys/ folder (--data-dir); seeded 70/15/15 split")):
    TASKS.add(_task.name, _task)
