"""``token-classification``: named-entity recognition and any BIO / IOB tagging, the way HF's
``run_ner.py`` does it, on the user's own files.

- data (``data.py``): ``--train-file`` / ``--validation-file`` / ``--test-file`` as CoNLL files (token
  first, tag last, blank line between sentences, ``-DOCSTART-`` skipped) or JSON lines with ``tokens`` and
  ``ner_tags`` (strings, or integers named by ``--label-list`` / a ``labels.json`` beside the file), or
  ``--dataset`` (a hub id or a ``save_to_disk`` folder; ``ClassLabel`` names). Tags in IOB1, IOB2, IOBES or
  BILOU become IOB2; no validation file: a seeded ``--eval-fraction`` of the train sentences;
- labels: ``O`` then ``B-T``/``I-T`` per entity type of the train data (sorted), saved as the model
  config's ``id2label`` / ``label2id``; a type in validation / test that train never has is refused;
- encoding (tasks/tagging.py, shared with keyphrase): the first sub-token of every word carries the
  word's label, the others -100; a sentence longer than ``--max-seq-length`` tokens is cut into windows
  overlapping by ``--doc-stride`` tokens, and each word's label distribution is averaged over the windows
  holding it before the argmax (one tag per word, whatever the windows);
- metrics (``seqeval``, CoNLL's entity-level definition, its default mode as in ``run_ner.py``):
  ``f1`` (main: best epoch, early stopping), ``precision``, ``recall`` (micro over entities),
  ``accuracy`` (over words) and ``<TYPE>_f1`` per entity type on the validation split every epoch; the
  test split is evaluated at the same time as ``test_*`` and never decides. run.json ``per_type`` holds
  seqeval's per-type precision / recall / F1 / support of the final model on each split;
- ``predictions.tsv``: one row per sentence: split, index, source line, tokens, gold and predicted tags
  (JSON lists).
"""

import copy
import json
import os

from ...errors import UserError
from ...textio import read_tsv_by_split
from .. import TASKS, tagging
from ..base import Split, sha256_file
from ..supervised import Prediction, SupervisedTask
from . import options  # noqa: F401  (declares the family's options)
from ..datafiles import DATA_OPTIONS, EXTENSIONS, FILE_OPTIONS, SPLITS, flag, load_user_splits
from .data import (CONLL_EXTENSIONS, check_known, dataset_sentences, entity_types, label_list, read_conll,
                   read_json_file, read_label_list, to_iob2)

METRICS = ("f1", "precision", "recall", "accuracy")


def seqeval_scores(predictions, references, types) -> dict:
    """Overall precision / recall / F1 (micro over entities), accuracy (over words) and ``<TYPE>_f1``."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    out = {"f1": float(f1_score(references, predictions, zero_division=0)),
           "precision": float(precision_score(references, predictions, zero_division=0)),
           "recall": float(recall_score(references, predictions, zero_division=0)),
           "accuracy": float(accuracy_score(references, predictions))}
    report = per_type(predictions, references)
    for t in types:
        out[f"{t}_f1"] = report.get(t, {}).get("f1", 0.0)
    return out


def per_type(predictions, references) -> dict:
    """seqeval's classification_report per entity type: {type: {precision, recall, f1, support}}."""
    from seqeval.metrics import classification_report

    rep = classification_report(references, predictions, output_dict=True, zero_division=0)
    return {t: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                "support": int(v["support"])}
            for t, v in rep.items() if not t.endswith(" avg")}


