"""Self-supervised document representation (issue 11) as the task family ``docrep``.

``tunelab run --task bbc-docrep --method M`` trains the bare encoder (head ``feature-extraction``:
``AutoModel``, no new parameters) *without labels* on the train documents with a contrastive objective
over whole documents (``docrep.objective``: DeCLUTR pairs of two chunks of one document, or SimCSE
dropout pairs; in-batch negatives), through tunelab's one training loop, so every adaptation method
applies. After every epoch the frozen encoder embeds the train and test documents (document vector =
mean of its chunk vectors, ``docrep.embed``) and ``docrep.evaluate`` fits the logistic regression on the
train vectors: test macro-F1 (main), accuracy, 5-NN accuracy and KMeans NMI. Labels are read only there.

- Tasks: ``bbc-docrep`` (BBC News, ``DIR``, ``DIR/bbc`` or ``DIR/news/bbc``; without ``--data-dir`` a local
  ``shared/data/news/bbc``, else the hub's SetFit/bbc-news) and ``docrep`` (any ``DIR/<category>/*.txt``
  folder, a folder with one CSV / JSONL file, or ``--dataset`` (a hub id); ``--text-column/--label-column``).
  Non-UTF-8 text: ``bbc-docrep`` decodes BBC's one Latin-1 file and records it (run.json ``data_notes``);
  ``docrep`` stops with one line naming any such file.
- The split: stratified and seeded by ``--docrep-split-seed`` (not the run's ``--seed``: every method and
  seed sees the same documents), ``--docrep-test-fraction``, after an optional stratified subset
  (``--docrep-max-docs``); run.json ``data_notes.train`` holds it with the test documents' corpus indices.
- CPU bounds: ``--docrep-max-docs`` (the corpus), ``--max-train-samples`` (documents the contrastive
  training sees; the classifier is still fitted on every train document), ``--max-eval-samples`` (test
  documents). Each evaluation embeds classifier-train + test documents once.
- Baselines (``--docrep-baseline``, with ``--method full``): TF-IDF, Doc2Vec, the untouched encoder
  truncated at 128 / 512 tokens, or its mean over chunks of ``--docrep-chunk-length``: nothing trains;
  the same split, classifier, metrics and ``predictions.tsv`` as a fine-tuned run, so ``tunelab compare``
  (preset ``docrep-quick``) puts them in one table. Their run.json ``params`` say 0 trainable.
- ``probe.safetensors`` (next to ``predictions.tsv``; trained runs and ``encoder-chunks``): the last
  evaluation's logistic regression (``evaluate.save_probe``, no pickle); ``tunelab predict`` gives each
  input document its vector, the probe's ``label`` and ``probabilities``, reproducing
  ``predictions.tsv``'s ``predicted_category``.
"""

import copy
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from ...config import FIELDS
from ...errors import UserError
from ...metrics import Metric, register
from ...models.heads import Head, register_head
from .. import TASKS
from . import options  # noqa: F401  (declares the family's options)
from ..base import Example, Split, Task

# CPU-friendly family defaults (a given option wins): one epoch, 16 documents (32 chunks) per batch.
DEFAULTS = {"epochs": 1, "batch_size": 16, "eval_batch_size": 64}
LOCAL_BBC = ("data/news/bbc", "../shared/data/news/bbc")  # checked when bbc-docrep gets no --data-dir


def default_lr(method) -> float:
    """Contrastive fine-tuning wants smaller steps than a new classifier head: 5e-5 for methods that update
    weights (SimCSE / DeCLUTR use 3e-5 / 5e-5 on BERT-base), 5e-4 for LoRA, the method's own default for
    prompt / prefix tuning, by what the method trains (its ``trains`` trait: weights / adapters /
    virtual tokens). (ALF with ``--adapter lora`` gets 5e-5 too: pass ``--lr``.)"""
    if method.trains == "adapters":
        return 5e-4
    if method.trains == "virtual_tokens":
        return method.default_lr
    return 5e-5


register_head(Head("feature-extraction", "AutoModel", "FEATURE_EXTRACTION", trains=False,
                   description="the bare encoder, no head: pooled hidden states are the representation"))
register(Metric("knn_accuracy", None, True, False, "accuracy of a 5-NN cosine vote among the train documents"))
register(Metric("nmi", None, True, False, "NMI of KMeans (k = categories) clusters of the test vectors"))