class TokenClassificationTask(SupervisedTask):
    name = "token-classification"
    family = "token-classification"
    description = "NER / BIO tagging on your files: CoNLL or JSON lines (tokens + ner_tags), seqeval entity F1"
    head = "token-classification"
    metric_names = METRICS
    report_metrics = ("f1", "precision", "recall", "accuracy", "test_f1")
    shared_options = DATA_OPTIONS + ("max_seq_length", "eval_fraction", "text_column", "label_column")
    defaults = {"doc_stride": 32}

    def __init__(self):
        self._splits = None  # {split: (sentences, files, info)} once read
        self.labels = []
        self.types = []
        self._restored = None  # run.json's token_classification record (predict / export): no data read

    def configure(self, cfg) -> "TokenClassificationTask":
        t = copy.copy(self)
        t.cfg = cfg
        t._splits = None
        t._restored = None
        return t

    @property
    def eval_splits(self) -> tuple:
        """validation (reported, decides), and test when there is one (the runner asks after loading train)."""
        if self._splits is not None:
            return ("validation", "test") if "test" in self._splits else ("validation",)
        cfg = getattr(self, "cfg", None)
        return ("validation", "test") if cfg is not None and cfg.test_file else ("validation",)

    @staticmethod
    def is_conll(path: str) -> bool:
        return path.lower().endswith(CONLL_EXTENSIONS)

    def validate(self, cfg) -> None:
        super().validate(cfg)
        tagging.check_stride(cfg.doc_stride, cfg.max_seq_length)
        files = {o: getattr(cfg, o) for o in FILE_OPTIONS}
        if cfg.dataset and any(files.values()):
            raise UserError(f"{flag(next(o for o, v in files.items() if v))}: give either data files or --dataset, not both")
        if not cfg.dataset:  # datafiles.check_options, with CoNLL files besides its extensions
            if not cfg.train_file:
                raise UserError("--task token-classification needs --train-file FILE (CoNLL, JSON / JSONL or Parquet "
                                "with tokens + ner_tags) or --dataset NAME_OR_PATH")
            for o in ("train_split", "validation_split", "test_split", "dataset_config"):
                if getattr(cfg, o):
                    raise UserError(f"{flag(o)}: only with --dataset (data files name their split by option)")
            for o, path in files.items():
                if not path:
                    continue
                ext = os.path.splitext(path)[1].lower()
                if not self.is_conll(path) and ext not in EXTENSIONS:
                    raise UserError(f"{flag(o)} {path}: unknown file extension {ext or '(none)'!r} (CoNLL: "
                                    f"{', '.join(CONLL_EXTENSIONS)}; rows: {', '.join(EXTENSIONS)})")
                if not os.path.isfile(path):
                    raise UserError(f"{flag(o)} {path}: no such file")
        if cfg.label_list:
            read_label_list(cfg.label_list)

    # ------------------------------------------------------------ data
    def _read_file(self, path: str, names, option: str):
        if self.is_conll(path):
            sents, info = read_conll(path), {"format": "CoNLL (token first, tag last)"}
        else:
            sents, info = read_json_file(path, names, self.cfg.text_column, self.cfg.label_column, option)
            info["format"] = os.path.splitext(path)[1].lower()[1:] + " rows (tasks/datafiles.py)"
        return sents, {os.path.abspath(path): sha256_file(path)}, {"source": f"{flag(option)} {path}", **info}

    def _load_all(self):
        if self._splits is not None:
            return self._splits
        cfg = self.cfg
        names = read_label_list(cfg.label_list) if cfg.label_list else None
        raw = {}
        if cfg.train_file:
            for split, o in zip(SPLITS, FILE_OPTIONS):
                if getattr(cfg, o):
                    raw[split] = self._read_file(getattr(cfg, o), names, o)
        else:  # --dataset: tasks/datafiles.py (save_to_disk folder, folder of files, hub id; split names)
            data = load_user_splits(cfg)
            for split, ds in data.splits.items():
                sents, info = dataset_sentences(ds, data.lines.get(split), data.sources[split], names,
                                                cfg.text_column, cfg.label_column)
                raw[split] = (sents, data.files_of(split), {**data.info_of(split), **info})
        if "validation" not in raw:  # as datafiles.hold_out: a seeded (seed 0, whatever --seed) share of train
            from ..splits import seeded_split, take

            sents, files, info = raw["train"]
            parts, rec = seeded_split(sents, {"validation": float(cfg.eval_fraction)}, 0)
            rec = {"from": "train", "fraction": float(cfg.eval_fraction), **rec}
            raw["train"] = (take(sents, parts["train"]), files, {**info, "held_out": rec})
            raw["validation"] = (take(sents, parts["validation"]), dict(files), {**info, "held_out": rec})
        for split, (sents, _, info) in raw.items():
            info.update(to_iob2(sents, split))
            info["sentences"] = len(sents)
            info["words"] = sum(len(s.tokens) for s in sents)
        self.types = entity_types(raw["train"][0])
        if not self.types:
            raise UserError(f"{cfg.train_file or cfg.dataset}: the train data has no entity tag (every tag is O)")
        for split in ("validation", "test"):
            if split in raw:
                check_known(raw[split][0], self.types, split)
        self.labels = label_list(self.types)
        self.num_labels = len(self.labels)
        self._splits = raw
        return raw

    def load(self, split, data_dir) -> Split:
        raw = self._load_all()
        if split not in raw:
            raise UserError(f"token-classification has no {split} data (give {flag(split + '_file')})")
        sents, files, info = raw[split]
        return Split(split, list(sents), dict(files), dict(info))

    def load_model(self, name: str, allow_pickle: bool = False):
        if not self._restored:
            self._load_all()
        out = super().load_model(name, allow_pickle=allow_pickle)
        model = out[0]
        model.config.id2label = dict(enumerate(self.labels))
        model.config.label2id = {lab: i for i, lab in enumerate(self.labels)}
        self._model_config = model.config
        return out

    # ------------------------------------------------------------ hooks (rows = windows)
    def encode(self, examples, processor, cfg, window: int | None = None) -> list:
        window = window or getattr(self, "_window", None)
        tok = getattr(processor, "tokenizer", processor)
        ids = {lab: i for i, lab in enumerate(self.labels)}
        rows = []
        self._n_rows = 0
        for s in examples:
            rows += tagging.encode_windows(s.tokens, [ids[t] for t in s.tags], tok, window or cfg.max_seq_length,
                                           cfg.doc_stride)
        self._n_rows = len(rows)
        return rows

    def collator(self, processor):
        tok = getattr(processor, "tokenizer", processor)
        return tagging.collate(tok.pad_token_id)

    def decode(self, outputs, batch) -> list:  # evaluation goes through tag_sentences
        return outputs.logits.argmax(-1).tolist()

    def loss(self, model, batch):
        return tagging.token_loss(model, batch)

    def metrics(self, predictions, references) -> dict:
        return seqeval_scores(predictions, references, self.types)

    # ------------------------------------------------------------ windows in, sentences out
    def tag_sentences(self, model, sentences, windows, collate, batch_size, device) -> list:
        probs = tagging.predict_word_probs(model, windows, [len(s.tokens) for s in sentences], collate, batch_size,
                                           device, len(self.labels), 0)
        return [[self.labels[i] for i in p.argmax(axis=1)] for p in probs]

    def build_data(self, ctx):
        """Training batches by SupervisedTask (windows, length-grouped, sharded under data-parallel);
        evaluation per sentence: its windows' word distributions merged, then one tag per word."""
        import dataclasses

        from ...train import distributed

        cfg, tok = ctx.cfg, ctx.tokenizer
        window = tagging.window_tokens(ctx.model, tok, cfg.max_seq_length)
        if window < cfg.max_seq_length:
            print(f"token-classification: windows of {window} tokens (--max-seq-length {cfg.max_seq_length} + "
                  "virtual tokens would exceed the model's positions)")
        self._window = window
        train_loader, _ = super().build_data(dataclasses.replace(ctx, eval_splits=[]))
        collate = self.collator(ctx.processor)
        evals = [(s, [tagging.encode_windows(x.tokens, None, tok, window, cfg.doc_stride) for x in s.examples])
                 for s in ctx.eval_splits]
        n_train = self._n_rows  # encode() of the train sentences, in super().build_data
        self._record = {"token_classification": {
            "labels": list(self.labels), "entity_types": list(self.types), "window_tokens": window,
            "doc_stride": cfg.doc_stride,
            "windows": {"train": n_train, **{s.name: sum(map(len, w)) for s, w in evals}},
            "sentences": {"train": len(ctx.train_examples), **{s.name: len(s.examples) for s, _ in evals}},
            "longer_than_a_window": {s.name: sum(len(w) > 1 for w in ws) for s, ws in evals},
            "metrics": "seqeval (default mode, as conlleval): entity-level micro precision / recall / F1, "
                       "accuracy over words; unprefixed: " + ctx.eval_splits[0].name + "; test_*: test",
        }}

        def evaluate(model):
            metrics, preds = {}, {}
            for i, (split, wins) in enumerate(evals):
                p = self.tag_sentences(model, distributed.shard(split.examples), distributed.shard(wins), collate,
                                       cfg.eval_batch_size, ctx.device)
                p = distributed.gather_shards(p)
                refs = [list(s.tags) for s in split.examples]
                prefix = self.split_prefix(i, split)
                metrics.update({prefix + k: v for k, v in self.metrics(p, refs).items()})
                preds[split.name] = Prediction(p, refs, split.examples)
            return metrics, preds

        return train_loader, evaluate

    def after_fit(self, ctx, summary, before) -> dict:
        rec = dict(self._record)
        rec["per_type"] = {name: per_type(pr.predictions, pr.references)
                           for name, pr in (summary.final_predictions or {}).items()}
        return rec

    def write_predictions(self, path: str, predictions: dict) -> None:
        """One row per sentence: split, index, line (in its file; 0: hub rows), tokens, gold_tags,
        predicted_tags (the lists as JSON). A run whose method saved only adapters (PEFT: no config.json)
        gets the base model's config.json beside them, with the labels (id2label / label2id)."""
        folder = os.path.dirname(path)
        cfg = getattr(self, "_model_config", None)
        if cfg is not None and not os.path.exists(os.path.join(folder, "config.json")):
            cfg.save_pretrained(folder)
        with open(path, "w", encoding="utf-8") as f:
            f.write("split\tindex\tline\ttokens\tgold_tags\tpredicted_tags\n")
            for split, pr in predictions.items():
                for i, (pred, gold, s) in enumerate(zip(pr.predictions, pr.references, pr.examples)):
                    f.write("\t".join([split, str(i), str(s.line), json.dumps(s.tokens, ensure_ascii=False),
                                       json.dumps(gold), json.dumps(pred)]) + "\n")

    # ------------------------------------------------------------ tunelab predict / export (predict.py)
    def restore(self, record: dict) -> None:
        """The labels from run.json's ``token_classification`` (no data file read); an older run.json
        without them: the data are read as in training."""
        tc = record.get("token_classification") or {}
        if tc.get("labels"):
            self.labels, self.types = list(tc["labels"]), list(tc.get("entity_types") or [])
            self.num_labels = len(self.labels)
            self._restored = tc

    def label_names(self) -> list | None:
        if not self.labels:
            self._load_all()
        return list(self.labels)

    def read_inputs(self, path: str, cfg) -> list:
        """A CoNLL file (token first; a tag column, if any, ignored; a file of tokens alone too) or rows
        (JSON lines / JSON / Parquet) with a list of tokens (``--text-column`` of the run, else ``tokens``
        / ``words``); tags not needed. One input per sentence / row, in file order."""
        from ..datafiles import _quiet, read_file
        from .data import TOKEN_COLUMNS, Sentence

        if os.path.isdir(path):
            raise UserError(f"--input {path}: a folder; task {self.name} reads one CoNLL or JSON lines file")
        if self.is_conll(path):
            return read_conll(path, tags_needed=False)
        ext = os.path.splitext(path)[1].lower()
        if ext not in EXTENSIONS:
            raise UserError(f"--input {path}: unknown file extension {ext or '(none)'!r} (CoNLL: "
                            f"{', '.join(CONLL_EXTENSIONS)}; rows: {', '.join(EXTENSIONS)})")
        _quiet()  # no progress bars from datasets: stdout may be the JSONL
        ds, lines = read_file(path, "input")
        cols = ds.column_names
        col = cfg.text_column or next((c for c in TOKEN_COLUMNS if c in cols), None)
        if col not in cols:
            raise UserError(f"--input {path}: no tokens column (looked for {col or ', '.join(TOKEN_COLUMNS)}); "
                            f"the columns are: {', '.join(map(str, cols))}")
        out = []
        for i, tokens in enumerate(ds[col]):
            line = lines[i] if lines else 0
            if not isinstance(tokens, list) or not all(isinstance(w, str) for w in tokens):
                where = f"{path}: line {line}" if line else f"{path}: row {i}"
                raise UserError(f"{where}: {col!r} must be a list of token strings")
            out.append(Sentence(list(tokens), [], line, path, i))
        return out

    def text_inputs(self, texts: list, cfg) -> list:
        """``--text "..."``: the words split on whitespace."""
        from .data import Sentence

        out = []
        for i, t in enumerate(texts, 1):
            words = t.split()
            if not words:
                raise UserError(f"--text #{i}: no words in it")
            out.append(Sentence(words, [], 0, "--text", i - 1))
        return out

    def predict_inputs(self, model, processor, inputs, cfg, device, batch_size, progress=None):
        """tokens, tags (IOB2, one per token) and entities (seqeval's spans: type, start and end token
        indices, end exclusive, the text of the tokens, the mean tag probability), per sentence; the
        windows (``--max-seq-length`` / ``--doc-stride`` of the run) and their merging as in evaluation."""
        from seqeval.metrics.sequence_labeling import get_entities

        from ..base import progress_bar

        tok = getattr(processor, "tokenizer", processor)
        rec = self._restored or {}
        window = rec.get("window_tokens") or tagging.window_tokens(model, tok, cfg.max_seq_length)
        stride = rec.get("doc_stride", cfg.doc_stride)
        collate = self.collator(processor)
        bar = progress_bar(len(inputs), f"predict {self.name}", progress)
        step = max(batch_size, 1) * 64  # sentences per pass (windows are batched longest first within one)
        for b in range(0, len(inputs), step):
            chunk = inputs[b:b + step]
            wins = [tagging.encode_windows(s.tokens, None, tok, window, stride) for s in chunk]
            probs = tagging.predict_word_probs(model, wins, [len(s.tokens) for s in chunk], collate, batch_size,
                                               device, len(self.labels), 0)
            for s, p in zip(chunk, probs):
                ids = p.argmax(axis=1) if len(p) else []
                tags = [self.labels[i] for i in ids]
                ents = []
                for typ, start, end in get_entities(tags):
                    score = float(sum(p[j, ids[j]] for j in range(start, end + 1)) / (end + 1 - start))
                    ents.append({"type": typ, "start": start, "end": end + 1,
                                 "text": " ".join(s.tokens[start:end + 1]), "score": score})
                yield {"tokens": list(s.tokens), "tags": tags, "entities": ents}
            bar.update(len(chunk))
        bar.close()


def read_predictions(path: str) -> dict:
    """predictions.tsv -> {split: [(tokens, gold tags, predicted tags)]}."""
    return read_tsv_by_split(path, [(c, json.loads) for c in ("tokens", "gold_tags", "predicted_tags")])


TASKS.add("token-classification", TokenClassificationTask())