@dataclass
class DocPredictions:
    """The test documents' predictions of one evaluation (``write_predictions`` prints them)."""

    examples: list  # Example: texts=(text,), label=category, line=corpus index + 1
    references: list  # class ids (index into categories)
    logreg: list  # logistic regression's predicted class ids
    knn: list  # 5-NN vote's
    cluster: list  # KMeans cluster ids (arbitrary numbering)
    categories: list
    sources: dict  # line -> source ("sport/199.txt", "file.csv:12", ...)
    probe: object = None  # the fitted logistic regression pipeline (saved as probe.safetensors)


class DocrepTask(Task):
    data_parallel = True  # ShardedPairs + all-gathered InfoNCE; embeddings for evaluation sharded and gathered
    resumable = True  # trained by train.loop.train, which checkpoints
    shared_options = ("dataset", "dataset_config", "text_column", "label_column")  # common options it reads
    family = "docrep"
    head = "feature-extraction"
    num_labels = 0
    metric_names = ("macro_f1", "accuracy", "knn_accuracy", "nmi")
    eval_splits = ("test",)
    defaults = DEFAULTS

    def __init__(self, name: str, doc: str, bbc: bool):
        self.name, self.doc, self.bbc = name, doc, bbc
        self.cfg = None
        self._probe = None  # (pipeline, category names) of a finished run (restore), for predict
        self._corpus = None  # (examples by corpus index, train indices, test indices, files, notes)

    # ------------------------------------------------------------ options
    def option_defaults(self, method) -> dict:
        return {**self.defaults, "lr": default_lr(method)}

    def configure(self, cfg) -> "DocrepTask":
        t = copy.copy(self)
        t.cfg, t._corpus = cfg, None
        return t

    def _opt(self, name: str):
        return getattr(self.cfg, name) if self.cfg is not None else FIELDS[name].default

    def validate(self, cfg) -> None:
        if cfg.group_by_length:
            raise UserError(f"--group-by-length: task {self.name} batches one chunk pair per document (chunks "
                            "have near-equal lengths already); drop the option")
        default_method = FIELDS["method"].default  # one cell per baseline: the default method's
        if cfg.docrep_baseline and cfg.method != default_method:
            raise UserError(f"--docrep-baseline {cfg.docrep_baseline} trains nothing: run it with --method "
                            f"{default_method} (the default), which leaves the encoder untouched, not --method {cfg.method}")
        if cfg.batch_size < 2:
            raise UserError(f"--batch-size {cfg.batch_size}: the contrastive objective needs >= 2 documents per "
                            "batch (the other documents are the negatives)")
        if not self.bbc and cfg.data_dir is None and cfg.dataset is None:
            raise UserError("--task docrep needs --data-dir DIR (DIR/<category>/*.txt, or a folder with one CSV / "
                            "JSONL file) or --dataset NAME (a hub dataset)")
        if cfg.data_dir is not None and cfg.dataset is not None:
            raise UserError("--dataset: give either it or --data-dir, not both")

    # ------------------------------------------------------------ data
    def _read(self, data_dir):
        from .news import HUB_DEFAULT, is_folder_corpus, load_hub, read_bbc, read_corpus

        text_col, label_col, hub = self._opt("text_column"), self._opt("label_column"), self._opt("dataset")
        if data_dir:
            path = data_dir
            if self.bbc:  # DIR, DIR/bbc or DIR/news/bbc (so --data-dir ../shared/data works too)
                path = next((p for p in (data_dir, os.path.join(data_dir, "bbc"), os.path.join(data_dir, "news", "bbc"))
                             if is_folder_corpus(p)), data_dir)
            return read_corpus(path, text_col, label_col, legacy_files=None if self.bbc else {})
        if self.bbc and hub is None:
            local = next((p for p in LOCAL_BBC if is_folder_corpus(p)), None)
            if local:
                return read_bbc(local)
        name = hub or HUB_DEFAULT
        return load_hub(name, text_col or "text", label_col or ("label_text" if name == HUB_DEFAULT else "label"),
                        self._opt("dataset_config"))

    def corpus(self, data_dir):
        """Read once, subset (``--docrep-max-docs``) and split (stratified, seeded); cached on the task."""
        if self._corpus is None:
            from .news import stratified_split, stratified_subset

            docs, files, info = self._read(data_dir)
            seed = self._opt("docrep_split_seed")
            labels = [d.label for d in docs]
            keep = stratified_subset(labels, self._opt("docrep_max_docs"), seed)
            tr, te, split = stratified_split([labels[i] for i in keep], self._opt("docrep_test_fraction"), seed)
            tr, te = [keep[i] for i in tr], [keep[i] for i in te]
            split["test_indices"] = te  # corpus indices (0-based; predictions.tsv ``line`` is index + 1)
            examples = [Example(texts=(d.text,), label=d.label, line=i + 1) for i, d in enumerate(docs)]
            notes = {"corpus": info, "subset": {"max_docs": self._opt("docrep_max_docs"), "documents": len(keep)},
                     "split": split}
            self._sources = {i + 1: d.source for i, d in enumerate(docs)}
            self._corpus = (examples, tr, te, files, notes)
        return self._corpus

    def load(self, split: str, data_dir) -> Split:
        examples, tr, te, files, notes = self.corpus(data_dir)
        if split == "train":
            return Split("train", [examples[i] for i in tr], files, notes)
        if split == "test":
            return Split("test", [examples[i] for i in te], {}, {"documents": len(te)})
        raise UserError(f"task {self.name} has no split {split!r} (train, test)")

    def load_model(self, name: str, allow_pickle: bool = False):
        """The bare encoder; BERT's pooler is dropped: it is no part of a pooled document vector and would
        count as trainable parameters that never get a gradient."""
        model, processor, layout, source = super().load_model(name, allow_pickle)
        if getattr(model, "pooler", None) is not None:
            model.pooler = None
        return model, processor, layout, source

    # ------------------------------------------------------------ training and evaluation
    def fit(self, ctx):
        from .chunks import chunk_documents, model_length, special_tokens
        from .embed import document_vectors

        cfg, tok = ctx.cfg, ctx.tokenizer
        clf_train, test = ctx.train_all, ctx.eval_splits[0].examples
        length = min(cfg.docrep_chunk_length, model_length(tok, ctx.model.config))
        pad = tok.pad_token_id or 0
        record = {"docrep": {"representation": cfg.docrep_baseline or f"encoder fine-tuned ({cfg.docrep_objective})",
                             "classifier_train_docs": len(clf_train), "test_docs": len(test)}}
        chunked = {"chunk_length": length, "model_length": model_length(tok, ctx.model.config),
                   "pooling": f"{cfg.docrep_pooling} over a chunk's tokens, mean over the document's chunks"}
        if cfg.docrep_baseline:
            return self._fit_baseline(ctx, length, chunked, record)
        record["docrep"].update(chunked)

        from .objective import PairLoader, ShardedPairs, contrastive_loss, pairing_stats
        from ...train import distributed

        if len(ctx.train_examples) < 2:
            raise UserError(f"task {self.name}: contrastive training needs >= 2 train documents, got "
                            f"{len(ctx.train_examples)}")
        needed = {e.line: e.texts[0] for e in [*clf_train, *test, *ctx.train_examples]}
        lines = sorted(needed)
        chunks = dict(zip(lines, chunk_documents(tok, [needed[n] for n in lines], length)))
        n_special = sum(map(len, special_tokens(tok)))
        train_chunks = [chunks[e.line] for e in ctx.train_examples]  # texts only: no label reaches training
        loader = PairLoader(train_chunks, cfg.batch_size, torch.Generator().manual_seed(cfg.seed),
                            cfg.docrep_objective, pad)
        if distributed.is_distributed():  # each rank its share of every global batch; negatives: the global batch's
            loader = ShardedPairs(loader, distributed.rank(), distributed.world_size())
        record["docrep"].update({
            "objective": cfg.docrep_objective, "temperature": cfg.docrep_temperature,
            "training_docs": len(train_chunks), "pairing": pairing_stats(train_chunks, cfg.docrep_objective),
            "training_chunks": sum(map(len, train_chunks)),
            "eval_chunks": sum(len(chunks[e.line]) for e in [*clf_train, *test]),
            "word_pieces_per_doc": float(np.mean([sum(len(c) - n_special for c in chunks[n]) for n in lines]))})

        def vectors(model):  # data-parallel: each rank embeds documents r, r+W, ...; all gathered in order
            return tuple(np.stack(distributed.gather_shards(list(document_vectors(
                model, distributed.shard([chunks[e.line] for e in docs]), cfg.eval_batch_size, pad,
                cfg.docrep_pooling)))) for docs in (clf_train, test))

        def loss_fn(model, batch):
            return contrastive_loss(model, batch, cfg.docrep_temperature, cfg.docrep_pooling)

        summary = self.train_loop(ctx, loader, self.evaluator(ctx, vectors), loss_fn=loss_fn)
        summary.record.update(record)
        return summary

    def evaluator(self, ctx, vectors):
        """evaluate(model) -> (metrics, {"test": DocPredictions}); ``vectors(model)`` -> (train, test)."""
        from .evaluate import evaluate_with_predictions

        clf_train, test = ctx.train_all, ctx.eval_splits[0].examples
        categories = sorted({e.label for e in [*clf_train, *test]})
        ids = {c: i for i, c in enumerate(categories)}
        y_train = np.array([ids[e.label] for e in clf_train])
        y_test = np.array([ids[e.label] for e in test])

        def evaluate(model):
            x_train, x_test = vectors(model)
            metrics, preds = evaluate_with_predictions(x_train, y_train, x_test, y_test, seed=ctx.cfg.seed)
            out = DocPredictions(test, y_test.tolist(), preds["logreg"].tolist(), preds["knn"].tolist(),
                                 preds["cluster"].tolist(), categories, self._sources, preds["probe"])
            return {k: metrics[k] for k in self.metric_names}, {"test": out}

        return evaluate

    def _fit_baseline(self, ctx, length: int, chunked: dict, record: dict) -> dict:
        """No training: the representation is fitted / taken as is, then one evaluation, recorded as epoch 0."""
        from .baselines import baseline_vectors
        from ...models.params import count_params
        from ...train.loop import TrainState
        from ...train.tracker import EpochTracker

        cfg, name = ctx.cfg, ctx.cfg.docrep_baseline
        clf_train, test = ctx.train_all, ctx.eval_splits[0].examples
        texts = ([e.texts[0] for e in clf_train], [e.texts[0] for e in test])
        encoder = name.startswith("encoder")
        t0 = time.perf_counter()
        if encoder:  # the untouched encoder: embedding is evaluation time, nothing is fitted
            which = f"encoder-chunks-{length}" if name == "encoder-chunks" else name
            fitted, dims = 0.0, ctx.model.config.hidden_size

            def vectors(model):
                return baseline_vectors(which, *texts, model, ctx.tokenizer, seed=cfg.seed,
                                        batch_size=cfg.eval_batch_size, pooling=cfg.docrep_pooling)
            record["docrep"]["representation"] = which
            if name == "encoder-chunks":
                record["docrep"].update(chunked)
            else:
                record["docrep"]["pooling"] = (f"{cfg.docrep_pooling} over the first {name.rsplit('-', 1)[1]} tokens "
                                               "(capped at the model's length); the rest of the document is unread")
        else:  # TF-IDF / Doc2Vec are fitted (unsupervised) on the train texts: that is their training time
            vecs = baseline_vectors(name, *texts, seed=cfg.seed)
            fitted, dims = time.perf_counter() - t0, vecs[0].shape[1]

            def vectors(model):
                return vecs
        record["docrep"]["dimensions"] = int(dims)
        evaluate = self.evaluator(ctx, vectors)
        tracker = EpochTracker(self.main_metric, None, ctx.on_epoch)
        t1 = time.perf_counter()
        metrics, preds = evaluate(ctx.model)
        tracker.end_epoch({"epoch": 0, "step": 0, "train_loss": None, "metrics": metrics,
                           "eval_seconds": round(time.perf_counter() - t1, 3)}, preds)
        params = count_params(ctx.model, ctx.layout) if encoder else {"total": 0}
        record["params"] = {**params, "trainable": 0, "trainable_pct": 0.0, "trainable_without_head": 0, "head": 0,
                            "trainable_layers": [], "note": "a baseline: no parameter trained"
                            + ("" if encoder else f" ({name} is fitted without gradients; total = 0: no encoder)")}
        state = TrainState(model=ctx.model, optimizer=None, train_seconds=fitted,
                           samples_seen=0 if encoder else len(clf_train))
        return tracker.summary(state, record)

    # ------------------------------------------------------------ tunelab predict
    def read_inputs(self, path, cfg) -> list:
        """Documents: one .txt file, a folder of them (a folder-per-category corpus: recursively, sorted),
        or a CSV / JSON Lines file with the text column (--text-column of the run, default text)."""
        from .news import decode_text

        col = cfg.text_column or "text"
        if os.path.isfile(path) and path.endswith((".csv", ".jsonl", ".json")):
            import csv
            import json

            with open(path, "rb") as f:
                text, _ = decode_text(f.read(), path)
            rows = ([(i, json.loads(x)) for i, x in enumerate(text.splitlines(), 1) if x.strip()]
                    if not path.endswith(".csv") else [(i + 2, r) for i, r in enumerate(csv.DictReader(text.splitlines()))])
            out = []
            for line, r in rows:
                if not isinstance(r, dict) or not isinstance(r.get(col), str) or not r[col].strip():
                    raise UserError(f"{path}:{line}: needs a non-empty {col!r} column (--text-column of the run)")
                out.append((f"{os.path.basename(path)}:{line}", r[col].strip()))
            return out
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(root, f) for root, _, fs in os.walk(path) for f in fs if f.endswith(".txt"))
        if not files:
            raise UserError(f"--input {path}: no .txt documents (a file, a folder of them, or a CSV / JSONL file)")
        out = []
        for f in files:
            with open(f, "rb") as fh:
                text, _ = decode_text(fh.read(), f, fallback="latin-1")
            if not text.strip():
                raise UserError(f"{f}: empty document")
            out.append((os.path.relpath(f, path) if os.path.isdir(path) else os.path.basename(f), text.strip()))
        return out

    def text_inputs(self, texts, cfg) -> list:
        return [(str(i), t) for i, t in enumerate(texts)]

    def restore(self, record: dict) -> None:
        """The run's saved probe (``probe.safetensors`` in ``record["run_dir"]``), when there is one (runs
        made before it was saved predict the vector only)."""
        from .evaluate import PROBE_FILE, load_probe

        path = os.path.join(record.get("run_dir") or "", PROBE_FILE)
        self._probe = load_probe(path) if record.get("run_dir") and os.path.isfile(path) else None

    def predict_inputs(self, model, processor, inputs, cfg, device, batch_size, progress=None):
        """The document vector (the representation the run trained: every chunk's pooled vector,
        averaged), as the evaluation embeds documents for its classifiers, and, when the run saved its
        probe, that logistic regression's ``label`` (category name) and ``probabilities`` (category ->
        probability, the categories it was fitted on)."""
        from ..base import progress_bar
        from .chunks import chunk_documents, model_length
        from .embed import document_vectors

        tok = getattr(processor, "tokenizer", processor)
        length = min(cfg.docrep_chunk_length, model_length(tok, model.config))
        bar = progress_bar(len(inputs), f"predict {self.name}", progress)
        group = 256
        for b in range(0, len(inputs), group):
            chunk = inputs[b:b + group]
            vecs = document_vectors(model, chunk_documents(tok, [t for _, t in chunk], length), batch_size,
                                    tok.pad_token_id or 0, cfg.docrep_pooling)
            if self._probe is not None:
                clf, names = self._probe
                classes = [names[int(c)] for c in clf.classes_]
                labels, probs = clf.predict(vecs), clf.predict_proba(vecs)
            for r, ((src, _), v) in enumerate(zip(chunk, vecs)):
                row = {"source": src, "embedding": [round(float(x), 7) for x in v]}
                if self._probe is not None:
                    row["label"] = names[int(labels[r])]
                    row["probabilities"] = {c: float(p) for c, p in zip(classes, probs[r])}
                yield row
            bar.update(len(chunk))
        bar.close()

    def write_predictions(self, path: str, predictions: dict) -> None:
        """One row per test document: class ids (``label``, ``prediction`` = logistic regression, as the
        report's paired bootstrap reads them), the 5-NN vote, the KMeans cluster, category names, source."""
        with open(path, "w", encoding="utf-8") as f:
            f.write("split\tindex\tline\tlabel\tprediction\tknn_prediction\tcluster\tcategory\tpredicted_category"
                    "\tsource\n")
            for split, p in predictions.items():
                for i, ex in enumerate(p.examples):
                    f.write(f"{split}\t{i}\t{ex.line}\t{p.references[i]}\t{p.logreg[i]}\t{p.knn[i]}\t{p.cluster[i]}"
                            f"\t{p.categories[p.references[i]]}\t{p.categories[p.logreg[i]]}"
                            f"\t{p.sources.get(ex.line, '')}\n")
        probes = [p for p in predictions.values() if p.probe is not None]
        baseline = self.cfg.docrep_baseline if self.cfg is not None else None
        if probes and baseline in (None, "", "encoder-chunks"):  # the classifier behind predicted_category, for
            # tunelab predict (which embeds by chunks: a probe on TF-IDF / Doc2Vec / truncated vectors would not fit)
            from .evaluate import PROBE_FILE, save_probe

            save_probe(os.path.join(os.path.dirname(os.path.abspath(path)), PROBE_FILE), probes[0].probe,
                       probes[0].categories)


TASKS.add("bbc-docrep", DocrepTask("bbc-docrep", "BBC News (2,225 articles, 5 categories)", bbc=True))
TASKS.add("docrep", DocrepTask("docrep", "any folder-per-category corpus, CSV / JSONL or hub dataset", bbc=False))
